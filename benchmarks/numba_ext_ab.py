"""The bench's small / medium fits and one-row predict with the numba extensions on
and off, side by side (issue 27).

    python benchmarks/numba_ext_ab.py [--rounds 3] [--repeat 3]

Each round runs one fresh process per mode, alternately: the extensions on, then
``FASTMLP_NUMBA_EXT=0``; each mode has a numba cache folder of its own (kernels
compiled with and without the extensions differ), warmed by an untimed first fit.
A process times fastmlp alone on the bench's own data and models
(``fastmlp._bench``: ``make_data``, ``fastmlp_model``, the FULL sizes), best of
``--repeat``; the table keeps each mode's best over the rounds.  ``--blas-threads 1``
sets ``OPENBLAS_NUM_THREADS=1`` in the children (both NumPy's and SciPy's OpenBLAS).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from fastmlp import _bench
from fastmlp.backends.cpu import _ext
repeat = int(sys.argv[1])
out = {"status": _ext.STATUS}
for name in ("small", "big"):
    c = _bench.FULL[name]
    X, y = _bench.make_data(c["n"], c["d"], c["k"])
    m = _bench.fastmlp_model(c, max_iter=1).fit(X, y)  # compiles (or loads) the kernels
    best = float("inf")
    for _ in range(repeat):
        m = _bench.fastmlp_model(c)
        t = time.perf_counter(); m.fit(X, y); best = min(best, time.perf_counter() - t)
    out[name] = best
    if name == "small":  # the bench's second model: one row of 40 features
        row = np.ascontiguousarray(X[:1])
        for _ in range(200):
            m.predict(row)
        calls, best = _bench.FULL["one_row_calls"], float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(calls):
                m.predict(row)
            best = min(best, (time.perf_counter() - t) / calls)
        out["row"] = best
print(json.dumps(out))
"""

CASES = (("small", "fit 4000x40, hidden (100, 100), batch 100, 20 epochs", 1e3, "ms"),
         ("big", "fit 20000x784, hidden (256, 128), batch 256, 3 epochs", 1.0, "s"),
         ("row", "predict, 1 row (the small case's model, 40 features)", 1e6, "µs"))


def _child(mode, cache, repeat, blas_threads):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    if mode == "off":
        env["FASTMLP_NUMBA_EXT"] = "0"
    run = subprocess.run([sys.executable, "-c", CHILD, str(repeat)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for the children (default: OpenBLAS's own)")
    parser.add_argument("--cache-root", default=None,
                        help="folder for the two modes' numba caches (default: a new temp one)")
    args = parser.parse_args()
    root = args.cache_root or tempfile.mkdtemp(prefix="fastmlp-ext-ab-")
    caches = {mode: os.path.join(root, mode) for mode in ("on", "off")}
    best, status = {}, {}
    for _ in range(args.rounds):
        for mode in ("on", "off"):
            got = _child(mode, caches[mode], args.repeat, args.blas_threads)
            status[mode] = got.pop("status")
            for key, value in got.items():
                best[(mode, key)] = min(value, best.get((mode, key), float("inf")))
    print(f"extensions on: {status['on']}; off: {status['off']}")
    print("| case | extensions on | extensions off (FASTMLP_NUMBA_EXT=0) | off / on |")
    print("|---|---:|---:|---:|")
    for key, label, scale, unit in CASES:
        on, off = best[("on", key)], best[("off", key)]
        print(f"| {label} | {on * scale:.3g} {unit} | {off * scale:.3g} {unit} | {off / on:.2f}x |")


if __name__ == "__main__":
    main()
