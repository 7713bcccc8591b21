"""Borrowed views: a kernel's views of its own buffers, without reference counting.

A numba array carries a pointer to its memory's owner (the "meminfo"), and
every view made from it, passed on or dropped, increments or decrements the
owner's count with an atomic instruction.  The kernels view their flat
buffers (``theta``, the gradient, the workspace) as one matrix or vector per
layer and per batch, and ``perf`` put a quarter of a 1-row forward pass's
samples on those counts (``NRT_incref`` / ``NRT_decref``).  For the 40 -> 100
-> 100 -> 10 network of the benchmarks, float32, ``predict_forward`` took
1.79 us, 1.17 us with ``matrix`` / ``vector`` (no counts, no reshape helper),
0.99 us with its arguments borrowed too; its three GEMVs alone take 0.98 us.

The views made here point into the buffer without a meminfo: they cost a few
stores to make and nothing to pass or drop, and compile to less code than
``buf[a:b].reshape(...)`` (which carries numba's reshape helper and its
error branch).  They borrow: valid only while the buffer they view is alive,
which is the whole call of the kernel that made them.  No kernel hands one
back to Python (numba would box it as an array that does not keep its memory
alive); they are for compiled code only.

Bounds are not checked, as elsewhere in the kernels (numba's default): the
offsets come from ``layout.make_layout``, whose tests check that every buffer
fits.  ``numba.np.arrayobj.make_array`` / ``populate_array`` are the helpers
numba's own array constructors use; ``tests/test_views.py`` checks the views
against NumPy slicing.

Contained (``_ext``): the plain versions come first (a slice and a reshape;
``borrow(a)`` is ``a``), and the borrowed views replace them only when
``FASTMLP_NUMBA_EXT`` is not 0 and the import-time probe passes: numba's
``make_array`` / ``populate_array`` are importable and a tiny kernel's views,
borrowed array and writes through them agree with NumPy.  The plain versions
also serve ``NUMBA_DISABLE_JIT=1``.
"""

import numpy as np
from numba import njit, types

from . import _ext


@njit(nogil=True)
def borrow(a):
    """The array a itself (plain numba: its reference counts stay)."""
    return a


@njit(nogil=True)
def matrix(buf, start, rows, cols):
    """buf[start:start + rows * cols] as a (rows, cols) C-contiguous matrix (buf 1-D, C)."""
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit(nogil=True)
def vector(buf, start, size):
    """buf[start:start + size] (buf 1-D, C)."""
    return buf[start:start + size]


def _ints(*tys):
    return all(isinstance(t, types.Integer) for t in tys)


try:  # the numba internals the borrowed views are built on
    from numba.core import cgutils
    from numba.extending import intrinsic
    from numba.np.arrayobj import make_array, populate_array
except ImportError as exc:  # a numba that moved them: the plain versions
    _MISSING = exc
else:
    _MISSING = None

    def _borrow(context, builder, sig, args, shape_args):
        """The codegen shared by both views: data = &buf[start], C-contiguous strides."""
        buf_ty, retty = sig.args[0], sig.return_type
        src = make_array(buf_ty)(context, builder, value=args[0])
        ints = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:])]
        start, shape = ints[0], ints[1:1 + shape_args]
        itemsize = src.itemsize
        strides = [itemsize]
        for n in reversed(shape[1:]):
            strides.insert(0, builder.mul(strides[0], n))
        out = make_array(retty)(context, builder)
        populate_array(out, data=builder.gep(src.data, [start]), shape=shape, strides=strides,
                       itemsize=itemsize, meminfo=None)
        return out._getvalue()

    @intrinsic
    def _borrowed(typingctx, a):
        """The array a itself (same data, shape, strides) without its meminfo: views and
        slices made from it, and the kernels it is passed to, count no references."""
        if not isinstance(a, types.Array):
            return None

        def codegen(context, builder, sig, args):
            out = make_array(sig.args[0])(context, builder, value=args[0])
            out.meminfo = cgutils.get_null_value(out.meminfo.type)
            out.parent = cgutils.get_null_value(out.parent.type)
            return out._getvalue()

        return a(a), codegen

    @intrinsic
    def _matrix(typingctx, buf, start, rows, cols):
        """buf[start:start + rows * cols] as a (rows, cols) C-contiguous matrix (buf 1-D, C),
        without a meminfo."""
        if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"
                and _ints(start, rows, cols)):
            return None
        sig = types.Array(buf.dtype, 2, "C")(buf, start, rows, cols)
        return sig, lambda context, builder, sig, args: _borrow(context, builder, sig, args, 2)

    @intrinsic
    def _vector(typingctx, buf, start, size):
        """buf[start:start + size] (buf 1-D, C), without a meminfo."""
        if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"
                and _ints(start, size)):
            return None
        sig = types.Array(buf.dtype, 1, "C")(buf, start, size)
        return sig, lambda context, builder, sig, args: _borrow(context, builder, sig, args, 1)

    @njit(cache=True)
    def _probe_kernel(buf):
        """The three views on a 12-element buffer, and a write through one (the probe)."""
        b = _borrowed(buf)
        m = _matrix(b, 2, 2, 3)
        v = _vector(buf, 1, 4)
        m[1, 2] = -1.0  # lands in buf[7]
        return m.copy(), v.copy(), m.strides[0], b.shape[0]


def _probe():
    """Raise unless the borrowed views agree with NumPy's slices on a tiny kernel."""
    if _MISSING is not None:
        raise _MISSING
    buf = np.arange(12.0)
    m, v, stride, size = _probe_kernel(buf)
    want = np.arange(12.0)
    want[7] = -1.0
    if not (np.array_equal(buf, want) and np.array_equal(m, want[2:8].reshape(2, 3))
            and np.array_equal(v, want[1:5]) and stride == 24 and size == 12):
        raise AssertionError("the borrowed views differ from NumPy's slices")


#: whether the borrowed views replace the plain ones (see ``_ext``)
BORROWED = _ext.use("views", _probe)
if BORROWED:
    borrow, matrix, vector = _borrowed, _matrix, _vector
