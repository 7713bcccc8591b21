"""The same model for any number of threads (issue 28).

A CPU epoch cuts each batch into parts (lbfgs: the whole data) by its size
alone; threads take whole parts, and the parts' gradients are added in one
order, so where only one thread may run (numba's thread count 1, a joblib
worker) the same parts run one after the other.  So fit, partial_fit and lbfgs
give bitwise the same weights on 1, 2, 3, 4 or 8 threads (more threads than
this machine's cores: the barrier yields its core), in joblib's loky and
threading workers and in the main process.
"""

import contextlib
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

from fastmlp import MLPClassifier, MLPRegressor, _config
from fastmlp.backends import cpu

# parts of at least PART_ROWS rows (fit_digest sets it): batches of 100 and 128 rows are
# cut into 8 parts, lbfgs's 700 rows into 16; the last batch of an epoch is shorter
# (700 = 5 x 128 + 60) and parts of unequal size occur
PART_ROWS = 12
CASES = {
    "sgd-float32": (MLPClassifier, dict(solver="sgd", momentum=0.9, batch_size=100,
                                        dtype="float32")),
    "adam-float64": (MLPClassifier, dict(solver="adam", batch_size=100, dtype="float64")),
    "sgd-nesterov-float64": (MLPRegressor, dict(solver="sgd", nesterovs_momentum=True, batch_size=128,
                                                dtype="float64", alpha=0.01)),
    "lbfgs-float64": (MLPRegressor, dict(solver="lbfgs", dtype="float64", alpha=0.01)),
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
    # (the threading workers run in a block that has set it already: overrides from
    # several threads at once would restore in the wrong order, see _config)
    parts = (contextlib.nullcontext() if _config.CPU_SPLIT_PART_ROWS == PART_ROWS else
             _config.override(CPU_SPLIT_PART_ROWS=PART_ROWS))
    with warnings.catch_warnings(), parts:
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
    """The cases' batches and lbfgs's rows are cut into 8 and 16 parts (else the tests
    below would prove nothing), and a thread count set by hand is used as it is."""
    spec = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=1).fit(*_data())._spec
    with _config.override(CPU_SPLIT_PART_ROWS=PART_ROWS):
        assert [cpu.epoch_parts(spec, c) for c in (100, 128)] == [8, 8]
        assert cpu.split_parts(spec, 700) == 16
    for threads in (1, 3, 8):
        with _config.override(CPU_THREADS=threads):
            assert cpu.epoch_threads(8) == (threads if cpu.sync.SPLIT else 1)


@pytest.fixture(scope="module")
def here():
    return {case: fit_digest(case) for case in CASES}


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 8])
def test_any_thread_count_gives_the_same_weights(here, threads):
    """1 .. 8 threads run the parts (set by hand: more threads than cores here)."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from fastmlp import _config
        from fastmlp.backends import cpu
        from test_thread_counts import CASES, fit_digest
        _config.CPU_THREADS = {threads}
        print("threads", cpu.epoch_threads(8), cpu.epoch_threads(16))
        for case in CASES:
            print(case, fit_digest(case))
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    want = threads if cpu.sync.SPLIT else 1
    assert lines.pop("threads") == f"{want} {want}"
    assert lines == here


@pytest.mark.parametrize("numba_threads, blas_threads", [(1, 2), (2, 1), (2, 2), (8, 2), (8, 8)])
def test_the_thread_count_follows_numba_and_blas_limits(numba_threads, blas_threads):
    """Automatic thread count: numba's thread count capped by BLAS's limit (a joblib
    worker's, OPENBLAS_NUM_THREADS, threadpoolctl); a power of two dividing the parts.
    (OpenBLAS caps its own count at the cores, so 8 x 8 gives the cores here.)"""
    code = textwrap.dedent("""
        from threadpoolctl import threadpool_limits
        from fastmlp.backends import cpu
        with threadpool_limits(1):
            limited = cpu.epoch_threads(16)
        print(cpu.cpu_threads(), cpu.epoch_threads(16), cpu.epoch_threads(1), limited)
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(numba_threads),
               OPENBLAS_NUM_THREADS=str(blas_threads))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = [int(v) for v in run.stdout.split()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    want = min(numba_threads, blas_threads, cores) if cpu.sync.SPLIT else 1
    pow2 = 1 << (want.bit_length() - 1)
    assert got == [want, pow2, 1, 1]


@pytest.mark.parametrize("joblib_backend", ["loky", "threading"])
def test_joblib_workers_give_the_same_weights(here, joblib_backend):
    cases = sorted(CASES)
    with _config.override(CPU_SPLIT_PART_ROWS=PART_ROWS):  # (loky's workers set it themselves)
        got = Parallel(n_jobs=2, backend=joblib_backend)(delayed(fit_digest)(case)
                                                         for case in cases)
    assert _config.CPU_SPLIT_PART_ROWS == _config._DEFAULTS["CPU_SPLIT_PART_ROWS"]
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


def test_lbfgs_and_adam_weights_do_not_depend_on_blas_threads():
    """Products large enough for a multi-threaded BLAS to round differently (they did:
    lbfgs 6000 x 300, (256, 128)) give the same weights with OPENBLAS_NUM_THREADS 1 or 2:
    BLAS runs on one thread inside every CPU fit."""
    code = textwrap.dedent("""
        import hashlib, warnings
        import numpy as np
        from fastmlp import MLPRegressor
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(3)
        X = rng.standard_normal((1500, 200)).astype(np.float32)
        y = X[:, :3].sum(axis=1)
        for solver in ("lbfgs", "adam"):
            est = MLPRegressor(hidden_layer_sizes=(256,), solver=solver, max_iter=4,
                               batch_size=500, random_state=0, dtype="float32").fit(X, y)
            print(hashlib.sha256(b"".join(c.tobytes() for c in est.coefs_)).hexdigest())
    """)
    outs = []
    for blas in ("1", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=blas, OMP_NUM_THREADS=blas)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        outs.append(run.stdout.split())
    assert len(outs[0]) == 2 and outs[0] == outs[1]
