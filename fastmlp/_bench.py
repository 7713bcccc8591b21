"""``python -m fastmlp bench``: fastmlp beside scikit-learn, PyTorch and the BLAS floor.

Each case runs every contender in turn, round after round (interleaved, so a
burst of load on a shared machine hits all of them alike), keeps the best
round of each, and prints one markdown table with the times and the ratios:

- fit of a 20000 x 784 float32 problem (10 classes, hidden (256, 128), relu,
  Adam, batch 256, 3 epochs);
- fit of a 4000 x 40 problem (hidden (100, 100), batch 100, 20 epochs);
- predict of one row (the second case's model);
- predict_proba of 20000 rows (the first case's model);
- peak memory that fit allocates beyond the data (traced NumPy allocations);
- sparse text-like input: fit and predict_proba of a 20000 x 30000 CSR matrix
  with 18 non-zeros per row (hidden (64,), Adam, 3 epochs), and the fit's
  peak memory beyond the data;
- predict of 100 dense rows (a mid-size call: 100 features, hidden (128, 64));
- a fresh process: import + first fit of a tiny model, numba cache warm and
  cold (a fresh empty ``NUMBA_CACHE_DIR``).

The "BLAS floor" is the same training steps' GEMMs alone, through NumPy
(forward and backward, into preallocated outputs): no activation, loss,
optimizer or data shuffling, so no trainer can beat it by much.  The PyTorch
contender (when torch imports) is a plain CPU training loop with the same
architecture, Adam and batch size.  ``--quick`` runs tiny sizes once: a smoke
test of the machinery, not a measurement.
"""

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

FULL = {
    "big": dict(n=20000, d=784, k=10, hidden=(256, 128), batch=256, epochs=3),
    "small": dict(n=4000, d=40, k=10, hidden=(100, 100), batch=100, epochs=20),
    "predict_rows": 20000,
    "one_row_calls": 2000,
    "lbfgs": dict(n=20000, d=100, k=10, hidden=(128,), iters=100),
    "sparse": dict(n=20000, d=30000, nnz=18, k=3, hidden=(64,), batch=200, epochs=3),
    "mid": dict(n=2000, rows=100, d=100, k=10, hidden=(128, 64), calls=200),
}
QUICK = {
    "big": dict(n=600, d=64, k=10, hidden=(32, 16), batch=64, epochs=1),
    "small": dict(n=300, d=10, k=3, hidden=(16, 16), batch=50, epochs=2),
    "predict_rows": 600,
    "one_row_calls": 20,
    "lbfgs": dict(n=400, d=20, k=3, hidden=(16,), iters=5),
    "sparse": dict(n=600, d=2000, nnz=10, k=3, hidden=(16,), batch=100, epochs=1),
    "mid": dict(n=300, rows=100, d=20, k=3, hidden=(16, 8), calls=5),
}
CASES = ("dense", "lbfgs", "sparse", "mid", "startup")  # what --cases picks from
COLUMNS = ["case", "fastmlp", "scikit-learn", "PyTorch", "BLAS floor",
           "sklearn / fastmlp", "PyTorch / fastmlp", "fastmlp / floor", "target"]
PAUSE_S = 0.3  # between contenders: lets the last one's BLAS / OpenMP threads stop spinning


# ----------------------------------------------------------------------------- machine
def machine_info():
    """Platform, CPU model, cores and library versions (BLAS through threadpoolctl)."""
    import numba
    import sklearn

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": f"{usable} usable of {os.cpu_count()}",
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": _torch_version(),
        "blas": _blas_description(),
        "fastmlp kernels' GEMMs": _kernel_blas(),
    }
    return info


def _kernel_blas():
    from .backends.cpu import blas

    path = blas.kernel_blas_path()
    if path is None:
        return "numba's np.dot (SciPy's BLAS)"
    return f"{os.path.basename(os.path.dirname(path)).replace('.libs', '')}'s BLAS, called directly"


def _torch_version():
    torch = _torch()
    if torch is None:
        return "not installed"
    return f"{torch.__version__} ({torch.get_num_threads()} threads)"


def _blas_description():
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS numba calls)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    parts = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        owner = os.path.basename(os.path.dirname(lib["filepath"])).replace(".libs", "")
        parts.append(f"{lib['internal_api']} {lib['version']} ({owner}, "
                     f"{lib['num_threads']} threads, {lib.get('architecture', '?')})")
    return "; ".join(parts) or "unknown"


def _torch():
    try:
        import torch
    except Exception:  # ImportError, or a broken install
        return None
    return torch


# ----------------------------------------------------------------------------- data
def make_data(n, d, k, seed=0):
    """A learnable classification problem: labels of a random linear map, float32."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    W = rng.standard_normal((d, k)).astype(np.float32)
    y = np.argmax(X @ W + 0.5 * rng.standard_normal((n, k), dtype=np.float32), axis=1)
    return X, y


def make_sparse_data(n, d, nnz, k, seed=0):
    """Text-like rows: a CSR matrix (float64, as a TfidfVectorizer gives) of ``nnz``
    non-zeros per row at random columns, values in [0, 1); labels of a linear map."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    indptr = np.arange(0, (n + 1) * nnz, nnz)
    X = sp.csr_matrix((rng.random(n * nnz), rng.integers(0, d, n * nnz), indptr), shape=(n, d))
    X.sum_duplicates()
    W = rng.standard_normal((d, k))
    y = np.argmax(X @ W + 0.3 * rng.standard_normal((n, k)), axis=1)
    return X, y


# ----------------------------------------------------------------------------- contenders
def fastmlp_model(c, max_iter=None):
    from . import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=c["hidden"], batch_size=c["batch"],
                         max_iter=max_iter or c["epochs"], random_state=0, tol=0.0,
                         n_iter_no_change=10**9, backend="cpu")


def sklearn_model(c, max_iter=None):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=c["hidden"], batch_size=c["batch"],
                         max_iter=max_iter or c["epochs"], random_state=0, tol=0.0,
                         n_iter_no_change=10**9)


def lbfgs_models(c):
    """fastmlp and scikit-learn lbfgs, float64, every iteration run (tol=0)."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from . import MLPClassifier

    kw = dict(solver="lbfgs", hidden_layer_sizes=c["hidden"], max_iter=c["iters"],
              random_state=0, tol=0.0)
    return MLPClassifier(backend="cpu", dtype="float64", **kw), SkMLP(**kw)


def _quiet(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return run


class TorchMLP:
    """The same network as a plain PyTorch CPU loop: Linear/ReLU stack, Adam, cross-entropy."""

    def __init__(self, c, d, k):
        torch = _torch()
        self.torch, self.c = torch, c
        torch.manual_seed(0)
        sizes = [d, *c["hidden"], k]
        layers = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
        self.model = torch.nn.Sequential(*layers)
        self.classes_ = np.arange(k)

    def fit(self, X, y):
        torch, c = self.torch, self.c
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        n = Xt.shape[0]
        for _ in range(c["epochs"]):
            perm = torch.randperm(n)
            for start in range(0, n, c["batch"]):
                idx = perm[start:start + c["batch"]]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.model(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
        return self

    def predict(self, X):
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(X))
        return self.classes_[out.argmax(1).numpy()]

    def predict_proba(self, X):
        with self.torch.inference_mode():
            return self.torch.softmax(self.model(self.torch.from_numpy(X)), 1).numpy()


def blas_floor_fit(X, c, k):
    """The GEMMs of the same training steps, through NumPy, into preallocated outputs."""
    rng = np.random.default_rng(0)
    n, d = X.shape
    b = c["batch"]
    sizes = [d, *c["hidden"], k]
    Ws = [rng.standard_normal((a, z), dtype=np.float32) * 0.01 for a, z in zip(sizes[:-1], sizes[1:])]
    dWs = [np.empty_like(W) for W in Ws]
    Hs = [np.empty((b, z), dtype=np.float32) for z in sizes[1:]]
    # the top gradient is never written by the GEMMs below: random, not np.empty's
    # leftovers (denormals or NaNs there made the floor up to 10x slower on Intel)
    dHs = [rng.standard_normal((b, z), dtype=np.float32) for z in sizes[1:]]
    L = len(Ws)

    def run():
        for _ in range(c["epochs"]):
            for start in range(0, n, b):
                Xb = X[start:start + b]
                m = Xb.shape[0]
                prev = Xb
                for l in range(L):
                    np.dot(prev, Ws[l], out=Hs[l][:m])
                    prev = Hs[l][:m]
                for l in range(L - 1, -1, -1):
                    inp = Xb if l == 0 else Hs[l - 1][:m]
                    np.dot(inp.T, dHs[l][:m], out=dWs[l])
                    if l > 0:
                        np.dot(dHs[l][:m], Ws[l].T, out=dHs[l - 1][:m])
    return run


def blas_floor_forward(coefs, X):
    """The forward GEMMs alone (no bias, activation or softmax) over all rows of X."""
    outs = [np.empty((X.shape[0], W.shape[1]), dtype=np.float32) for W in coefs]
    Ws = [np.ascontiguousarray(W, dtype=np.float32) for W in coefs]

    def run():
        prev = X
        for W, out in zip(Ws, outs):
            np.dot(prev, W, out=out)
            prev = out
    return run


# ----------------------------------------------------------------------------- timing
def interleaved_best(contenders, repeat, inner=1, pause=PAUSE_S):
    """Best seconds per call of each contender, rounds interleaved.

    contenders: {name: callable or None}; each callable is run once untimed
    first (compilation, caches).  ``inner`` calls are timed together.
    """
    live = {k: f for k, f in contenders.items() if f is not None}
    for f in live.values():
        f()
    best = {k: np.inf for k in live}
    for _ in range(repeat):
        for name, f in live.items():
            gc.collect()
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / inner)
    return {k: best.get(k) for k in contenders}


def peak_alloc(fn):
    """Peak bytes of traced (NumPy / Python) allocations while fn runs."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


STARTUP_CODE = """
import time
t0 = time.perf_counter()
import numpy as np
{imports}
X = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
y = np.arange(60) % 3
import warnings
warnings.simplefilter("ignore")
MLP(hidden_layer_sizes=(8,), max_iter=5, random_state=0{kw}).fit(X, y)
print(time.perf_counter() - t0)
"""
STARTUP_IMPORTS = {
    "fastmlp": ("from fastmlp import MLP", ', backend="cpu"'),
    "scikit-learn": ("from sklearn.neural_network import MLPClassifier as MLP", ""),
}


def startup_seconds(cache_dir=None, who="fastmlp"):
    """Import + first fit of a tiny model in a fresh Python process (in-process timer);
    ``who``: "fastmlp" or "scikit-learn" (the same tiny fit with its MLPClassifier)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    imports, kw = STARTUP_IMPORTS[who]
    code = STARTUP_CODE.format(imports=imports, kw=kw)
    # run in the tree: ``-c`` puts the working folder first on sys.path, and another
    # folder holding a fastmlp (another checkout) would be measured instead
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=root,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- cases
def _ratio(a, b):
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return None
    return a / b


def _row(case, unit, values, target):
    f, s, t, fl = (values.get(k) for k in ("fastmlp", "scikit-learn", "PyTorch", "BLAS floor"))
    return {"case": case, "unit": unit, "fastmlp": f, "scikit-learn": s, "PyTorch": t,
            "BLAS floor": fl, "sklearn / fastmlp": _ratio(s, f),
            "PyTorch / fastmlp": _ratio(t, f), "fastmlp / floor": _ratio(f, fl),
            "target": target}


def run_cases(quick=False, repeat=5, torch=True, startup=True, log=None, cases=CASES):
    """Run the cases named in ``cases`` (all by default); return (rows, machine)."""
    sizes = QUICK if quick else FULL
    rows = []
    if "dense" in cases or "lbfgs" in cases:
        rows += _dense_cases(sizes, quick, repeat, torch, log, cases)
    if "sparse" in cases:
        rows += _sparse_cases(sizes["sparse"], quick, repeat, log)
    if "mid" in cases:
        rows += _mid_predict_case(sizes["mid"], quick, repeat, log)
    if startup and not quick and "startup" in cases:
        rows += _startup_cases(repeat, log)
    return rows, machine_info()


def _sparse_cases(c, quick, repeat, log):
    """Fit and predict_proba of text-like CSR rows, fastmlp (float32) beside scikit-learn."""
    say = log or (lambda msg: None)
    pause = 0.01 if quick else PAUSE_S
    say(f"case sparse: {c}")
    X, y = make_sparse_data(c["n"], c["d"], c["nnz"], c["k"])
    fm, sk = fastmlp_model(c), sklearn_model(c)
    label = (f"{c['n']}x{c['d']} CSR, {c['nnz']} non-zeros a row, hidden {c['hidden']}")
    times = interleaved_best({"fastmlp": _quiet(lambda: fm.fit(X, y)),
                              "scikit-learn": _quiet(lambda: sk.fit(X, y))},
                             max(1, min(repeat, 2)), pause=pause)
    rows = [_row(f"fit {label}, batch {c['batch']}, {c['epochs']} epochs", "s", times,
                 ">= 3x sklearn")]
    say(f"  fit: {times}")
    times = interleaved_best({"fastmlp": lambda: fm.predict_proba(X),
                              "scikit-learn": lambda: sk.predict_proba(X)}, repeat, pause=pause)
    rows.append(_row(f"predict_proba {label}", "s", times, ">= 2x sklearn"))
    say(f"  predict_proba: {times}")
    mem = {"fastmlp": peak_alloc(_quiet(lambda: fastmlp_model(c).fit(X, y))),
           "scikit-learn": peak_alloc(_quiet(lambda: sklearn_model(c).fit(X, y)))}
    data_mib = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
    rows.append(_row(f"peak memory of the sparse fit beyond the data ({data_mib:.0f} MiB)",
                     "MiB", {k: v / 2**20 for k, v in mem.items()}, "<= sklearn"))
    say(f"  memory: {mem}")
    return rows


def _mid_predict_case(c, quick, repeat, log):
    """predict of 100 dense rows: a call where neither validation nor the pass dominates."""
    say = log or (lambda msg: None)
    pause = 0.01 if quick else PAUSE_S
    X, y = make_data(c["n"], c["d"], c["k"])
    mc = dict(hidden=c["hidden"], batch=200, epochs=2)
    fm, sk = fastmlp_model(mc), sklearn_model(mc)
    _quiet(lambda: fm.fit(X, y))()
    _quiet(lambda: sk.fit(X, y))()
    rows_ = np.ascontiguousarray(X[:c["rows"]])
    floor = blas_floor_forward(fm.coefs_, rows_)
    times = interleaved_best({"fastmlp": lambda: fm.predict(rows_),
                              "scikit-learn": lambda: sk.predict(rows_),
                              "BLAS floor": floor}, repeat, inner=c["calls"], pause=pause)
    say(f"  predict {c['rows']} rows: {times}")
    return [_row(f"predict, {c['rows']} rows ({c['d']} features, hidden {c['hidden']})", "us",
                 times, ">= 3x sklearn")]


def _startup_cases(repeat, log):
    say = log or (lambda msg: None)
    with tempfile.TemporaryDirectory() as cold_dir:
        cold = startup_seconds(cold_dir)
    startup_seconds()  # fill the default cache
    warm, theirs = np.inf, np.inf
    for _ in range(max(1, min(repeat, 3))):  # interleaved
        warm = min(warm, startup_seconds())
        theirs = min(theirs, startup_seconds(who="scikit-learn"))
    say(f"  startup: warm {warm:.2f} s, cold {cold:.2f} s, scikit-learn {theirs:.2f} s")
    return [_row("fresh process: import + first tiny fit, numba cache warm", "s",
                 {"fastmlp": warm, "scikit-learn": theirs}, "<= scikit-learn + 0.5 s"),
            _row("fresh process: import + first tiny fit, numba cache cold", "s",
                 {"fastmlp": cold}, "stated")]


def _dense_cases(sizes, quick, repeat, torch, log, cases):
    """The dense fits, predicts and memory ("dense") and the lbfgs fit ("lbfgs")."""
    have_torch = torch and _torch() is not None
    rows = []
    pause = 0.01 if quick else PAUSE_S
    if "dense" not in cases:
        return _lbfgs_cases(sizes, repeat, pause, log or (lambda msg: None))
    say = log or (lambda msg: None)
    if have_torch:
        _torch().manual_seed(0)

    models = {}
    for key, label, target in (
        ("big", "fit {n}x{d} float32, {k} classes, hidden {hidden}, batch {batch}, {epochs} epochs",
         "<= 1.18x floor (>= 85 % of it), ~2x sklearn"),
        ("small", "fit {n}x{d}, {k} classes, hidden {hidden}, batch {batch}, {epochs} epochs",
         "<= 1.25x floor (>= 80 % of it), >= 4x sklearn"),
    ):
        c = sizes[key]
        say(f"case {key}: {c}")
        X, y = make_data(c["n"], c["d"], c["k"])
        fm, sk = fastmlp_model(c), sklearn_model(c)
        tm = TorchMLP(c, c["d"], c["k"]) if have_torch else None
        times = interleaved_best({
            "fastmlp": _quiet(lambda: fm.fit(X, y)),
            "scikit-learn": _quiet(lambda: sk.fit(X, y)),
            "PyTorch": (lambda: tm.fit(X, y)) if tm else None,
            "BLAS floor": blas_floor_fit(X, c, c["k"]),
        }, repeat, pause=pause)
        rows.append(_row(label.format(**c), "s", times, target))
        models[key] = (X, y, fm, sk, tm)
        say(f"  {times}")

    # one-row predict, both models: the floor is the GEMVs alone (NumPy, new outputs)
    calls = sizes["one_row_calls"]
    for key, label in (("small", "second model"), ("big", "first model")):
        X, y, fm, sk, tm = models[key]
        row = np.ascontiguousarray(X[:1])
        Wf = [np.ascontiguousarray(W) for W in fm.coefs_]

        def floor_one(row=row, Wf=Wf):
            h = row
            for W in Wf:
                h = np.dot(h, W)
        times = interleaved_best({
            "fastmlp": lambda fm=fm, row=row: fm.predict(row),
            "scikit-learn": lambda sk=sk, row=row: sk.predict(row),
            "PyTorch": (lambda tm=tm, row=row: tm.predict(row)) if tm else None,
            "BLAS floor": floor_one,
        }, repeat, inner=calls, pause=pause)
        rows.append(_row(f"predict, 1 row ({label}, {X.shape[1]} features)", "us", times,
                         "<= 1.15x floor + 3 us, >= 20x sklearn"))
        say(f"  one row ({label}): {times}")

    # predict_proba of many rows, first case's model
    X, y, fm, sk, tm = models["big"]
    Xp = np.ascontiguousarray(np.resize(X, (sizes["predict_rows"], X.shape[1])))
    times = interleaved_best({
        "fastmlp": lambda: fm.predict_proba(Xp),
        "scikit-learn": lambda: sk.predict_proba(Xp),
        "PyTorch": (lambda: tm.predict_proba(Xp)) if tm else None,
        "BLAS floor": blas_floor_forward(fm.coefs_, Xp),
    }, repeat, pause=pause)
    rows.append(_row(f"predict_proba, {Xp.shape[0]} rows (first model)", "s", times,
                     "<= 1.1x floor"))
    say(f"  predict_proba: {times}")

    # peak memory beyond the data (first case)
    c = sizes["big"]
    mem = {
        "fastmlp": peak_alloc(_quiet(lambda: fastmlp_model(c).fit(X, y))),
        "scikit-learn": peak_alloc(_quiet(lambda: sklearn_model(c).fit(X, y))),
    }
    rows.append(_row(f"peak memory of fit beyond the data ({X.nbytes / 2**20:.0f} MiB)", "MiB",
                     {k: v / 2**20 for k, v in mem.items()}, "<= sklearn"))
    say(f"  memory: {mem}")

    if "lbfgs" in cases:
        rows += _lbfgs_cases(sizes, repeat, pause, say)
    return rows


def _lbfgs_cases(sizes, repeat, pause, say):
    """lbfgs: full-batch loss and gradient per evaluation (float64, as scikit-learn's default)."""
    rows = []
    c = sizes["lbfgs"]
    say(f"case lbfgs: {c}")
    Xl, yl = make_data(c["n"], c["d"], c["k"])
    Xl = Xl.astype(np.float64)
    fl, sl = lbfgs_models(c)
    times = interleaved_best({"fastmlp": _quiet(lambda: fl.fit(Xl, yl)),
                              "scikit-learn": _quiet(lambda: sl.fit(Xl, yl))}, repeat, pause=pause)
    rows.append(_row(f"lbfgs fit {c['n']}x{c['d']} float64, hidden {c['hidden']}, "
                     f"{c['iters']} iterations (both ran {fl.n_iter_} / {sl.n_iter_})", "s",
                     times, ">= 2x sklearn"))
    mem = {"fastmlp": peak_alloc(_quiet(lambda: lbfgs_models(c)[0].fit(Xl, yl))),
           "scikit-learn": peak_alloc(_quiet(lambda: lbfgs_models(c)[1].fit(Xl, yl)))}
    rows.append(_row(f"peak memory of the lbfgs fit beyond the data ({Xl.nbytes / 2**20:.0f} MiB)",
                     "MiB", {k: v / 2**20 for k, v in mem.items()}, "<= sklearn"))
    say(f"  lbfgs: {times}, memory {mem}")
    return rows


# ----------------------------------------------------------------------------- output
def _fmt_value(v, unit):
    if v is None:
        return "—"
    if unit == "us":
        return f"{v * 1e6:.1f} µs"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    return f"{v:.3f} s" if v >= 0.1 else f"{v * 1e3:.2f} ms"


def format_table(rows, machine):
    """The markdown table (machine first), one line per case."""
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 2) + ["---"]) + "|")
    for r in rows:
        cells = [r["case"]]
        for col in ("fastmlp", "scikit-learn", "PyTorch", "BLAS floor"):
            cells.append(_fmt_value(r[col], r["unit"]))
        for col in ("sklearn / fastmlp", "PyTorch / fastmlp", "fastmlp / floor"):
            cells.append("—" if r[col] is None else f"{r[col]:.2f}x")
        cells.append(r["target"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    """Entry point of ``python -m fastmlp bench``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fastmlp bench",
        description="Time fastmlp beside scikit-learn, PyTorch and the BLAS floor.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: a smoke test, not a measurement")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds per case, best kept (default 5, quick 1)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the fresh-process import + first-fit timings")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated cases to run, of {', '.join(CASES)} (default all)")
    parser.add_argument("--output", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; the cases are {', '.join(CASES)}")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None
    rows, machine = run_cases(quick=args.quick, repeat=repeat, torch=not args.no_torch,
                              startup=not args.no_startup, log=log, cases=cases)
    table = format_table(rows, machine)
    print(table)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(table + "\n")
    return 0
