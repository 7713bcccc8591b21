"""Command line: ``python -m fastmlp demo`` and ``python -m fastmlp bench``."""

import argparse
import sys
import time
import warnings


def demo(argv=None):
    """Train fastmlp and scikit-learn's MLPClassifier on the digits; print accuracy and fit time."""
    p = argparse.ArgumentParser(prog="python -m fastmlp demo", description=demo.__doc__)
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--max-iter", type=int, default=200)
    args = p.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.preprocessing import StandardScaler

    from fastmlp import MLP

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    params = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.max_iter, random_state=0)

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # compile once (cached on disk afterwards) so the timing below is the fit itself;
        # 200 rows: full batches, so the same kernels as the fit below (see CPU_SPLIT_MIN_ROWS)
        tic = time.perf_counter()
        MLP(**params, backend=args.backend).fit(X_tr[:200], y_tr[:200])
        warm = time.perf_counter() - tic
        for name, est in (("fastmlp", MLP(**params, backend=args.backend)),
                          ("scikit-learn", SkMLP(**params))):
            tic = time.perf_counter()
            est.fit(X_tr, y_tr)
            dt = time.perf_counter() - tic
            rows.append((name, est.score(X_te, y_te), dt, est.n_iter_))
    print(f"digits: {X_tr.shape[0]} train / {X_te.shape[0]} test rows, {X.shape[1]} features, "
          f"hidden {params['hidden_layer_sizes']}")
    print(f"(first fastmlp call incl. JIT compile or cache load: {warm:.2f} s)")
    print(f"{'model':<14}{'test accuracy':>15}{'fit time (s)':>14}{'epochs':>8}")
    for name, acc, dt, it in rows:
        print(f"{name:<14}{acc:>15.4f}{dt:>14.3f}{it:>8d}")
    print(f"fastmlp speed-up: {rows[1][2] / rows[0][2]:.1f}x")
    return 0


def bench(argv=None):
    """Side-by-side comparison against scikit-learn, PyTorch and the BLAS floor."""
    from fastmlp import _bench

    return _bench.main(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": demo, "bench": bench}
    if not argv or argv[0] not in commands:
        print("usage: python -m fastmlp {demo,bench} [options]\n"
              "  demo   train on scikit-learn's digits beside sklearn's MLPClassifier\n"
              "  bench  the performance comparison (see benchmarks/RESULTS.md)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
