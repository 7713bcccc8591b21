"""What cutting a batch into more parts costs, on one thread and on two.

    python benchmarks/cpu_parts.py                # the table behind _config.CPU_SPLIT_PART_ROWS
    python benchmarks/cpu_parts.py --rounds 5
    python benchmarks/cpu_parts.py --quick        # tiny sizes: a smoke test, not a measurement

A CPU epoch cuts each batch into parts by the batch's size alone (so that the
weights do not depend on the thread count; ``fastmlp/_config.py``).  Each
part packs the weights for its products again and writes a gradient that is
added to the others', so more parts cost time when fewer threads run them.
This script fits the same network with the parts forced to 1, 2, 4, 8
(``CPU_SPLIT_MAX_PARTS``, with ``CPU_SPLIT_PART_ROWS`` = 1) on 1 and 2 threads
(``CPU_THREADS``), in one process, the variants interleaved round by round;
it prints the best time of each and its ratio to the 2-part, same-thread time.
"""

import argparse
import sys
import time
import warnings

import numpy as np

# (name, rows, features, hidden, batch, epochs, dtype)
CASES = [
    ("784 -> (256, 128), batch 256", 20000, 784, (256, 128), 256, 3, "float32"),
    ("784 -> (256, 128), batch 512", 20000, 784, (256, 128), 512, 3, "float32"),
    ("784 -> (256, 128), batch 1024", 20000, 784, (256, 128), 1024, 3, "float32"),
    ("40 -> (100, 100), batch 100", 4000, 40, (100, 100), 100, 20, "float64"),
    ("40 -> (100, 100), batch 512", 4000, 40, (100, 100), 512, 20, "float64"),
]
QUICK = [("20 -> (16,), batch 64", 300, 20, (16,), 64, 1, "float64")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from fastmlp import MLPClassifier, _config

    warnings.simplefilter("ignore")
    cases = QUICK if args.quick else CASES
    rounds = 1 if args.quick else args.rounds
    rng = np.random.default_rng(0)
    data = {}
    times = {}
    for r in range(rounds):
        for name, n, d, hidden, batch, epochs, dtype in cases:
            if name not in data:
                data[name] = (rng.standard_normal((n, d)).astype(dtype), rng.integers(0, 10, n))
            X, y = data[name]
            for parts in args.parts:
                for threads in args.threads:
                    if threads > parts:
                        continue
                    with _config.override(CPU_SPLIT_PART_ROWS=1, CPU_SPLIT_MAX_PARTS=parts,
                                          CPU_THREADS=threads):
                        est = MLPClassifier(hidden, batch_size=batch, max_iter=epochs,
                                            random_state=0, tol=0.0, n_iter_no_change=10**9,
                                            dtype=dtype)
                        if r == 0:  # compile or load the kernels
                            MLPClassifier(hidden, batch_size=batch, max_iter=1,
                                          dtype=dtype).fit(X[:batch * 2], y[:batch * 2])
                        t0 = time.perf_counter()
                        est.fit(X, y)
                        dt = time.perf_counter() - t0
                    key = (name, parts, threads)
                    times[key] = min(times.get(key, np.inf), dt)
    print("| network, batch | parts | rows a part | 1 thread | 2 threads |")
    print("|---|---:|---:|---:|---:|")
    for name, n, d, hidden, batch, epochs, dtype in cases:
        for parts in args.parts:
            cells = []
            for threads in args.threads:
                t = times.get((name, parts, threads))
                base = times.get((name, min(2, max(args.parts)), threads))
                cells.append("—" if t is None else f"{t:.3f} s ({t / base:.2f}x)")
            print(f"| {name} | {parts} | {batch // parts} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
