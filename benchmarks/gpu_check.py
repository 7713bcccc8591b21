"""Check and time the CUDA backend on a real NVIDIA GPU: one script, no install.

    python benchmarks/gpu_check.py               # on a GPU machine, from the repo root
    python benchmarks/gpu_check.py --dry-run     # the same steps, tiny, in numba's CUDA
                                                 # simulator (no GPU needed)
    python benchmarks/gpu_check.py --compile-ptx # compile both drivers' kernels to PTX
                                                 # (needs NVVM/NVRTC, not a GPU)

Needs only what a GPU machine image has: numba, numba-cuda, scikit-learn and
(optionally) torch; fastmlp is imported from this checkout.  Steps:

1. The CUDA test file on the real device (``FASTMLP_REAL_GPU=1 pytest tests/test_cuda.py``).
2. Parity: float64 fits (every hidden activation, every kind of output, adam
   and sgd) on backend="cpu" and backend="cuda" with each CUDA driver
   ("persistent": one cooperative kernel per epoch; "launches": one kernel per
   phase); the largest relative difference must be < 1e-6.
3. Side by side, each after a warm-up fit that compiles the kernels:
   medium 20000 x 784 float32 -> (256, 128) -> 10, batch 256, 3 epochs; small
   4000 x 40 -> (100, 100) -> 10, batch 100, 20 epochs; relu, adam, alpha 0:
   fit and predict with both CUDA drivers, PyTorch CUDA eager (the same layers
   and Adam, a shuffled minibatch loop) and fastmlp's CPU backend; the
   latency of a 1-row predict; the compile time (the first fit of a network in
   this process).  Prints one markdown table.  Well under 5 minutes.

Exit status: 0 on success, 1 when a check fails, 2 when no usable GPU.
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CASES = {
    # name: (n, d, classes, hidden, batch, epochs)
    "medium 20000x784 (256,128) b256 3ep": (20000, 784, 10, (256, 128), 256, 3),
    "small 4000x40 (100,100) b100 20ep": (4000, 40, 10, (100, 100), 100, 20),
}
DRY_CASES = {
    "medium (dry) 60x12 (8,6) b16 2ep": (60, 12, 4, (8, 6), 16, 2),
    "small (dry) 40x6 (5,5) b10 2ep": (40, 6, 4, (5, 5), 10, 2),
}
PARITY = [
    ("relu", "multiclass", "adam"), ("tanh", "binary", "sgd"), ("logistic", "regression", "adam"),
    ("leaky_relu", "multiclass", "sgd"), ("prelu", "multiclass", "adam"),
    ("elu", "poisson", "sgd"), ("identity", "binary", "adam"), ("maxout", "multiclass", "adam"),
]
DRIVERS = ("persistent", "launches")


def make_data(n, d, classes, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.normal(scale=2.0, size=(n, d))).astype(dtype)
    return X, y


def estimator(backend, hidden, batch, epochs, dtype="float32", activation="relu",
              solver="adam", task="multiclass", seed=0):
    from fastmlp import MLPClassifier, MLPRegressor

    kw = dict(hidden_layer_sizes=hidden, activation=activation, solver=solver, alpha=0.0,
              batch_size=batch, max_iter=epochs, tol=0.0, n_iter_no_change=10**6,
              random_state=seed, backend=backend, dtype=dtype, learning_rate_init=1e-3)
    if task == "poisson":
        return MLPRegressor(loss="poisson", **kw)
    return MLPRegressor(**kw) if task == "regression" else MLPClassifier(**kw)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def set_driver(name):
    from fastmlp import _config

    _config.CUDA_EPOCH_DRIVER = name


def run_tests(dry_run):
    """The CUDA test file in a subprocess (the real device, or a quick simulator subset)."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    if dry_run:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
        env.pop("FASTMLP_REAL_GPU", None)
        cmd += ["-k", "schedule or block_sum or launches_do_not_grow"]
    else:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        env["FASTMLP_REAL_GPU"] = "1"
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
        out = (p.stdout + p.stderr).strip().splitlines()
        ok = p.returncode == 0
    except subprocess.TimeoutExpired:
        out, ok = ["timed out after 200 s"], False
    summary = out[-1] if out else "no output"
    print(f"tests: {summary} ({time.perf_counter() - t:.1f} s)")
    if not ok:
        print("\n".join(out[-40:]))
    return ok, summary


def parity(dry_run):
    """Largest relative difference (parameters and loss curve) CPU vs CUDA, per driver."""
    rng = np.random.default_rng(1)
    n = 40 if dry_run else 120
    X = rng.normal(size=(n, 7))
    targets = {"multiclass": rng.integers(0, 4, n), "binary": (X[:, 0] > 0).astype(int),
               "regression": X @ rng.normal(size=7), "poisson": rng.poisson(1.0, n)}
    cases = PARITY[:3] + PARITY[-1:] if dry_run else PARITY
    worst = {}
    for drv in DRIVERS:
        set_driver(drv)
        worst[drv] = 0.0
        for act, task, solver in cases:
            fits = []
            for be in ("cpu", "cuda"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = estimator(be, (9, 7), 16 if dry_run else 32, 2 if dry_run else 3,
                                  "float64", act, solver, task).fit(X, targets[task])
                fits.append(m)
            a, b = fits
            d = max(rel(x, z) for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
            d = max(d, rel(a.loss_curve_, b.loss_curve_))
            print(f"  parity {drv:10s} {act:10s} {task:10s} {solver:4s}: max rel diff {d:.2e}")
            worst[drv] = max(worst[drv], d)
    set_driver("auto")
    return worst


def time_fastmlp(backend, X, y, hidden, batch, epochs, driver=None):
    """(fit s, predict s, accuracy, 1-row predict s, first-fit s) after a warm-up fit."""
    if driver:
        set_driver(driver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = estimator(backend, hidden, batch, 1)
        t = time.perf_counter()
        warm.fit(X[: 2 * batch + 7], y[: 2 * batch + 7])  # compiles; covers the ragged batch
        warm.predict(X[:100])
        first = time.perf_counter() - t
        est = estimator(backend, hidden, batch, epochs)
        t = time.perf_counter()
        est.fit(X, y)
        fit_s = time.perf_counter() - t
    t = time.perf_counter()
    est.predict(X)
    pred_s = time.perf_counter() - t
    x1 = X[:1]
    est.predict(x1)
    reps = []
    for _ in range(5 if backend == "cuda" and is_sim() else 50):
        t = time.perf_counter()
        est.predict(x1)
        reps.append(time.perf_counter() - t)
    set_driver("auto")
    return fit_s, pred_s, est.score(X, y), float(np.median(reps)), first


def is_sim():
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def time_torch(X, y, hidden, batch, epochs, device):
    """The same network and optimiser in PyTorch eager: (fit s, predict s, accuracy, 1-row s)."""
    import torch

    classes = int(y.max()) + 1

    def build():
        torch.manual_seed(0)
        layers, fan_in = [], X.shape[1]
        for h in hidden:
            layers += [torch.nn.Linear(fan_in, h), torch.nn.ReLU()]
            fan_in = h
        layers.append(torch.nn.Linear(fan_in, classes))
        return torch.nn.Sequential(*layers).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def fit(Xh, yh, n_epochs):
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        Xd = torch.from_numpy(Xh).to(device)
        yd = torch.from_numpy(yh.astype(np.int64)).to(device)
        n = Xd.shape[0]
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(n_epochs):
            perm = torch.randperm(n, device=device)
            for s in range(0, n, batch):
                idx = perm[s:s + batch]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(Xd[idx]), yd[idx])
                loss.backward()
                opt.step()
        sync()
        return model

    def predict(model, Xh):
        with torch.no_grad():
            out = model(torch.from_numpy(Xh).to(device)).argmax(dim=1).cpu().numpy()
        sync()
        return out

    warm = fit(X[: 2 * batch + 7], y[: 2 * batch + 7], 1)
    predict(warm, X[:100])
    t = time.perf_counter()
    model = fit(X, y, epochs)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = predict(model, X)
    pred_s = time.perf_counter() - t
    reps = []
    for _ in range(50):
        t = time.perf_counter()
        predict(model, X[:1])
        reps.append(time.perf_counter() - t)
    return fit_s, pred_s, float(np.mean(pred == y)), float(np.median(reps))


def compile_ptx_all(cc=(9, 0)):
    """Compile every kernel to PTX for compute capability ``cc`` without a GPU.

    Needs numba-cuda's NVVM and NVRTC libraries (e.g. ``pip install
    "numba-cuda[cu13]"``) but no driver: device functions normally ask the
    current device for its compute capability, so that one lookup is
    answered with ``cc`` here.  Proves that every kernel types and lowers on
    the real CUDA target in float32 and float64 (the simulator cannot).
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise SystemExit("--compile-ptx needs the real CUDA target: unset NUMBA_ENABLE_CUDASIM")
    from numba import cuda
    from numba import types as nt
    import numba.cuda.dispatcher as disp

    class _Device:
        compute_capability = cc

    disp.get_current_device = lambda: _Device()  # this process only compiles
    import fastmlp.backends.cuda as C
    from fastmlp.backends.cuda import train as T
    from fastmlp import _config

    i64, f64, b1 = nt.int64, nt.float64, nt.boolean
    VI = nt.Array(nt.int64, 1, "C")
    I2 = nt.Array(nt.int32, 2, "C")
    T2 = nt.Array(nt.int64, 2, "C")
    S2 = nt.Array(nt.float64, 2, "C")
    acc = nt.Array(nt.float64, 1, "C")
    jobs = [(C._probe_kernel, (acc,))]
    epoch_kernel, phase_kernel = T.kernels(_config.CUDA_TILE, _config.CUDA_REGISTER_BLOCK)
    for dt in (nt.float32, nt.float64):
        M, V = nt.Array(dt, 2, "C"), nt.Array(dt, 1, "C")
        # the arguments of Program._args, in order
        common = (T2, i64, f64, i64, i64, b1, M, M, VI, V, VI, S2, i64, V, V, V, V, i64,
                  f64, f64, b1, f64, f64, f64, f64, f64, M, I2, M, M, VI, V, M, acc)
        jobs += [(epoch_kernel, (T2, i64) + common), (phase_kernel, (i64, i64, i64) + common)]
    failed = 0
    for kernel, sig in jobs:
        name = kernel.py_func.__name__
        try:
            cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            print(f"  ptx ok   {name:30s} {sig[0]}")
        except Exception as exc:  # report every failure, not just the first
            failed += 1
            print(f"  ptx FAIL {name:30s} {sig[0]}: {type(exc).__name__}: {exc}"[:2000])
    print(f"{len(jobs) - failed}/{len(jobs)} kernels compiled to PTX for sm_{cc[0]}{cc[1]}")
    return failed


def torch_device(dry_run):
    """'cuda' when torch with CUDA is usable, 'cpu' in a dry run with torch, else None."""
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return "cuda"
    return "cpu" if dry_run else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="every step, tiny, in numba's CUDA simulator (no GPU needed)")
    ap.add_argument("--compile-ptx", action="store_true",
                    help="compile the kernels to PTX (no GPU needed) and exit")
    ap.add_argument("--skip-tests", action="store_true", help="leave the test file out")
    ap.add_argument("--skip-parity", action="store_true", help="timings only")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = ap.parse_args(argv)

    if args.compile_ptx:
        return 1 if compile_ptx_all() else 0
    if args.dry_run:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
    else:
        os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    t_all = time.perf_counter()

    import fastmlp
    from fastmlp.backends import get_backend

    try:
        cb = get_backend("cuda")
    except RuntimeError as exc:
        print(f"no usable GPU: {exc}")
        return 2
    if args.dry_run:
        from fastmlp import _config
        from fastmlp.backends.cuda import _common

        # the simulator runs each GPU thread in Python: tiny blocks, few of them
        _config.CUDA_TILE, _config.CUDA_REGISTER_BLOCK = 3, 2
        _common.MAX_BLOCKS = 2
        sys.setswitchinterval(1e-4)
        cases = DRY_CASES
        print("dry run: tiny cases, CUDA in numba's simulator (timings mean nothing)")
    else:
        cases = CASES
    print(f"fastmlp {fastmlp.__version__}, CUDA backend on {cb.unavailable_reason()}")

    failed = False
    tests = "skipped"
    if not args.skip_tests:
        ok, tests = run_tests(args.dry_run)
        failed |= not ok
    worst = {}
    if not args.skip_parity:
        t = time.perf_counter()
        worst = parity(args.dry_run)
        print(f"parity: worst relative difference {worst} ({time.perf_counter() - t:.1f} s)")
        if not all(v < 1e-6 for v in worst.values()):
            print("PARITY FAILED")
            failed = True

    tdev = None if args.no_torch else torch_device(args.dry_run)
    torch_col = f"torch-{tdev}" if tdev else "torch"
    cols = ["cuda-persistent", "cuda-launches", "cpu", torch_col]
    rows = []
    latency = {}
    compile_s = {}
    for case, (n, d, classes, hidden, batch, epochs) in cases.items():
        X, y = make_data(n, d, classes)
        res = {}
        for col, be, drv in (("cuda-persistent", "cuda", "persistent"),
                             ("cuda-launches", "cuda", "launches"), ("cpu", "cpu", None)):
            res[col] = time_fastmlp(be, X, y, hidden, batch, epochs, drv)
            latency.setdefault(col, res[col][3])
            compile_s.setdefault(col, res[col][4])
            print(f"  {case} fastmlp-{col}: fit {res[col][0]:.3f} s, predict {res[col][1]:.4f} s, "
                  f"train accuracy {res[col][2]:.3f}")
        if tdev:
            fit_s, pred_s, acc, lat = time_torch(X, y, hidden, batch, epochs, tdev)
            res[torch_col] = (fit_s, pred_s, acc)
            latency.setdefault(torch_col, lat)
            print(f"  {case} {torch_col}: fit {fit_s:.3f} s, predict {pred_s:.4f} s, "
                  f"train accuracy {acc:.3f}")
        for what, i, unit in (("fit", 0, "s"), ("predict all rows", 1, "s"),
                              ("train accuracy", 2, "")):
            cells = [f"{res[c][i]:.4f}" if c in res else "n/a" for c in cols]
            rows.append(f"| {case} | {what} {unit} | " + " | ".join(cells) + " |")
    rows.append("| 1 row | predict latency ms | " + " | ".join(
        f"{1e3 * latency[c]:.3f}" if c in latency else "n/a" for c in cols) + " |")
    rows.append("| first fit in process | compile + fit s | " + " | ".join(
        f"{compile_s[c]:.2f}" if c in compile_s else "n/a" for c in cols) + " |")

    print()
    print(f"tests: {tests}; parity (max rel diff vs cpu): "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    print(f"| case | metric | {' | '.join(cols)} |")
    print("|---|---|" + "---|" * len(cols))
    print("\n".join(rows))
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
