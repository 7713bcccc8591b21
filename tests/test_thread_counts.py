"""The same model for any number of threads (issue 28).

A CPU epoch may cut each batch into halves that run in two threads; the halves
depend on the batch alone, and where only one thread may run (numba's thread
count 1, a joblib worker) the same halves run one after the other.  So fit,
partial_fit and lbfgs give bitwise the same weights for 1, 2, 3, 4 or 8 threads,
in joblib's loky and threading workers and in the main process.
"""

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.backends import cpu

# batches of >= CPU_SPLIT_MIN_ROWS rows: the halves are used; the last batch of each epoch
# is shorter (700 = 6 x 100 + 100, 700 = 5 x 128 + 60) and odd-sized halves occur
CASES = {
    "sgd-float32": (MLPClassifier, dict(solver="sgd", momentum=0.9, batch_size=100,
                                        dtype="float32")),
    "adam-float64": (MLPClassifier, dict(solver="adam", batch_size=100, dtype="float64")),
    "lbfgs-float32": (MLPClassifier, dict(solver="lbfgs", dtype="float32")),
    "partial_fit-float64": (MLPRegressor, dict(solver="adam", batch_size=128, dtype="float64")),
    # dropout's masks are keyed by the row's index in the data, not by the half it lands in
    "dropout-float32": (MLPClassifier, dict(solver="adam", batch_size=100, dtype="float32",
                                            dropout=(0.3, 0.1))),
}


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 12))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y


def fit_digest(case):
    """sha256 of the weights of CASES[case] fitted on _data() (the module-level
    function the subprocesses and the joblib workers run)."""
    cls, kw = CASES[case]
    X, y = _data()
    params = dict(hidden_layer_sizes=(32, 16), max_iter=6, random_state=0, backend="cpu", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if case.startswith("partial_fit"):
            est = cls(**params)
            for _ in range(3):
                est.partial_fit(X, X[:, 0])
        else:
            est = cls(**params).fit(X, y)
    m = hashlib.sha256()
    for c in est.coefs_ + est.intercepts_:
        m.update(np.ascontiguousarray(c).tobytes())
    return m.hexdigest()


def test_the_cases_cut_their_batches():
    """The cases' batches are cut into halves (else the tests below prove nothing)."""
    from fastmlp import _config

    assert 0 < _config.CPU_SPLIT_MIN_ROWS <= 100


@pytest.fixture(scope="module")
def here():
    return {case: fit_digest(case) for case in CASES}


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 8])
def test_any_numba_thread_count_gives_the_same_weights(here, threads):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from fastmlp.backends import cpu
        from test_thread_counts import CASES, fit_digest
        print("threads", 2 if cpu._can_split() else 1)
        for case in CASES:
            print(case, fit_digest(case))
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    # numba's thread count decides how many threads run the halves (at most two today)
    assert lines.pop("threads") == ("1" if threads == 1 or not cpu.sync.SPLIT else "2")
    assert lines == here


@pytest.mark.parametrize("joblib_backend", ["loky", "threading"])
def test_joblib_workers_give_the_same_weights(here, joblib_backend):
    cases = sorted(CASES)
    got = Parallel(n_jobs=2, backend=joblib_backend)(delayed(fit_digest)(case) for case in cases)
    assert dict(zip(cases, got)) == here


def test_cross_val_score_is_the_same_with_n_jobs_2():
    X, y = _data()
    est = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=5, batch_size=80, random_state=0,
                        backend="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = cross_val_score(est, X, y, cv=3, n_jobs=1)
        two = cross_val_score(est, X, y, cv=3, n_jobs=2)
    np.testing.assert_array_equal(one, two)
