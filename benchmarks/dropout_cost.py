"""What dropout costs: the bench's dense fits with ``dropout=0.2`` beside ``0.0``, and
PyTorch's ``nn.Dropout(0.2)`` beside its plain loop (issue 31).

    python benchmarks/dropout_cost.py [--repeat 5] [--cases big small]

Uses the bench's own data and models (``fastmlp._bench``: ``make_data``,
``fastmlp_model``, ``TorchMLP``, the FULL sizes; "big" is the 20000 x 784 fit,
hidden (256, 128), batch 256, 3 epochs, "small" the 4000 x 40 one).  The
contenders run once untimed (compilation), then round after round, interleaved,
every other round in reverse order (so a neighbour's after-effects, a spinning
thread pool, hit each alike); printed: each one's best and median round and the
ratios of the medians.  PyTorch is skipped when it does not import.
"""

import gc
import time

import argparse
import warnings

import numpy as np

from fastmlp import _bench


class TorchDropoutMLP(_bench.TorchMLP):
    """The bench's PyTorch loop with ``nn.Dropout(rate)`` after each hidden ReLU."""

    def __init__(self, c, d, k, rate):
        super().__init__(c, d, k)
        torch = self.torch
        layers = []
        for m in self.model:
            layers.append(m)
            if isinstance(m, torch.nn.ReLU):
                layers.append(torch.nn.Dropout(rate))
        self.model = torch.nn.Sequential(*layers)
        self.model.train()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--cases", nargs="+", default=["big", "small"])
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch = _bench._torch()  # (its default thread count, as in the bench)
    for name in args.cases:
        c = _bench.FULL[name]
        X, y = _bench.make_data(c["n"], c["d"], c["k"])
        d, k = X.shape[1], c["k"]

        def fm(rate):
            return lambda: _bench.fastmlp_model(c).set_params(dropout=rate).fit(X, y)

        contenders = {"fastmlp 0.0": fm(0.0), f"fastmlp {args.rate}": fm(args.rate)}
        if torch is not None:
            contenders["torch"] = lambda: _bench.TorchMLP(c, d, k).fit(X, y)
            contenders[f"torch Dropout({args.rate})"] = \
                lambda: TorchDropoutMLP(c, d, k, args.rate).fit(X, y)
        times = {key: [] for key in contenders}
        for f in contenders.values():
            f()
        for r in range(args.repeat):
            keys = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
            for key in keys:
                gc.collect()
                t0 = time.perf_counter()
                contenders[key]()
                times[key].append(time.perf_counter() - t0)
        med = {key: float(np.median(t)) for key, t in times.items()}
        print(f"## {name}: {c}")
        for key, t in times.items():
            line = f"{key:>22}: best {min(t):.3f} s, median {med[key]:.3f} s"
            if key.startswith("fastmlp"):
                line += f"  (median {med[key] / med['fastmlp 0.0']:.3f} x without dropout)"
            elif key != "torch":
                line += f"  (median {med[key] / med['torch']:.3f} x without dropout)"
            print(line, flush=True)
        # the accuracy each reaches (training rows; not timed), for the record
        for rate in (0.0, args.rate):
            m = _bench.fastmlp_model(c).set_params(dropout=rate).fit(X, y)
            print(f"  fastmlp dropout={rate}: training accuracy {m.score(X, y):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
