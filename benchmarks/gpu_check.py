"""Check and time the CUDA backend on a real NVIDIA GPU.

    FASTMLP_REAL_GPU=1 python benchmarks/gpu_check.py            # parity, then timings
    python benchmarks/gpu_check.py --dry-run                      # tiny, CPU only (no GPU needed)
    python benchmarks/gpu_check.py --compile-ptx                  # compile every kernel to PTX
                                                                  # (needs NVVM/NVRTC, not a GPU)

1. Parity: the same float64 fits (every hidden activation, the three kinds
   of output, adam and sgd) on backend="cpu" and backend="cuda"; the largest
   relative difference of the parameters after a few epochs must be < 1e-6.
2. Timings, each after a warm-up fit that compiles the kernels:
   (a) 20000 x 784 float32, 10 classes, hidden (256, 128), relu, adam,
       batch 256, 3 epochs;
   (b) 4000 x 40 float32, 10 classes, hidden (100, 100), relu, adam,
       batch 100, 20 epochs;
   fit and predict with fastmlp backend="cuda" and backend="cpu", and PyTorch
   eager on the same GPU when torch with CUDA is importable (the same layers,
   Adam with the same hyperparameters, a plain shuffled minibatch loop).
   alpha = 0 everywhere, so that every library minimises the same loss.
   Prints one markdown table.  Whole script: well under 5 minutes.

Exit status: 0 on success, 1 when parity fails, 2 when no usable GPU.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CASES = {
    # name: (n, d, classes, hidden, batch, epochs)
    "a: 20000x784, (256,128), batch 256, 3 ep": (20000, 784, 10, (256, 128), 256, 3),
    "b: 4000x40, (100,100), batch 100, 20 ep": (4000, 40, 10, (100, 100), 100, 20),
}
DRY_CASES = {
    "a (dry): 300x30, (16,8), batch 64, 2 ep": (300, 30, 10, (16, 8), 64, 2),
    "b (dry): 200x8, (10,10), batch 50, 2 ep": (200, 8, 10, (10, 10), 50, 2),
}
PARITY = [
    ("relu", "multiclass", "adam"), ("tanh", "binary", "sgd"), ("logistic", "regression", "adam"),
    ("leaky_relu", "multiclass", "sgd"), ("prelu", "multiclass", "adam"),
    ("elu", "regression", "sgd"), ("identity", "binary", "adam"), ("maxout", "multiclass", "adam"),
]


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
    return MLPRegressor(**kw) if task == "regression" else MLPClassifier(**kw)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def parity(backends=("cpu", "cuda")):
    """Largest relative parameter difference between the two backends over PARITY."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 7))
    targets = {"multiclass": rng.integers(0, 4, 120), "binary": (X[:, 0] > 0).astype(int),
               "regression": X @ rng.normal(size=7)}
    worst = 0.0
    for act, task, solver in PARITY:
        fits = []
        for be in backends:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = estimator(be, (9, 7), 32, 3, "float64", act, solver, task).fit(X, targets[task])
            fits.append(m)
        a, b = fits
        d = max(rel(x, z) for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
        d = max(d, rel(a.loss_curve_, b.loss_curve_))
        print(f"  parity {act:10s} {task:10s} {solver:4s}: max rel diff {d:.2e}")
        worst = max(worst, d)
    return worst


def time_fastmlp(backend, X, y, hidden, batch, epochs):
    """(fit seconds, predict seconds) after a warm-up fit of the same configuration."""
    warm = estimator(backend, hidden, batch, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(X[: 2 * batch + 7], y[: 2 * batch + 7])  # compiles; covers the ragged batch
        warm.predict(X[:100])
        est = estimator(backend, hidden, batch, epochs)
        t = time.perf_counter()
        est.fit(X, y)
        fit_s = time.perf_counter() - t
    t = time.perf_counter()
    est.predict(X)
    pred_s = time.perf_counter() - t
    return fit_s, pred_s, est.score(X, y)


def time_torch(X, y, hidden, batch, epochs, device):
    """The same network and optimiser in PyTorch eager: (fit s, predict s, accuracy)."""
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
    return fit_s, pred_s, float(np.mean(pred == y))


def torch_device(dry_run):
    """'cuda' when torch with CUDA is usable, 'cpu' in a dry run with torch, else None."""
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return "cuda"
    return "cpu" if dry_run else None


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
    from fastmlp.backends.cuda import activations as A, dense as D, losses as L
    from fastmlp.backends.cuda import optimizers as O, train as T
    from fastmlp import _config

    i64, f64, b1 = nt.int64, nt.float64, nt.boolean
    VI = nt.Array(nt.int64, 1, "C")
    I2 = nt.Array(nt.int32, 2, "C")
    acc = nt.Array(nt.float64, 1, "C")
    jobs = [(C._probe_kernel, (acc,))]
    for dt in (nt.float32, nt.float64):
        M, V = nt.Array(dt, 2, "C"), nt.Array(dt, 1, "C")
        fw, wk, ik = D.gemm_kernels(_config.CUDA_TILE, _config.CUDA_REGISTER_BLOCK)
        jobs += [
            (A.bias_act_forward, (M, V, i64, f64, V, M)), (A.act_backward, (M, M, M, i64, f64, V, M)),
            (A.prelu_slope_grad, (M, M, V)), (A.maxout_forward, (M, V, i64, M, I2)),
            (A.maxout_backward, (M, I2, i64, M)),
            (L.softmax_cross_entropy, (M, VI, V, f64, M, M, f64, acc)),
            (L.sigmoid_binary_cross_entropy, (M, M, V, f64, M, M, f64, acc)),
            (L.squared_error, (M, M, V, f64, M, M, f64, acc)),
            (L.poisson_deviance, (M, M, V, f64, M, M, f64, acc)),
            (L.softmax_rows, (M, M)), (L.log_softmax_rows, (M, M)), (L._pointwise_output, (i64, M, M)),
            (L.one_hot, (VI, M)), (O.sgd_step, (V, V, V, f64, f64, b1)),
            (O.adam_step, (V, V, V, V, f64, f64, f64, f64, f64)),
            (T.gather_batch, (M, M, VI, V, VI, i64, i64, M, M, VI, V)),
            (fw, (M, M, V, i64, f64, V, b1, M, M)), (wk, (M, M, M, f64, M, V, f64, acc)),
            (ik, (M, M, i64, f64, M, M, V, b1, M)),
        ]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny cases on the CPU only (checks the script without a GPU)")
    ap.add_argument("--compile-ptx", action="store_true",
                    help="compile every kernel to PTX (no GPU needed) and exit")
    ap.add_argument("--skip-parity", action="store_true", help="timings only")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = ap.parse_args(argv)

    if args.compile_ptx:
        return 1 if compile_ptx_all() else 0

    import fastmlp
    from fastmlp.backends import get_backend

    if args.dry_run:
        backends = ["cpu"]
        cases = DRY_CASES
        print("dry run: tiny cases, fastmlp on the CPU only")
    else:
        try:
            cb = get_backend("cuda")
        except RuntimeError as exc:
            print(f"no usable GPU: {exc}")
            return 2
        if cb.is_simulated():
            print("NUMBA_ENABLE_CUDASIM=1 is set: this would time the simulator. "
                  "Run with FASTMLP_REAL_GPU=1 and without NUMBA_ENABLE_CUDASIM, or use --dry-run.")
            return 2
        print(f"fastmlp {fastmlp.__version__}, CUDA backend on {cb.unavailable_reason()}")
        backends = ["cuda", "cpu"]
        cases = CASES
        if not args.skip_parity:
            t = time.perf_counter()
            worst = parity()
            print(f"parity: worst relative difference {worst:.2e} ({time.perf_counter() - t:.1f} s)")
            if not worst < 1e-6:
                print("PARITY FAILED")
                return 1

    tdev = None if args.no_torch else torch_device(args.dry_run)
    torch_col = f"torch-{tdev}" if tdev else "torch-cuda"
    rows = []
    for case, (n, d, classes, hidden, batch, epochs) in cases.items():
        X, y = make_data(n, d, classes)
        res = {}
        for be in backends:
            res[be] = time_fastmlp(be, X, y, hidden, batch, epochs)
            print(f"  {case} fastmlp-{be}: fit {res[be][0]:.3f} s, predict {res[be][1]:.4f} s, "
                  f"train accuracy {res[be][2]:.3f}")
        if tdev:
            res["torch"] = time_torch(X, y, hidden, batch, epochs, tdev)
            print(f"  {case} {torch_col}: fit {res['torch'][0]:.3f} s, predict "
                  f"{res['torch'][1]:.4f} s, train accuracy {res['torch'][2]:.3f}")
        for what, i in (("fit", 0), ("predict", 1)):
            cells = [f"{res[k][i]:.4f}" if k in res else "n/a" for k in ("cuda", "cpu", "torch")]
            rows.append(f"| {case} {what} | " + " | ".join(cells) + " |")

    print()
    print(f"| case | fastmlp-cuda s | fastmlp-cpu s | {torch_col} s |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
