"""``fastmlp.backends.cpu.calls.call``: one kernel calls another by address.

The caller must get what a plain call gives (scalars and arrays back, literal
arguments cast), its module must hold a declaration of the callee instead of a
copy of its code (the point: compile time), and a caller loaded from numba's
on-disk cache must find its callees in a new process, also when a callee's own
cache entry is gone and the callee is compiled afresh.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastmlp.backends.cpu import calls
from fastmlp.backends.cpu.calls import call
from fastmlp.backends.cpu.train import all_finite


@njit(nogil=True)
def _view(buf, col_off, cap, rows, cols):
    """Rows of the workspace buffer viewed as a matrix (an array the caller gets back)."""
    start = col_off * cap
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit
def _finite_by_call(X):
    return call(all_finite, (X,))


@njit
def _view_by_call(buf, cap, rows, cols):
    # literal 2 as the column offset: cast to the callee's int64
    return call(_view, (buf, 2, cap, rows, cols))


def test_a_scalar_comes_back(rng):
    X = rng.standard_normal((7, 5))
    assert _finite_by_call(X) is True
    X[3, 1] = np.nan
    assert _finite_by_call(X) is False
    X[3, 1] = -np.inf
    assert _finite_by_call(X) is False


def test_an_array_comes_back_and_is_a_view(rng):
    buf = rng.standard_normal(40).astype(np.float32)
    V = _view_by_call(buf, 4, 3, 2)
    np.testing.assert_array_equal(V, buf[8:14].reshape(3, 2))
    V[0, 0] = 123.0  # a view of buf, as the callee returns it
    assert buf[8] == 123.0


def test_the_caller_declares_the_callee_instead_of_copying_it(rng):
    X = rng.standard_normal((2, 2))
    _finite_by_call(X)
    (ir,) = _finite_by_call.inspect_llvm().values()
    symbol = calls._symbol(all_finite.py_func.__module__, "all_finite",
                           tuple(_finite_by_call.signatures[0]))
    assert f"declare i32 @\"{symbol}\"" in ir or f"declare i32 @{symbol}" in ir
    # all_finite's own code (its loop) is not in the caller's module
    assert all_finite.py_func.__qualname__ not in ir.replace(symbol, "")


def test_a_kernel_that_is_not_module_level_is_refused():
    @njit
    def local(x):
        return x + 1

    @njit
    def caller(x):
        return call(local, (x,))

    with pytest.raises(TypingError, match=r"_call.*<locals>\.local"):
        caller(1.0)


_FIT = textwrap.dedent("""
    import warnings
    import numpy as np
    from fastmlp import MLPClassifier
    from fastmlp.backends.cpu import train
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    clf = MLPClassifier(hidden_layer_sizes=(7,), max_iter=4, batch_size=50, random_state=0,
                        backend="cpu").fit(X, y)
    print(repr(clf.loss_), repr(float(np.abs(clf.predict_proba(X)).sum())),
          sum(train.train_epoch.stats.cache_hits.values()),
          sum(train.train_epoch.stats.cache_misses.values()))
""")


def _fit_in_fresh_process(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", _FIT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    loss, total, hits, misses = out.stdout.split()
    return loss, total, int(hits), int(misses)


def test_a_cached_caller_finds_its_callees_in_a_new_process(tmp_path):
    first = _fit_in_fresh_process(tmp_path)
    assert first[2:] == (0, 1)  # compiled
    second = _fit_in_fresh_process(tmp_path)
    assert second[2:] == (1, 0)  # train_epoch loaded from the cache ...
    assert second[:2] == first[:2]  # ... and its callees found: the same fit
    # a callee's cache entry gone: it is compiled afresh (a new address) when the cached
    # caller is loaded, and the caller reaches it through the registered symbol
    gone = [p for p in tmp_path.rglob("*") if p.name.startswith("dense.dense_grads")]
    assert gone
    for p in gone:
        p.unlink()
    third = _fit_in_fresh_process(tmp_path)
    assert third[2:] == (1, 0)
    assert third[:2] == first[:2]
    assert [p for p in tmp_path.rglob("*") if p.name.startswith("dense.dense_grads")]
