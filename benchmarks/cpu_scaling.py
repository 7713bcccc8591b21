"""How fit time scales with the number of CPU threads: fastmlp, scikit-learn, PyTorch.

    python benchmarks/cpu_scaling.py                 # 1, 2, 4, ... up to the machine's cores
    python benchmarks/cpu_scaling.py --threads 1 2   # chosen counts
    python benchmarks/cpu_scaling.py --quick         # tiny sizes: a smoke test, not a measurement

Cases (``fastmlp._bench``'s): "medium" = the bench's first fit (20000 x 784 ->
(256, 128) -> 10, Adam, batch 256, 3 epochs, float32), "small" = its second
(4000 x 40 -> (100, 100), batch 100, 20 epochs), "medium-1024" (the medium
case with batches of 1024 rows, which fastmlp cuts into 8 parts: up to 8
threads; batches of 256 are cut into 2, see ``_config.CPU_SPLIT_PART_ROWS``),
and "lbfgs" (20000 x 100 -> (128,), float64, 100 iterations, 16 parts; no
PyTorch contender).

Each (contender, thread count) runs in its own fresh process whose thread
limits are set before anything is imported: ``NUMBA_NUM_THREADS`` (fastmlp's
compiled epoch), ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
``MKL_NUM_THREADS`` (BLAS, for all three) and ``torch.set_num_threads``.  A
warm-up fit compiles or loads the kernels, then the best of ``--repeat`` fits
is kept.  The contenders take turns, with a pause between processes (PyTorch's
OpenMP threads keep spinning after it returns).  The table gives seconds and
the speed-up over the same contender's one-thread time.
"""

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("medium", "small", "medium-1024", "lbfgs")
CONTENDERS = ("fastmlp", "scikit-learn", "PyTorch")
PAUSE_S = 1.0

_CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from fastmlp import _bench
case, who, threads, repeat, quick = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
sizes = _bench.QUICK if quick else _bench.FULL
if case == "lbfgs":
    c = sizes["lbfgs"]
    X, y = _bench.make_data(c["n"], c["d"], c["k"])
    X = X.astype("float64")
    ours, theirs = _bench.lbfgs_models(c)
    model = {"fastmlp": ours, "scikit-learn": theirs}[who]
    make = lambda: model
else:
    c = dict(sizes["small" if case == "small" else "big"])
    if case == "medium-1024":
        c["batch"] = 1024 if not quick else 128
    X, y = _bench.make_data(c["n"], c["d"], c["k"])
    if who == "fastmlp":
        make = lambda: _bench.fastmlp_model(c)
    elif who == "scikit-learn":
        make = lambda: _bench.sklearn_model(c)
    else:
        import torch
        torch.set_num_threads(threads)
        make = lambda: _bench.TorchMLP(c, X.shape[1], int(y.max()) + 1)
make().fit(X, y)  # warm-up: compile or load the kernels
best = float("inf")
for _ in range(repeat):
    m = make()
    t0 = time.perf_counter()
    m.fit(X, y)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best}))
"""


def _has_torch():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except Exception:  # pragma: no cover
        return False


def run_one(case, who, threads, repeat, quick):
    """Best fit time (s) of ``who`` on ``case`` in a fresh process limited to ``threads``."""
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _CHILD, case, who, str(threads), str(repeat),
                          "1" if quick else "0"], env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{who} {case} at {threads} threads failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def thread_counts(limit):
    counts, t = [], 1
    while t < limit:
        counts.append(t)
        t *= 2
    return counts + [limit]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+",
                    help="thread counts (default: 1, 2, 4, ... up to the machine's cores)")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--repeat", type=int, default=3, help="fits per process; the best is kept")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one fit: a smoke test")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    counts = args.threads or thread_counts(cores)
    repeat = 1 if args.quick else args.repeat
    who_all = [w for w in CONTENDERS if w != "PyTorch" or (_has_torch() and not args.no_torch)]
    from fastmlp._bench import machine_info

    info = machine_info()
    print(f"machine: {info.get('cpu', '?')}, {cores} cores; "
          f"{', '.join(f'{k} {v}' for k, v in info.items() if k != 'cpu')}")
    rows = []
    for case in args.cases:
        times = {}
        for threads in counts:
            for who in who_all:
                if case == "lbfgs" and who == "PyTorch":
                    continue
                times[who, threads] = run_one(case, who, threads, repeat, args.quick)
                time.sleep(PAUSE_S)
        for who in who_all:
            if (who, counts[0]) not in times:
                continue
            base = times[who, counts[0]]
            cells = [f"{times[who, t]:.3f} s ({base / times[who, t]:.2f}x)" for t in counts]
            rows.append(f"| {case} | {who} | " + " | ".join(cells) + " |")
    head = "| case | contender | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in counts) + " |"
    print(head)
    print("|---|---|" + "---:|" * len(counts))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
