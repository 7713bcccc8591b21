"""Check and time the CUDA backend on a real NVIDIA GPU: one script, no install.

    python benchmarks/gpu_check.py               # on a GPU machine, from the repo root
    python benchmarks/gpu_check.py --dry-run     # the same steps, tiny, in numba's CUDA
                                                 # simulator (no GPU needed)
    python benchmarks/gpu_check.py --ptx-report  # every kernel variant through NVVM, ptxas
                                                 # and nvJitLink for sm_80 and sm_90: one
                                                 # table (needs numba-cuda[cu12], not a GPU)
    python benchmarks/gpu_check.py --ptx-quick   # the subset tests/test_ptx.py runs in CI

Needs only what a GPU machine image has: numba, numba-cuda, scikit-learn and
(optionally) torch; fastmlp is imported from this checkout.  Steps:

1. The CUDA test files on the real device (``FASTMLP_REAL_GPU=1 pytest tests/test_cuda.py
   tests/test_cuda_sparse.py``).
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
4. Sparse input (issue 24): a text-like CSR matrix (SPARSE_CASE: 20000 x 30000,
   18 non-zeros a row, (64,), adam, 3 epochs), fit and predict_proba on the
   CUDA backend taking the CSR arrays (``cuda/sparse.py``), on the CUDA backend
   given dense rows a chunk at a time (what it did before), and on the CPU's CSR
   kernels; float64 parity of the CSR fit against the CPU's.

Exit status: 0 on success, 1 when a check fails, 2 when no usable GPU.
"""

import argparse
import os
import re
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
# the sparse step: (n, d, non-zeros a row, classes, hidden, batch, epochs)
SPARSE_CASE = (20000, 30000, 18, 10, (64,), 200, 3)
DRY_SPARSE_CASE = (60, 40, 4, 3, (5,), 16, 1)


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
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py",
           "tests/test_cuda_sparse.py"]
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


def sparse_data(n, d, per_row, classes, seed=0, dtype=np.float32):
    """A text-like CSR matrix (about ``per_row`` non-zeros a row, duplicates summed; the
    columns drawn with probability 1 / (rank + 50), a skew like a vocabulary's) and labels
    that depend on it."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(d) + 50.0)
    cols = rng.choice(d, n * per_row, p=p / p.sum())
    X = sp.csr_matrix((rng.uniform(0.1, 1.0, n * per_row).astype(dtype),
                       (np.repeat(np.arange(n), per_row), cols)), shape=(n, d))
    X.sum_duplicates()
    w = rng.normal(size=(d, classes)).astype(dtype)
    return X, np.asarray((X @ w).argmax(axis=1)).ravel()


def sparse_step(dry_run):
    """Step 4: fit + predict_proba of a CSR matrix, three ways, and the CSR fit's parity
    (float64, a smaller slice) against the CPU.  Returns (table rows, parity)."""
    from fastmlp import MLPClassifier, _config

    n, d, per_row, classes, hidden, batch, epochs = DRY_SPARSE_CASE if dry_run else SPARSE_CASE
    X, y = sparse_data(n, d, per_row, classes)
    rows = []

    def model(backend, n_epochs, dtype="float32"):
        return MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch, max_iter=n_epochs,
                             random_state=0, backend=backend, dtype=dtype, tol=0.0,
                             n_iter_no_change=10**6)

    for name, backend, densify_above in (("cuda CSR", "cuda", None),
                                         ("cuda dense chunks", "cuda", 0.0),
                                         ("cpu CSR", "cpu", None)):
        over = {} if densify_above is None else {"SPARSE_DENSIFY_ABOVE": densify_above}
        with warnings.catch_warnings(), _config.override(**over):
            warnings.simplefilter("ignore")
            model(backend, 1).fit(X[:2 * batch + 7], y[:2 * batch + 7]).predict_proba(X[:50])
            t = time.perf_counter()
            m = model(backend, epochs).fit(X, y)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            m.predict_proba(X)
            pred_s = time.perf_counter() - t
        print(f"  sparse {name}: fit {fit_s:.3f} s, predict_proba {pred_s:.4f} s")
        rows.append(f"| sparse {n}x{d}, {per_row} nnz/row, {hidden} | {name} | {fit_s:.3f} | "
                    f"{pred_s:.4f} |")
    m_rows = min(n, 2000)
    fits = []
    for backend in ("cpu", "cuda"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(model(backend, 2, "float64").fit(X[:m_rows], y[:m_rows]))
    a, b = fits
    worst = max(rel(x, z) for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
    worst = max(worst, rel(a.loss_curve_, b.loss_curve_),
                rel(a.predict_proba(X[:m_rows]), b.predict_proba(X[:m_rows])))
    print(f"  sparse parity (float64, {m_rows} rows, cpu CSR vs cuda CSR): {worst:.2e}")
    return rows, worst


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


# --- compile-time facts: NVIDIA's compiler, no GPU needed ------------------------------------
#
# Every kernel variant the backend launches is compiled for each compute capability in
# PTX_CCS through NVVM (PTX), ptxas (registers, spills, stack, shared memory) and, for the
# cooperative epoch kernel, nvJitLink against libcudadevrt (its grid sync lives there).
# The launch signatures are not written out here: they are recorded by running the
# backend's own Trainer, FullBatch and predict with host stand-ins for the device arrays
# and the kernels, so whatever ``Program`` passes is what gets compiled.
#
# Registers, spills and occupancy are read from a build like the one fastmlp makes on a
# GPU (no line info).  Line info changes what ptxas makes of a kernel (the float64
# persistent kernel: 133 / 128 registers at sm_80 / sm_90 with it, 142 / 138 without, in
# one measurement), so it is only in a second build, of the float32 kernels, made in a
# child process (``--ptx-sites``): its line info names the source line of each float64
# instruction for the allow-list.  The two builds must agree on the float64 counts.

PTX_CCS = ((8, 0), (9, 0))
# The quick report (``--ptx-quick``, what tests/test_ptx.py runs in CI): three lowerings
# (and a fourth, with line info, for the float32 sites), so that it fits CI's few
# minutes.  The persistent kernels hold every phase (the float64-leak check reads the
# float32 one; the float64 one has the most registers) and are built for both
# capabilities; the float64 per-phase kernel for sm_90.  The full report (--ptx-report;
# FASTMLP_PTX_FULL=1 in tests/test_ptx.py) builds every launched signature for both.
PTX_QUICK = {("epoch_kernel", "float32"): ((8, 0), (9, 0)),
             ("epoch_kernel", "float64"): ((8, 0), (9, 0)),
             ("phase_kernel", "float64"): ((9, 0),)}
# registers and shared memory per SM, and the most resident threads, by compute capability
SM_LIMITS = {(8, 0): (65536, 167936, 2048), (9, 0): (65536, 233472, 2048)}

# float64 work a float32 kernel may hold: (name, source file, text of the source line, why).
# An f64 instruction is allowed when the PTX line info puts it on a line of that file whose
# text contains the given text.  Everything else is a leak (tests/test_ptx.py fails on it).
F64_ALLOWED = (
    # The loss sum: each thread adds its rows' losses in float64, the block reduces those
    # in float64 shared memory and adds one float64 atomically (one read per epoch).  An
    # epoch sums up to n_samples row losses; in float32 that sum would lose about
    # log2(n_batches) bits.  Its cost is per row and per phase, not per element.
    ("loss sum: rows", "losses.py", "part += w * output_row_loss(",
     "each row's loss (float32) converted once and added in float64"),
    ("loss sum: batch", "train.py", "part = lscale * loss_phase(",
     "the thread's loss sum times the batch's float64 loss scale"),
    ("loss sum: outputs", "train.py", "part /= k",
     "the squared error averaged over the k outputs"),
    ("loss sum: L2", "train.py", "part = lscale * (of(alpha, 0.5) * alpha * sq)",
     "the batch's L2 term from the thread's float32 sum of squared weights"),
    ("loss sum: phases", "train.py", "& 1023] += part  # f64",
     "the persistent kernel's per-thread sum over phases and batches (in shared memory)"),
    ("loss sum: block", "_common.py", "buf[tid] += buf[tid + s]",
     "the block's tree reduction of the per-thread sums (float64 shared memory)"),
    ("loss sum: atomic", "_common.py", "cuda.atomic.add(out, 0, buf[0] * factor)",
     "the block's sum added into the epoch's float64 accumulator"),
)

_F64_ARITH = re.compile(
    r"^\s*(?:@!?%p\d+\s+)?(add|sub|mul|fma|mad|div|rcp|sqrt|rsqrt|neg|abs|min|max|setp|testp)"
    r"(?:\.[a-z0-9]+)*\.f64\b")
_TO_F64 = re.compile(r"^\s*(?:@!?%p\d+\s+)?cvt(?:\.(?:rni|rzi|rmi|rpi|rn|rz|rm|rp|ftz|sat))*"
                     r"\.f64\.(?!f64)[a-z0-9]+\b")
_F32_ARITH = re.compile(
    r"^\s*(?:@!?%p\d+\s+)?(add|sub|mul|fma|mad|div|rcp|sqrt|rsqrt|ex2|lg2|sin|cos|tanh)"
    r"(?:\.[a-z0-9]+)*\.f32\b")
# a 64-bit integer division or remainder: a subroutine call in SASS (``_common.quot``)
_DIV64 = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:div|rem)(?:\.[a-z]+)*\.[su]64\b")
_LOC = re.compile(r"^\s*\.loc\s+(\d+)\s+(\d+)")
_FILE = re.compile(r'^\s*\.file\s+(\d+)\s+"([^"]+)"')
_SHARED = re.compile(r"^\s*(?:\.visible\s+|\.extern\s+)?\.shared\s+.*\[(\d+)\];")


def ptx_f64_sites(ptx):
    """(f64 arithmetic, conversions to f64, f32 arithmetic, sites): the PTX's counts and,
    for each f64 instruction, (kind, file, line) from its line info."""
    files, loc, sites = {}, (None, 0), []
    for m in map(_FILE.match, ptx.splitlines()):
        if m:
            files[m.group(1)] = m.group(2)
    arith = conv = f32 = 0
    for line in ptx.splitlines():
        m = _LOC.match(line)
        if m:
            loc = (files.get(m.group(1)), int(m.group(2)))
            continue
        if _F64_ARITH.match(line):
            arith += 1
            sites.append(("arith", loc[0], loc[1]))
        elif _TO_F64.match(line):
            conv += 1
            sites.append(("cvt", loc[0], loc[1]))
        elif _F32_ARITH.match(line):
            f32 += 1
    return arith, conv, f32, sites


def ptx_int64_divisions(ptx):
    """The PTX's 64-bit integer divisions and remainders (each a call in the SASS)."""
    return sum(1 for line in ptx.splitlines() if _DIV64.match(line))


def _source_line(path, line, _cache={}):
    if path not in _cache:
        try:
            with open(path) as f:
                _cache[path] = f.read().splitlines()
        except OSError:
            _cache[path] = []
    lines = _cache[path]
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def f64_leaks(sites):
    """{(file, line, source text): count} of the f64 sites that no F64_ALLOWED entry names,
    and {allow-list name: count} of those that one does."""
    leaks, allowed = {}, {}
    for _kind, path, line in sites:
        text = _source_line(path, line) if path else ""
        base = os.path.basename(path or "?")
        for name, fname, snippet, _why in F64_ALLOWED:
            if base == fname and snippet in text:
                allowed[name] = allowed.get(name, 0) + 1
                break
        else:
            key = (base, line, text)
            leaks[key] = leaks.get(key, 0) + 1
    return leaks, allowed


def blocks_per_sm(regs, smem, threads, cc):
    """Blocks of ``threads`` resident per SM for ``regs`` registers a thread and ``smem``
    bytes of shared memory a block (registers allocated per warp in units of 256)."""
    reg_file, smem_sm, max_threads = SM_LIMITS[cc]
    warps = -(-threads // 32)
    per_warp = -(-max(regs, 1) * 32 // 256) * 256
    by_regs = (reg_file // per_warp) // warps
    by_smem = smem_sm // (smem + 1024)  # the runtime reserves 1 KB a block
    return max(0, min(by_regs, by_smem, max_threads // threads, 32))


def _compiler_paths():
    """(ptxas, libcudadevrt.a) from the NVIDIA wheels or the toolkit; raises when absent."""
    from cuda import pathfinder

    return pathfinder.find_nvidia_binary_utility("ptxas"), pathfinder.find_static_lib("cudadevrt")


def _ptxas(ptxas, ptx, cc, relocatable, workdir, name):
    """ptxas -v: {registers, spill_bytes, stack, smem}; shared memory from ptxas where it
    reports it (whole-program), else from the PTX's .shared declarations (relocatable)."""
    src = os.path.join(workdir, name + ".ptx")
    with open(src, "w") as f:
        f.write(ptx)
    cmd = [ptxas, "-v", f"-arch=sm_{cc[0]}{cc[1]}", src, "-o", os.path.join(workdir, name + ".cubin")]
    if relocatable:
        cmd.insert(1, "-c")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"ptxas failed: {p.stderr[-2000:]}")
    out = p.stderr + p.stdout
    entry = out[out.index("Compiling entry function"):]
    regs = int(re.search(r"Used (\d+) registers", entry).group(1))
    stack, st, ld = map(int, re.search(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", entry).groups())
    m = re.search(r"(\d+) bytes smem", entry)
    smem = int(m.group(1)) if m else sum(int(s.group(1)) for s in map(_SHARED.match, ptx.splitlines()) if s)
    return {"registers": regs, "spill_bytes": st + ld, "stack": stack, "smem": smem}


def _link_with_cudadevrt(cubin, cc, cudadevrt):
    """Link the relocatable cubin that ``ptxas -c`` made of the kernel with libcudadevrt
    through nvJitLink (what the cooperative launch does); linking the cubin, not the PTX,
    spares a second ptxas run of the largest kernel."""
    from cuda.bindings import nvjitlink

    with open(cubin, "rb") as f:
        data = f.read()
    h = nvjitlink.create(1, [f"-arch=sm_{cc[0]}{cc[1]}"])
    try:
        nvjitlink.add_data(h, nvjitlink.InputType.CUBIN, data, len(data), "kernel.cubin")
        nvjitlink.add_file(h, nvjitlink.InputType.LIBRARY, cudadevrt)
        nvjitlink.complete(h)
        return nvjitlink.get_linked_cubin_size(h)
    finally:
        nvjitlink.destroy(h)


class _HostArray(np.ndarray):
    """A host array with the two methods of a numba device array that ``Program`` calls."""

    def copy_to_device(self, ary):
        self[...] = ary

    def copy_to_host(self, ary=None):
        if ary is None:
            return np.array(self)
        ary[...] = self
        return ary


class _HostCuda:
    """Stands in for ``numba.cuda`` while ``Program`` allocates (no driver needed)."""

    @staticmethod
    def to_device(a):
        return np.array(a).view(_HostArray)

    @staticmethod
    def device_array(shape, dtype=np.float64):
        return np.zeros(shape, dtype).view(_HostArray)

    @staticmethod
    def device_array_like(a):
        return np.zeros_like(np.asarray(a)).view(_HostArray)


def launch_signatures(dtypes=("float32", "float64"), activations=None, forms=("dense", "csr")):
    """{kernel name: [(dtype, argument types), ...]}: every distinct signature the backend
    launches, recorded from real Trainer epochs (adam, sgd), FullBatch sums and predict
    with both drivers, each activation family (or those named) and output, X dense and
    a CSR matrix (``forms``), with host stand-ins.  (The activation is a kernel
    argument, not a type: the quick report records relu's only.  A CSR X passes its
    three arrays beside an empty X, and an empty three beside a dense X, all of one
    type whatever the matrix: tests/test_ptx.py checks that CSR launches add no
    signature, so that the variants compiled here hold the CSR phases.)"""
    import scipy.sparse as sp
    from numba import typeof
    import fastmlp.backends.cuda as C
    from fastmlp import _config
    from fastmlp._registry import ACTIVATIONS, OUTPUTS, ADAM, SGD
    from fastmlp.backends.cuda import train as T
    from fastmlp.backends.layout import OptimizerState, make_layout

    seen = {}
    current = [None]

    class Recorder:
        """A kernel stand-in: ``kernel[grid, block](*args)`` records the argument types."""

        def __init__(self, name):
            self.name = name

        def __getitem__(self, _launch_config):
            def launch(*args):
                sig = tuple(typeof(np.asarray(a) if isinstance(a, np.ndarray) else a)
                            for a in args)
                seen.setdefault((self.name, current[0], sig), None)
            return launch

    saved = (T.cuda, T.kernels, T.cooperative_blocks, T._FALLBACK_REASON[:])
    T.cuda = _HostCuda
    T.kernels = lambda _t, _r: (Recorder("epoch_kernel"), Recorder("phase_kernel"))
    T.cooperative_blocks = lambda kernel, args, block: 1
    rng = np.random.default_rng(0)
    try:
        for dtype in dtypes:
            dt = np.dtype(dtype)
            current[0] = dtype
            for drv in ("persistent", "launches"):
                for act in (activations or ACTIVATIONS):
                    for out in OUTPUTS:
                        spec = make_layout(5, (4, 3), 2, act, 0.1, 2, OUTPUTS[out], dt)
                        theta = rng.normal(size=spec.n_params).astype(dt)
                        X = rng.normal(size=(9, 5)).astype(dt)
                        X[rng.uniform(size=X.shape) < 0.6] = 0
                        if out == "softmax":
                            Y, y = np.zeros((0, 2), dt), rng.integers(0, 2, 9)
                        else:
                            Y, y = rng.uniform(size=(9, 2)).astype(dt), np.zeros(0, np.int64)
                        sw = np.ones(9, dt)
                        for form in forms:
                            Xf = sp.csr_matrix(X) if form == "csr" else X
                            with _config.override(CUDA_EPOCH_DRIVER=drv):
                                for solver in (ADAM, SGD):
                                    opt = OptimizerState.new(
                                        solver, theta.copy(), learning_rate=0.01, momentum=0.9,
                                        nesterov=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
                                    C.Trainer(spec, Xf, Y, y, sw, 4, theta.copy(), opt,
                                              1e-4).epoch(np.arange(9))
                                C.FullBatch(spec, Xf, Y, y, sw[:0])(theta, np.empty_like(theta))
                                C.predict(spec, theta, Xf, True)
    finally:
        T.cuda, T.kernels, T.cooperative_blocks = saved[:3]
        T._FALLBACK_REASON[:] = saved[3]
    out = {}
    for name, dtype, sig in seen:
        out.setdefault(name, []).append((dtype, sig))
    return out


def _ptx_for(pyfunc, sig, ccs, launch_bounds, lineinfo=False):
    """The kernel's PTX for each compute capability in ``ccs``: typed and lowered once, NVVM
    run per capability (numba's private entry, else compile_ptx per cc)."""
    from numba import cuda
    from numba.cuda import compiler

    lower = getattr(compiler, "_compile_pyfunc_with_fixup", None)
    if lower is not None:
        try:
            lib, _ = lower(pyfunc, sig, debug=None, lineinfo=lineinfo, device=False,
                           fastmath=False,
                           cc=ccs[0], opt=None, abi="numba", abi_info=None, forceinline=False,
                           launch_bounds=launch_bounds, lto=False)
        except TypeError:  # another numba-cuda's private signature
            lower = None
    if lower is None:
        return [cuda.compile_ptx(pyfunc, sig, lineinfo=lineinfo, cc=cc,
                                 launch_bounds=launch_bounds)[0] for cc in ccs]
    return [lib.get_asm_strs(cc=cc)[0] for cc in ccs]


def ptx_report(ccs=PTX_CCS, dtypes=("float32", "float64"), log=print, keep=None, only=None,
               sites=False):
    """Compile every launched kernel variant for each cc; one dict per (kernel, dtype, cc).
    ``only``: {(kernel, dtype): ccs} (``PTX_QUICK``): those, each for its ccs, and of a
    (kernel, dtype) with several launched signatures the first one recorded.

    Must run in a process where numba's CUDA simulator is off and no kernel module has
    been imported yet.  ``sites``: the line-info build (every device function compiled
    with line info from here on), its float64 sites only, no ptxas; else the build
    fastmlp makes.  ``keep``: a folder that keeps the PTX and cubin files (else a
    temporary one).
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise SystemExit("the compile report needs the real CUDA target: unset NUMBA_ENABLE_CUDASIM")
    import tempfile

    from numba import cuda
    import numba.cuda.dispatcher as disp

    ptxas, cudadevrt = _compiler_paths()
    if sites and "fastmlp.backends.cuda" not in sys.modules:
        # line info in every device function, so that each f64 instruction has a source line
        jit = cuda.jit

        def jit_with_lineinfo(func_or_sig=None, **kw):
            kw.setdefault("lineinfo", True)
            return jit(func_or_sig, **kw)

        cuda.jit = jit_with_lineinfo

    if only is not None:
        dtypes = tuple(d for d in dtypes if any(dt == d for _k, dt in only))
        ccs = tuple(sorted({cc for v in only.values() for cc in v}))

    class _Device:  # device functions ask the current device for its compute capability
        compute_capability = ccs[-1]

    disp.get_current_device = lambda: _Device()  # this process only compiles
    from fastmlp.backends.cuda import _common, train as T

    Tt, R = _common.tile(), _common.reg_block()
    threads = Tt * Tt
    t = time.perf_counter()
    sigs = launch_signatures(dtypes, ("relu",) if only is not None else None)
    log(f"  recorded the launch signatures in {time.perf_counter() - t:.1f} s", flush=True)
    built = dict(zip(("epoch_kernel", "phase_kernel"), T.kernels(Tt, R)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or tmp
        os.makedirs(work, exist_ok=True)
        for name in sorted(sigs):
            kernel = built[name]
            bounds = kernel.targetoptions.get("launch_bounds")
            coop = name == "epoch_kernel"
            done = set()
            for dtype, sig in sigs[name]:
                want = ccs
                if only is not None:
                    want = only.get((name, dtype), ())
                    if not want or dtype in done:
                        continue
                    done.add(dtype)
                t = time.perf_counter()
                for cc, ptx in zip(want, _ptx_for(kernel.py_func, sig, want, bounds, sites)):
                    arith, conv, f32, where = ptx_f64_sites(ptx)
                    leaks, allowed = f64_leaks(where) if sites else ({}, {})
                    base = f"{name}_{dtype}_{cc[0]}{cc[1]}"
                    if sites:
                        rows.append(dict(kernel=name, dtype=dtype, cc=f"{cc[0]}.{cc[1]}",
                                         f64_arith=arith, to_f64=conv, f32_arith=f32,
                                         f64_allowed=allowed, f64_leaks=[
                                             [f, ln, txt, n]
                                             for (f, ln, txt), n in sorted(leaks.items())]))
                        continue
                    st = _ptxas(ptxas, ptx, cc, coop, work, base)
                    if coop:  # raises when it cannot link
                        _link_with_cudadevrt(os.path.join(work, base + ".cubin"), cc, cudadevrt)
                    rows.append(dict(
                        kernel=name, dtype=dtype, cc=f"{cc[0]}.{cc[1]}", threads=threads,
                        launch_bounds=bounds, line_info=False, **st,
                        int64_divisions=ptx_int64_divisions(ptx),
                        blocks_per_sm=blocks_per_sm(st["registers"], st["smem"], threads, cc),
                        f64_arith=arith, to_f64=conv, f32_arith=f32, f64_allowed=allowed,
                        f64_leaks=[[f, ln, txt, n] for (f, ln, txt), n in sorted(leaks.items())],
                        linked_cudadevrt=coop))
                log(f"  compiled {name} {dtype} for "
                    f"{', '.join(f'sm_{a}{b}' for a, b in want)} in {time.perf_counter() - t:.1f} s",
                    flush=True)
    return rows


def ptx_table(rows):
    """The report as one markdown table."""
    out = ["| kernel | dtype | sm | registers | spills (B) | stack (B) | shared (B) | "
           "blocks/SM at %d threads | int64 div | f64 arith | cvt to f64 | f32 arith | "
           "f64 allowed | f64 leaks |" % rows[0]["threads"],
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        allowed = ", ".join(f"{k} {v}" for k, v in sorted(r["f64_allowed"].items())) or "-"
        out.append(f"| {r['kernel']} | {r['dtype']} | {r['cc'].replace('.', '')} | "
                   f"{r['registers']} | {r['spill_bytes']} | {r['stack']} | {r['smem']} | "
                   f"{r['blocks_per_sm']} | {r['int64_divisions']} | {r['f64_arith']} | "
                   f"{r['to_f64']} | {r['f32_arith']} | "
                   f"{allowed if r['dtype'] == 'float32' else 'n/a'} | "
                   f"{sum(n for *_, n in r['f64_leaks']) if r['dtype'] == 'float32' else 'n/a'} |")
    return "\n".join(out)


def ptx_failures(rows):
    """What the compile check fails on: spills, a kernel that cannot be resident, a 64-bit
    integer division in the persistent kernel, float64 work in a float32 kernel outside
    F64_ALLOWED.  (The per-phase kernel holds three, which LLVM writes to count the trips
    of a grid-stride loop it unrolls, on a path taken only past 2**32: not ours to remove,
    and nothing is live across the loop there.)"""
    bad = []
    for r in rows:
        what = f"{r['kernel']} {r['dtype']} sm_{r['cc'].replace('.', '')}"
        if r["spill_bytes"]:
            bad.append(f"{what}: {r['spill_bytes']} bytes of register spills")
        if r["blocks_per_sm"] < 1:
            bad.append(f"{what}: cannot be resident ({r['registers']} registers)")
        if r["int64_divisions"] and r["kernel"] == "epoch_kernel":
            bad.append(f"{what}: {r['int64_divisions']} 64-bit integer division(s) "
                       "(a call each; _common.quot)")
        if r["dtype"] == "float32":
            for f, ln, txt, n in r["f64_leaks"]:
                bad.append(f"{what}: {n} float64 instruction(s) at {f}:{ln}: {txt}")
    return bad


def f64_sites_of_float32_builds(only=None):
    """{(kernel, cc): row} of ``ptx_report(sites=True)`` for the float32 kernels, built in
    a child process (line info must be on before the kernel modules are imported)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sites.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--ptx-sites", "--json", out]
        if only is not None:
            cmd.append("--ptx-quick")
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode or not os.path.exists(out):
            raise RuntimeError(f"the line-info build failed: {p.stdout[-2000:]}{p.stderr[-2000:]}")
        with open(out) as f:
            return {(r["kernel"], r["cc"]): r for r in json.load(f)["rows"]}


def merge_f64_sites(rows, site_rows):
    """The float32 rows of the build fastmlp makes, given the allow-list's verdict from the
    line-info build; a float32 row whose float64 counts differ between the two builds (or
    that the line-info build lacks) gets a leak entry saying so."""
    for r in rows:
        if r["dtype"] != "float32":
            continue
        s = site_rows.get((r["kernel"], r["cc"]))
        if s is None or (s["f64_arith"], s["to_f64"]) != (r["f64_arith"], r["to_f64"]):
            got = "none" if s is None else f"{s['f64_arith']} + {s['to_f64']}"
            r["f64_leaks"] = [["?", 0, f"the line-info build has {got} float64 "
                               f"instructions, this one {r['f64_arith']} + {r['to_f64']}", 1]]
            r["f64_allowed"] = {}
        else:
            r["f64_leaks"], r["f64_allowed"] = s["f64_leaks"], s["f64_allowed"]
    return rows


def run_ptx_report(json_path=None, keep=None, quick=False, sites=False):
    import json

    try:
        _compiler_paths()
    except Exception as exc:  # noqa: BLE001 - any reason the compiler is missing
        print(f"NVIDIA's compiler is not installed ({type(exc).__name__}: {exc}); "
              'pip install "numba-cuda[cu12]"')
        return 2
    t = time.perf_counter()
    only = PTX_QUICK if quick else None
    if sites:  # the child of f64_sites_of_float32_builds
        rows = ptx_report(dtypes=("float32",), only=only, sites=True)
        with open(json_path, "w") as f:
            json.dump({"rows": rows}, f)
        return 0
    rows = ptx_report(keep=keep, only=only)
    if any(r["dtype"] == "float32" for r in rows):
        merge_f64_sites(rows, f64_sites_of_float32_builds(only))
    bad = ptx_failures(rows)
    print(ptx_table(rows))
    for b in bad:
        print("FAIL", b)
    print(f"compile report: {len(rows)} kernel builds, {len(bad)} failures, "
          f"{time.perf_counter() - t:.0f} s")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"rows": rows, "failures": bad}, f, indent=1)
    return 1 if bad else 0


def device_kernel_facts():
    """The compile-time facts of the kernels this run compiled for its GPU, as the driver
    reports them: registers, local memory (spills), shared memory and, for the persistent
    kernel, the cooperative grid it can hold (``--ptx-report`` gives the same without a GPU,
    and the float64 instruction counts)."""
    from fastmlp.backends.cuda import _common, train as T

    t = _common.tile()
    print(f"| kernel | signature | registers | local B | shared B | "
          f"cooperative blocks at {t * t} threads |")
    print("|---|---|---:|---:|---:|---:|")
    for name, kernel in zip(("epoch_kernel", "phase_kernel"), T.kernels(t, _common.reg_block())):
        for sig, k in kernel.overloads.items():
            dt = next((str(a.dtype) for a in sig if hasattr(a, "dtype")
                       and str(a.dtype) in ("float32", "float64") and a.ndim == 2), "?")
            try:
                coop = k.max_cooperative_grid_blocks((t, t)) if name == "epoch_kernel" else ""
                print(f"| {name} | {dt} | {kernel.get_regs_per_thread(sig)} | "
                      f"{kernel.get_local_mem_per_thread(sig)} | "
                      f"{kernel.get_shared_mem_per_block(sig)} | {coop} |")
            except Exception as exc:  # noqa: BLE001 - a report line, never a failure
                print(f"| {name} | {dt} | {type(exc).__name__}: {exc} | | | |")


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
    ap.add_argument("--compile-ptx", "--ptx-report", dest="compile_ptx", action="store_true",
                    help="compile every kernel variant with NVIDIA's compiler for sm_80 and "
                         "sm_90 (no GPU needed), print registers / occupancy / float64 "
                         "use, and exit")
    ap.add_argument("--ptx-quick", action="store_true",
                    help="the compile report for PTX_QUICK only (both kernels and dtypes, "
                         "sm_90, the float32 persistent kernel also sm_80): what CI runs")
    ap.add_argument("--ptx-sites", action="store_true", help=argparse.SUPPRESS)  # internal
    ap.add_argument("--json", metavar="PATH", help="with --ptx-report: also write it as JSON")
    ap.add_argument("--ptx-dir", metavar="DIR", help="with --ptx-report: keep the PTX there")
    ap.add_argument("--skip-tests", action="store_true", help="leave the test file out")
    ap.add_argument("--skip-parity", action="store_true", help="timings only")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--skip-sparse", action="store_true", help="leave the sparse step out")
    args = ap.parse_args(argv)

    if args.compile_ptx or args.ptx_quick or args.ptx_sites:
        return run_ptx_report(args.json, args.ptx_dir, quick=args.ptx_quick,
                              sites=args.ptx_sites)
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
    if not args.skip_sparse:
        sparse_rows, sparse_worst = sparse_step(args.dry_run)
        print()
        print("| sparse case | path | fit s | predict_proba s |")
        print("|---|---|---:|---:|")
        print("\n".join(sparse_rows))
        print(f"sparse parity (max rel diff, float64, cpu vs cuda CSR): {sparse_worst:.1e}")
        if not sparse_worst < 1e-6:
            print("SPARSE PARITY FAILED")
            failed = True
    if not args.dry_run:
        device_kernel_facts()
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
