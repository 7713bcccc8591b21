"""The kernels' views (``backends.cpu.views``) are NumPy's slices: by another road where the
borrowed views are on, the same slices where they are off (``FASTMLP_NUMBA_EXT=0``)."""

import numpy as np
import pytest
from numba import njit

from fastmlp.backends.cpu import views
from fastmlp.backends.cpu.views import borrow, matrix, vector


@njit(cache=False)
def _matrix_copy(buf, start, rows, cols):
    V = matrix(buf, start, rows, cols)
    out = np.empty((rows, cols), dtype=buf.dtype)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = V[i, j]
    return out, V.shape[0], V.shape[1], V.strides[0], V.strides[1]


@njit(cache=False)
def _vector_copy(buf, start, size):
    v = vector(buf, start, size)
    return v.copy(), v.shape[0], v.strides[0]


@njit(cache=False)
def _write_through(buf, start, rows, cols):
    """Writes through a matrix view and a vector view of the same buffer; passes the
    matrix to NumPy (np.dot) as a kernel does."""
    V = matrix(buf, start, rows, cols)
    for i in range(rows):
        for j in range(cols):
            V[i, j] = 10 * i + j
    w = vector(buf, start + rows * cols, cols)
    w[:] = -1
    return np.dot(V, np.ones(cols, dtype=buf.dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_matrix_is_the_reshaped_slice(rng, dtype):
    buf = (rng.standard_normal(200) * 100).astype(dtype)
    for start, rows, cols in [(0, 1, 7), (13, 5, 9), (37, 4, 40), (200, 0, 3)]:
        got, r, c, s0, s1 = _matrix_copy(buf, start, rows, cols)
        want = buf[start:start + rows * cols].reshape(rows, cols)
        np.testing.assert_array_equal(got, want)
        assert (r, c) == (rows, cols)
        if rows:  # (an empty matrix addresses nothing: NumPy and numba give it other strides)
            assert (s0, s1) == want.strides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_is_the_slice(rng, dtype):
    buf = rng.standard_normal(50).astype(dtype)
    for start, size in [(0, 50), (7, 11), (49, 1), (20, 0)]:
        got, n, s = _vector_copy(buf, start, size)
        np.testing.assert_array_equal(got, buf[start:start + size])
        assert n == size and s == buf.itemsize


def test_writes_land_in_the_buffer(rng):
    buf = rng.standard_normal(60)
    before = buf.copy()
    sums = _write_through(buf, 5, 3, 4)
    want = before.copy()
    want[5:17] = [10 * i + j for i in range(3) for j in range(4)]
    want[17:21] = -1
    np.testing.assert_array_equal(buf, want)
    np.testing.assert_array_equal(sums, want[5:17].reshape(3, 4).sum(axis=1))


@pytest.mark.skipif(not views.BORROWED, reason="the borrowed views are off (plain slices)")
def test_only_flat_contiguous_buffers():
    # a 2-D buffer or a strided one has no single run of memory to view: numba refuses
    # to compile the call (a typing error naming the intrinsic), nothing runs
    from numba.core.errors import TypingError

    with pytest.raises(TypingError, match="matrix"):
        _matrix_copy(np.zeros((4, 4)), 0, 2, 2)
    with pytest.raises(TypingError, match="vector"):
        _vector_copy(np.zeros(10)[::2], 0, 2)


@njit(cache=False)
def _borrowed_sum(a, lo, hi):
    b = borrow(a)
    part = b[lo:hi]  # a slice of the borrowed array
    part[0] += 1.0   # writes reach a's memory
    return part.sum(), b.shape, b.strides


def test_borrow_is_the_same_array(rng):
    for a in (rng.standard_normal(30), rng.standard_normal((6, 5)), rng.standard_normal((5, 6)).T):
        before = a.copy()
        s, shape, strides = _borrowed_sum(a, 1, 4)
        assert shape == a.shape and strides == a.strides
        want = before.copy()
        want[1] += 1.0
        np.testing.assert_array_equal(a, want)
        np.testing.assert_allclose(s, want[1:4].sum())
