"""Differential test: fastmlp against scikit-learn on configurations drawn by hypothesis.

Each example draws a configuration over scikit-learn's MLP parameter space (solver,
activation, schedule, momentum, early stopping, tol, n_iter_no_change, warm_start,
partial_fit sequences, sample weights) and a data kind (binary, multiclass,
multilabel, string labels, column-vector y, 1-D and multi-output regression, Poisson,
dense and CSR, 1-120 rows), runs the same calls on both libraries (fastmlp with
``dtype="float64", backend="cpu"``) and compares what a user sees: exception types,
warning categories, ``n_iter_``, ``t_``, loss curves, validation scores, coefs and
predictions, at rtol 1e-6.

Every excused difference is one named predicate in ``EXCUSES``; the README's list of
deliberate differences names exactly these (``test_readme_lists_exactly_the_excuses``).

CI runs ``FASTMLP_DIFFERENTIAL_EXAMPLES`` examples (default 40).  A long run:

    FASTMLP_DIFFERENTIAL_EXAMPLES=2000 FASTMLP_DIFFERENTIAL_REPORT=/tmp/diff.json \\
        python -m pytest -q tests/test_differential.py

With a report path, mismatches are counted by cause into that JSON file instead of
failing at the first one (the test still fails at the end if any was unexplained).
"""

import functools
import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.neural_network import MLPClassifier as SkC
from sklearn.neural_network import MLPRegressor as SkR

from fastmlp import MLPClassifier, MLPRegressor

N_EXAMPLES = int(os.environ.get("FASTMLP_DIFFERENTIAL_EXAMPLES", "40"))
REPORT = os.environ.get("FASTMLP_DIFFERENTIAL_REPORT")
RTOL = 1e-6
# warnings compared by category: UserWarning and its subclasses (ConvergenceWarning,
# DataConversionWarning); numpy's RuntimeWarnings inside scikit-learn's arithmetic on a
# diverging fit are not part of the contract
F64 = dict(dtype="float64", backend="cpu")


# --------------------------------------------------------------------------- drawing
@st.composite
def configs(draw):
    classifier = draw(st.booleans())
    n = draw(st.integers(1, 120))
    d = draw(st.integers(1, 5))
    if classifier:
        kind = draw(st.sampled_from(["binary", "multiclass", "multilabel", "strings", "column"]))
    else:
        kind = draw(st.sampled_from(["1d", "multi", "column", "poisson"]))
    solver = draw(st.sampled_from(["sgd", "adam", "lbfgs"]))
    n_layers = draw(st.integers(1, 2))
    params = dict(
        hidden_layer_sizes=tuple(draw(st.integers(1, 8)) for _ in range(n_layers)),
        activation=draw(st.sampled_from(["identity", "logistic", "tanh", "relu"])),
        solver=solver,
        alpha=draw(st.sampled_from([0.0, 1e-4, 0.1, 1.0])),
        batch_size=draw(st.sampled_from(["auto", 1, 7, 32, 500])),
        learning_rate=draw(st.sampled_from(["constant", "invscaling", "adaptive"])),
        learning_rate_init=draw(st.sampled_from([1e-3, 1e-2, 0.1, 1.0])),
        power_t=draw(st.sampled_from([0.25, 0.5])),
        max_iter=draw(st.integers(1, 25)),
        shuffle=draw(st.booleans()),
        random_state=draw(st.integers(0, 1000)),
        tol=draw(st.sampled_from([0.0, 1e-4, 1e-2, 1.0])),
        momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
        nesterovs_momentum=draw(st.booleans()),
        early_stopping=draw(st.booleans()),
        validation_fraction=draw(st.sampled_from([0.1, 0.3])),
        beta_1=draw(st.sampled_from([0.0, 0.9])),
        beta_2=draw(st.sampled_from([0.5, 0.999])),
        epsilon=draw(st.sampled_from([1e-8, 1e-3])),
        n_iter_no_change=draw(st.sampled_from([1, 2, 10])),
        max_fun=draw(st.sampled_from([15000, 20])),
        warm_start=draw(st.booleans()),
    )
    if not classifier and kind == "poisson":
        params["loss"] = "poisson"
    if draw(st.integers(0, 19)) == 0:  # now and then a parameter scikit-learn refuses
        name, value = draw(st.sampled_from([("alpha", -1.0), ("batch_size", 0),
                                            ("max_iter", 0), ("momentum", 1.5),
                                            ("activation", "softsign")]))
        params[name] = value
    calls = draw(st.sampled_from(["fit", "fit_fit", "partial_fit"]))
    n_calls = draw(st.integers(1, 3)) if calls == "partial_fit" else (2 if calls == "fit_fit" else 1)
    data = dict(
        classifier=classifier, kind=kind, n=n, d=d, seed=draw(st.integers(0, 2**31 - 1)),
        scale=draw(st.sampled_from([1.0, 1.0, 30.0, 1e4])),
        weights=draw(st.sampled_from([None, None, "positive", "zeros"])),
        sparse=draw(st.integers(0, 4)) == 0,
    )
    return data, params, calls, n_calls


def make_data(data):
    rng = np.random.default_rng(data["seed"])
    n, d = data["n"], data["d"]
    X = rng.standard_normal((n, d)) * data["scale"]
    kind = data["kind"]
    if data["classifier"]:
        if kind == "binary":
            y = (X[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(int)
        elif kind == "multiclass":
            y = rng.integers(0, 3, n)
        elif kind == "multilabel":
            y = (rng.standard_normal((n, 3)) + X[:, :1] > 0).astype(int)
        elif kind == "strings":
            y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, n)]
        else:  # column vector
            y = rng.integers(0, 2, (n, 1))
    else:
        w = rng.standard_normal((d, 2))
        if kind == "1d":
            y = X @ w[:, 0] + 0.1 * rng.standard_normal(n)
        elif kind == "multi":
            y = X @ w + 0.1 * rng.standard_normal((n, 2))
        elif kind == "column":
            y = (X @ w[:, :1]) + 0.1 * rng.standard_normal((n, 1))
        else:  # poisson
            y = rng.poisson(np.exp(np.clip(X[:, 0] / data["scale"], -3, 3))).astype(float)
    sw = None
    if data["weights"] == "positive":
        sw = rng.uniform(0.2, 3.0, n)
    elif data["weights"] == "zeros":
        sw = rng.uniform(0.2, 3.0, n) * (rng.uniform(size=n) > 0.4)
    if data["sparse"]:
        X = sp.csr_matrix(X * (rng.uniform(size=X.shape) > 0.5))
    return X, y, sw


# --------------------------------------------------------------------------- running
def run(Est, params, calls, n_calls, X, y, sw, classifier):
    """The calls on a new estimator; a record per call: exception, warnings, attributes."""
    est = Est(**params)
    records = []
    for c in range(n_calls):
        rec = {"call": "partial_fit" if calls == "partial_fit" else "fit"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with np.errstate(all="ignore"):
                    if calls == "partial_fit":
                        kw = ({"classes": np.unique(y)} if classifier and c == 0
                              and np.ndim(y) == 1 else {})
                        est.partial_fit(X, y, sample_weight=sw, **kw)
                    else:
                        est.fit(X, y, sample_weight=sw)
                rec["error"] = None
            except Exception as exc:  # compared, not hidden
                rec["error"] = exc
        rec["warnings"] = sorted({w.category.__name__ for w in caught
                                  if issubclass(w.category, UserWarning)})
        if rec["error"] is None:
            rec["state"] = state(est, X)
        records.append(rec)
        if rec["error"] is not None:
            break
    return records


def state(est, X):
    """What a user sees after a call, copied: scikit-learn appends to the same
    loss_curve_ list and updates coefs_ in place on the next call."""
    s = {k: getattr(est, k, None) for k in (
        "n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
        "best_validation_score_")}
    s = {k: list(v) if isinstance(v, list) else v for k, v in s.items()}
    s["coefs"] = [np.array(a, copy=True) for a in est.coefs_ + est.intercepts_]
    with np.errstate(all="ignore"):
        try:
            s["predict"] = est.predict(X)
            if hasattr(est, "predict_proba"):
                s["proba"] = est.predict_proba(X)
        except Exception as exc:
            s["predict"] = exc
    return s


# --------------------------------------------------------------------------- excuses
# Each is (README bullet title, predicate(ctx) -> bool).  ctx holds the drawn
# configuration, both libraries' records and the call being compared.

def _weights_with_zeros(ctx):
    return ctx["sw"] is not None and np.any(ctx["sw"] == 0)


def zero_weight_batch(ctx):
    """A minibatch whose weights all weigh zero: scikit-learn divides by their sum
    (ZeroDivisionError "Weights sum to zero"), fastmlp skips the batch."""
    e = ctx["theirs"].get("error")
    return (_weights_with_zeros(ctx) and isinstance(e, ZeroDivisionError)
            and "sum to zero" in str(e))


def warm_start_early_stopping_best(ctx):
    """warm_start + early_stopping refit with no new best validation score: scikit-learn
    returns its last weights (its best arrays alias the live ones), fastmlp the best;
    where those last weights diverged, scikit-learn raises 'Solver produced non-finite
    parameter weights' and fastmlp returns its finite best."""
    p = ctx["params"]
    return (p["warm_start"] and p["early_stopping"] and ctx["index"] > 0
            and ctx["calls"] == "fit_fit" and p["solver"] != "lbfgs")


_LIVE_BEST_DIVERGED = "exception: sklearn ValueError: Solver produced non-finite"


def _at_overflow(record, big=1e30):
    """Whether a call's record shows a float64 overflow: 'Solver produced non-finite
    parameter weights', or a loss curve holding inf, NaN or a loss above ``big``
    (weights past ~1e15: the run has blown up and its next products overflow)."""
    e = record.get("error")
    if isinstance(e, ValueError) and "non-finite parameter weights" in str(e):
        return True
    curve = np.asarray((record.get("state") or {}).get("loss_curve_") or [], dtype=float)
    return bool(curve.size) and (not np.all(np.isfinite(curve)) or curve.max() > big)


def overflow_boundary(ctx):
    """Float64 overflow: where both runs blow up (a loss past 1e30, inf or NaN), one
    library's intermediate products overflow a step before the other's (fastmlp scales
    a batch's output deltas before the backward products, scikit-learn divides the
    weight gradients after them), so one may end with finite weights and an infinite
    loss, the other with NaN weights; and any rounding difference is amplified beyond
    comparison."""
    return _at_overflow(ctx["ours"]) and _at_overflow(ctx["theirs"])


def poisson_zero_over_zero(ctx):
    """Poisson loss at a zero target whose prediction exp(o) underflows to 0: scikit-learn's
    xlogy(y, y / p) is then xlogy(0, 0 / 0) = NaN, so it reports (and decides tol on) a NaN
    loss while its gradient p - y stays finite; fastmlp reports the deviance's limit."""
    if ctx["data"]["kind"] != "poisson":
        return False
    _, y, _ = make_data(ctx["data"])
    a = (ctx["ours"].get("state") or {}).get("loss_curve_") or []
    b = (ctx["theirs"].get("state") or {}).get("loss_curve_") or []
    return (bool(np.any(np.asarray(y) == 0)) and len(a) > 0 and bool(np.all(np.isfinite(a)))
            and bool(np.any(np.isnan(b))))


def divergence_under_early_stopping(ctx):
    """Divergence under early stopping: fastmlp stops at the diverging epoch (scikit-learn
    trains on to max_iter recording nan); both restore the same best weights."""
    s = ctx["theirs"].get("state") or {}
    curve = s.get("loss_curve_") or []
    return ctx["params"]["early_stopping"] and not np.all(np.isfinite(curve))


def failed_fit_changes_nothing(ctx):
    """A failed fit changes nothing in fastmlp; scikit-learn keeps what it had reached,
    so nothing after the first exception of a call sequence is compared."""
    return ctx["index"] > 0 and ctx["earlier_error"]


def parameter_errors(ctx):
    """Parameter errors: fastmlp raises ValueError or TypeError, scikit-learn its
    InvalidParameterError (a subclass of both)."""
    a, b = ctx["ours"].get("error"), ctx["theirs"].get("error")
    return (a is not None and b is not None and type(b).__name__ == "InvalidParameterError"
            and isinstance(b, type(a)))


def lbfgs_regressor_partial_fit(ctx):
    """MLPRegressor(solver="lbfgs") has no partial_fit (scikit-learn's exposes one)."""
    p = ctx["params"]
    return (not ctx["data"]["classifier"] and p["solver"] == "lbfgs"
            and ctx["calls"] == "partial_fit" and isinstance(ctx["ours"].get("error"),
                                                             AttributeError))


def lbfgs_bookkeeping(ctx):
    """lbfgs bookkeeping: a fresh lbfgs fit has no loss_curve_ or stale validation
    attributes (scikit-learn leaves them from an earlier fit)."""
    return ctx["params"]["solver"] == "lbfgs"


def rounding_amplification(ctx):
    """Rounding amplification: the two libraries add the same products in a different
    order (BLAS blocking, numba's loops vs numpy's pairwise sums), a difference of a
    few ulps that a long fit amplifies; excused where the first epoch (or the first
    lbfgs evaluation's loss) agrees to 1e-9 and the difference then grows."""
    a = (ctx["ours"].get("state") or {}).get("loss_curve_") or []
    b = (ctx["theirs"].get("state") or {}).get("loss_curve_") or []
    if a and b and np.isfinite(a[0]) and np.isfinite(b[0]):
        if abs(a[0] - b[0]) <= 1e-9 * max(1.0, abs(b[0])):
            return True
        # within the first epoch: many small steps (batch_size 1 over ~100 rows) can
        # amplify a few ulps past 1e-6 before the epoch ends; excused where the first
        # step's weights agree to 1e-12
        return _steps_per_epoch(ctx) >= 16 and ctx["first_step_agrees"]()
    return ctx["params"]["solver"] == "lbfgs" and ctx["lbfgs_first_agrees"]


def _steps_per_epoch(ctx):
    p, n = ctx["params"], ctx["data"]["n"]
    if p["solver"] == "lbfgs":
        return 0
    b = min(200, n) if p["batch_size"] == "auto" else min(p["batch_size"], n)
    if p["early_stopping"]:
        n = int(n * (1 - p["validation_fraction"]))
    return -(-n // b)


EXCUSES = {
    "zero_weight_batch": zero_weight_batch,
    "warm_start_early_stopping_best": warm_start_early_stopping_best,
    "divergence_under_early_stopping": divergence_under_early_stopping,
    "failed_fit_changes_nothing": failed_fit_changes_nothing,
    "parameter_errors": parameter_errors,
    "lbfgs_regressor_partial_fit": lbfgs_regressor_partial_fit,
    "lbfgs_bookkeeping": lbfgs_bookkeeping,
    "rounding_amplification": rounding_amplification,
    "overflow_boundary": overflow_boundary,
    "poisson_zero_over_zero": poisson_zero_over_zero,
}
# how each excuse limits the comparison: "all" (nothing more compared for the call),
# "history" (the loss history, n_iter_, t_, weights and predictions not compared),
# "stale" (only the attributes a previous sgd/adam fit left)
SCOPE = {
    "zero_weight_batch": "all", "failed_fit_changes_nothing": "all",
    "parameter_errors": "all", "lbfgs_regressor_partial_fit": "all",
    "warm_start_early_stopping_best": "weights",
    "divergence_under_early_stopping": "history", "rounding_amplification": "history",
    "overflow_boundary": "all", "poisson_zero_over_zero": "history",
    "lbfgs_bookkeeping": "stale",
}


# --------------------------------------------------------------------------- comparing
def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return False
    scale = np.nanmax(np.abs(b)) if b.size and np.isfinite(b).any() else 1.0
    return bool(np.allclose(a, b, rtol=rtol, atol=rtol * max(scale, 1e-300), equal_nan=True))


def differences(ours, theirs, ctx):
    """The names of what differs in one call's records (empty: the same)."""
    diffs = []
    a, b = ours.get("error"), theirs.get("error")
    if (a is None) != (b is None):
        return ["exception: " + (f"fastmlp {type(a).__name__}: {a}" if a is not None
                                 else f"sklearn {type(b).__name__}: {b}")[:160]]
    if a is not None:
        if type(a) is not type(b):
            diffs.append(f"exception type {type(a).__name__} vs {type(b).__name__}")
        return diffs + ([] if ours["warnings"] == theirs["warnings"] else
                        [f"warnings {ours['warnings']} vs {theirs['warnings']}"])
    if ours["warnings"] != theirs["warnings"]:
        diffs.append(f"warnings {ours['warnings']} vs {theirs['warnings']}")
    sa, sb = ours["state"], theirs["state"]
    for key in ("n_iter_", "t_"):
        if sa[key] != sb[key]:
            diffs.append(f"{key} {sa[key]} vs {sb[key]}")
    for key in ("loss_", "best_loss_", "best_validation_score_"):
        if (sa[key] is None) != (sb[key] is None) or (
                sb[key] is not None and not _close(sa[key], sb[key])):
            diffs.append(f"{key} {sa[key]} vs {sb[key]}")
    for key in ("loss_curve_", "validation_scores_"):
        if (sa[key] is None) != (sb[key] is None) or (
                sb[key] is not None and not _close(sa[key], sb[key])):
            diffs.append(key)
    if not all(_close(x, y) for x, y in zip(sa["coefs"], sb["coefs"])):
        diffs.append("coefs")
    pa, pb = sa["predict"], sb["predict"]
    if isinstance(pa, Exception) or isinstance(pb, Exception):
        if type(pa) is not type(pb):
            diffs.append("predict exception")
    elif pa.dtype.kind in "fc" and pb.dtype.kind in "fc":
        if not _close(pa, pb):
            diffs.append("predict")
    elif not np.array_equal(pa, pb) and not _close(sa.get("proba"), sb.get("proba")):
        diffs.append("predict")
    if "proba" in sb and not _close(sa.get("proba"), sb["proba"]):
        diffs.append("predict_proba")
    return diffs


_HISTORY = ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_", "loss_curve_",
            "validation_scores_", "coefs", "predict", "predict_proba")
_WEIGHTS = ("coefs", "predict", "predict_proba", "best_validation_score_", "validation_scores_")
_STALE = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_", "t_")


def _covered(diff, scope):
    key = diff.split(" ")[0]
    if scope == "all":
        return True
    if scope == "history":
        return key in _HISTORY or diff.startswith("warnings")
    if scope == "weights":
        return key in _WEIGHTS or diff.startswith(_LIVE_BEST_DIVERGED)
    return key in _STALE


def judge(data, params, calls, n_calls):
    """(cause, detail): cause None when both libraries agree, an excuse's name when its
    predicate explains every difference, "unexplained" otherwise."""
    X, y, sw = make_data(data)
    Ours = MLPClassifier if data["classifier"] else MLPRegressor
    Theirs = SkC if data["classifier"] else SkR
    theirs = run(Theirs, params, calls, n_calls, X, y, sw, data["classifier"])
    ours = run(lambda **p: Ours(**F64, **p), params, calls, n_calls, X, y, sw,
               data["classifier"])
    used, growth = [], None
    first_step = functools.cache(lambda: _first_step_agrees(Ours, Theirs, params, X, y, sw))
    for i in range(max(len(ours), len(theirs))):
        ra = ours[i] if i < len(ours) else {"error": None, "warnings": [], "state": None}
        rb = theirs[i] if i < len(theirs) else {"error": None, "warnings": [], "state": None}
        ctx = dict(data=data, params=params, calls=calls, index=i, sw=sw, ours=ra, theirs=rb,
                   earlier_error=any(r["error"] is not None for r in ours[:i] + theirs[:i]),
                   lbfgs_first_agrees=_lbfgs_first_agrees(Ours, Theirs, params, X, y, sw),
                   first_step_agrees=first_step)
        if ra.get("state") is None and rb.get("state") is None and ra["error"] is None \
                and rb["error"] is None:
            diffs = ["call count"]
        else:
            diffs = differences(ra, rb, ctx)
        if not diffs:
            continue
        for name, pred in EXCUSES.items():
            if diffs and pred(ctx):
                left = [d for d in diffs if not _covered(d, SCOPE[name])]
                if len(left) < len(diffs):
                    used.append(name)
                    if name == "rounding_amplification":
                        growth = _growth(ra, rb)
                diffs = left
        if diffs:
            return "unexplained", f"call {i}: " + "; ".join(diffs)
        if ra["error"] is not None or rb["error"] is not None:
            break
    cause = used[0] if used else None
    return cause, (growth if cause == "rounding_amplification" else None)


def _growth(ra, rb):
    """The loss curves' relative difference per epoch (for the report: rounding
    amplification grows by orders of magnitude over epochs, a different decision
    jumps)."""
    a = np.asarray((ra.get("state") or {}).get("loss_curve_") or [], dtype=float)
    b = np.asarray((rb.get("state") or {}).get("loss_curve_") or [], dtype=float)
    m = min(a.size, b.size)
    with np.errstate(all="ignore"):
        rel = np.abs(a[:m] - b[:m]) / np.maximum(np.abs(b[:m]), 1e-300)
    return {"len": [int(a.size), int(b.size)], "rel": [float(f"{r:.1e}") for r in rel]}


def _first_step_agrees(Ours, Theirs, params, X, y, sw):
    """sgd / adam: do the weights after one step on the first batch of rows (unshuffled)
    agree to 1e-12?  The same arithmetic as the drawn fit's steps, before amplification."""
    bs = params["batch_size"]
    b = min(len(X), 200 if bs == "auto" else bs)
    p = dict(params, max_iter=1, warm_start=False, early_stopping=False, shuffle=False)
    w = None if sw is None else sw[:b]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            a = Ours(**F64, **p).fit(X[:b], y[:b], sample_weight=w).coefs_
            t = Theirs(**p).fit(X[:b], y[:b], sample_weight=w).coefs_
    except Exception:
        return False
    return all(_close(x, z, rtol=1e-12) for x, z in zip(a, t))


def _lbfgs_first_agrees(Ours, Theirs, params, X, y, sw):
    """lbfgs: does the loss at iteration 1 agree to 1e-9 (the iterates start together)?"""
    if params["solver"] != "lbfgs":
        return False
    p = dict(params, max_iter=1, warm_start=False)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            a = Ours(**F64, **p).fit(X, y, sample_weight=sw).loss_
            b = Theirs(**p).fit(X, y, sample_weight=sw).loss_
    except Exception:
        return False
    return bool(abs(a - b) <= 1e-9 * max(1.0, abs(b)))


# --------------------------------------------------------------------------- tests
COUNTS = Counter()
UNEXPLAINED = []
AMPLIFIED = []  # the report's record of each rounding-amplification excuse


@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=REPORT is None,
          database=None, suppress_health_check=list(HealthCheck))
@given(configs())
def test_fastmlp_matches_sklearn(case):
    data, params, calls, n_calls = case
    cause, detail = judge(data, params, calls, n_calls)
    COUNTS[cause or "same"] += 1
    record = {"data": data, "params": params, "calls": calls, "n_calls": n_calls,
              "detail": detail}
    if cause == "unexplained":
        UNEXPLAINED.append(record)
    elif cause == "rounding_amplification":
        AMPLIFIED.append(record)
    if REPORT:
        Path(REPORT).write_text(json.dumps({"counts": COUNTS, "unexplained": UNEXPLAINED,
                                            "rounding_amplification": AMPLIFIED},
                                           indent=1, default=str))
        return
    assert cause != "unexplained", (detail, data, params, calls, n_calls)


def test_no_example_was_unexplained():
    """A long run with a report counts every mismatch instead of stopping at the first; it
    still fails here, after the examples above (this file runs in order, in one process),
    if any of them had no named excuse."""
    assert not UNEXPLAINED, (f"{len(UNEXPLAINED)} unexplained mismatches"
                             + (f" (see {REPORT})" if REPORT else ""))


def test_readme_lists_exactly_the_excuses():
    """The README's deliberate differences are the excuses above, one bullet each,
    tagged with the predicate's name."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("The deliberate differences:", 1)[1].split("\n### ", 1)[0]
    tags = re.findall(r"^- \*\*[^*]*\*\*\s*`(\w+)`", section, flags=re.M)
    bullets = re.findall(r"^- ", section, flags=re.M)
    assert len(tags) == len(bullets), "every bullet names its predicate"
    assert sorted(tags) == sorted(EXCUSES)


@pytest.mark.parametrize("name", sorted(EXCUSES))
def test_each_excuse_is_documented_by_its_predicate(name):
    assert EXCUSES[name].__doc__ and name in SCOPE
