"""GEMM for the CPU kernels: ``gemm(A, B, out)``, through the BLAS that NumPy itself calls.

Plain numba: ``gemm`` is ``np.dot(A, B, out)``, which numba compiles to a
call of SciPy's BLAS (``scipy.linalg.cython_blas``).  In the PyPI wheels NumPy
and SciPy each ship their own OpenBLAS build, and they are not equally fast:
on this project's 2-core AVX2 machine SciPy 1.17's OpenBLAS 0.3.30 took ~50 %
longer than NumPy 2.4's OpenBLAS 0.3.31 for the small transposed products of
a backward pass (dW = H^T dZ, one thread, called from a kernel: 100x40x100
21.0 vs 14.0 us, 256x128x10 30.7 vs 19.3 us; see benchmarks/RESULTS.md).

The extension (contained, see ``_ext``): at import, the addresses of NumPy's
64-bit-integer ``cblas_sgemm``, ``cblas_dgemm``, ``cblas_sgemv`` and
``cblas_dgemv`` (found among the loaded OpenBLAS libraries, as threadpoolctl
lists them: ``controller``)
are registered with LLVM under the names ``fastmlp_sgemm`` etc., and ``gemm``
calls those names (an ``@intrinsic`` emitting the call).  Compiled code
refers to the names, not to an address, so numba's on-disk cache stays valid
from one process to the next.  The extension is used when
``FASTMLP_NUMBA_EXT`` is not 0, ``FASTMLP_KERNEL_BLAS`` is not ``numba``,
NumPy's BLAS is such a library (not MKL, Accelerate or a 32-bit-integer
OpenBLAS) and the import-time probe passes: a tiny kernel's products in the
layouts the kernels use, GEMM and GEMV, float32 and float64, equal NumPy's.
Otherwise ``gemm`` is the plain ``np.dot``.  ``KERNEL_BLAS`` says which.
"""

import ctypes
import os

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import _ext

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enum values
_NAMES = ("sgemm", "dgemm", "sgemv", "dgemv")
_PREFIX = {types.float32: "fastmlp_s", types.float64: "fastmlp_d"}


def _dot_into(A, B, out):
    """out[...] = A @ B (compiled by the overload below)."""
    out[...] = A @ B


@overload(_dot_into)
def _dot_into_overload(A, B, out):
    if isinstance(out, types.Array) and out.layout == "C":
        def impl(A, B, out):
            np.dot(A, B, out)
    else:  # numba's np.dot writes only into contiguous arrays
        def impl(A, B, out):
            out[:, :] = np.dot(A, B)
    return impl


@njit(nogil=True, cache=True)
def gemm(A, B, out):
    """out = A @ B (plain numba: ``np.dot``, SciPy's BLAS).

    A (m, k), B (k, n), out (m, n): the layouts of ``_cblas_product``; an out
    whose rows are not back to back is written through a temporary.
    """
    _dot_into(A, B, out)


_controller = None


def controller():
    """A threadpoolctl controller over the process's BLAS libraries (built once: a
    scan of the loaded libraries, ~15 ms).  Here the kernels' BLAS is looked up in it;
    ``fastmlp.backends.cpu`` reads and limits the thread counts through it.  SciPy's
    BLAS, which numba's ``np.dot`` calls, is loaded first so that it is listed too."""
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def _numpy_cblas():
    """(path, {our name: address}) of NumPy's ILP64 OpenBLAS ?gemm and ?gemv, or None."""
    try:
        paths = [lib.filepath for lib in controller().lib_controllers
                 if lib.internal_api == "openblas"]
    except Exception:  # threadpoolctl unable to inspect: plain np.dot
        return None
    np_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    # NumPy's own copy first (wheels: site-packages/numpy.libs, numpy/.dylibs)
    paths = sorted(paths, key=lambda path: not os.path.abspath(path).startswith(
        os.path.join(np_dir, "numpy")))
    for path in paths:
        try:
            handle = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64"):  # the suffixes of 64-bit-integer builds
                try:
                    return path, {
                        f"fastmlp_{f}": ctypes.cast(getattr(handle, f"{prefix}cblas_{f}{suffix}"),
                                                    ctypes.c_void_p).value
                        for f in _NAMES}
                except AttributeError:
                    continue
    return None


try:  # the numba and llvmlite names the extension is written with
    from llvmlite import binding as ll
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError as exc:  # pragma: no cover - a numba / llvmlite that moved them
    _MISSING = exc
else:
    _MISSING = None

    def _call_blas(fname, arg_kinds, context, builder, signature, args):
        """Emit a call of the registered ``fastmlp_<s|d><fname>``: a leading row-major
        order, then the arguments by kind ("flag" int32, "int" int64, "one"/"zero" the
        scalars alpha = 1 / beta = 0, "ptr" a data address given as an integer).  The
        first argument is a scalar of the operands' dtype (it picks s or d; not passed)."""
        dtype = signature.args[0]
        fty = context.get_value_type(dtype)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        lltypes = {"flag": i32, "int": i64, "one": fty, "zero": fty, "ptr": fty.as_pointer()}
        fnty = ir.FunctionType(ir.VoidType(), [i32] + [lltypes[k] for k in arg_kinds])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFIX[dtype] + fname)
        given = iter(zip(signature.args[1:], args[1:]))
        values = [ir.Constant(i32, ROW_MAJOR)]
        for kind in arg_kinds:
            if kind in ("one", "zero"):
                values.append(ir.Constant(fty, 1.0 if kind == "one" else 0.0))
                continue
            ty, val = next(given)
            v = context.cast(builder, val, ty, types.int64)
            if kind == "ptr":
                values.append(builder.inttoptr(v, fty.as_pointer()))
            else:
                values.append(builder.trunc(v, i32) if kind == "flag" else v)
        builder.call(fn, values)
        return context.get_dummy_value()

    def _float_and_ints(dt, *ints):
        return dt in _PREFIX and all(isinstance(i, types.Integer) for i in ints)

    @intrinsic
    def _cblas_gemm(typingctx, dt, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
        """c = op(a) @ op(b) through ``fastmlp_?gemm`` (row-major, alpha 1, beta 0); a, b, c
        are data addresses, dt a scalar of their dtype."""
        if not _float_and_ints(dt, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
            return None
        kinds = ("flag", "flag", "int", "int", "int", "one", "ptr", "int", "ptr", "int", "zero",
                 "ptr", "int")
        return (types.void(dt, ta, tb, m, n, k, a, lda, b, ldb, c, ldc),
                lambda context, builder, sig, args: _call_blas("gemm", kinds, context, builder,
                                                               sig, args))

    @intrinsic
    def _cblas_gemv(typingctx, dt, ta, m, n, a, lda, x, incx, y, incy):
        """y = op(a) @ x through ``fastmlp_?gemv`` (a row-major, m x n; alpha 1, beta 0);
        a, x, y are data addresses, dt a scalar of their dtype."""
        if not _float_and_ints(dt, ta, m, n, a, lda, x, incx, y, incy):
            return None
        kinds = ("flag", "int", "int", "one", "ptr", "int", "ptr", "int", "zero", "ptr", "int")
        return (types.void(dt, ta, m, n, a, lda, x, incx, y, incy),
                lambda context, builder, sig, args: _call_blas("gemv", kinds, context, builder,
                                                               sig, args))

    @njit(nogil=True, cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
    def _product(dt, s, m, n, k, a, a0, a1, b, b0, b1, c, c0, c1):
        """c = a @ b by BLAS, from data addresses and byte strides (s: the itemsize; a is
        m x k, b is k x n, c is m x n, k > 0): GEMM, or GEMV for a single row (m == 1) or
        column (n == 1).  One compiled function per dtype (dt: a scalar of it), whatever
        the operands' layouts: ``_cblas_product``, which numba inlines per layout, only reads
        the shapes and strides.
        """
        if m == 0 or n == 0:
            return
        # an operand is row-major when its rows are contiguous, else the transpose of one
        ta = NO_TRANS if a1 == s or k == 1 else TRANS
        lda = max(a0 // s, k) if ta == NO_TRANS else max(a1 // s, m)
        tb = NO_TRANS if b1 == s or n == 1 else TRANS
        ldb = max(b0 // s, n) if tb == NO_TRANS else max(b1 // s, k)
        if m == 1:  # c[0] = op(B)^T a[0]: op(B) is k x n, stored as itself or transposed
            rows, cols = (k, n) if tb == NO_TRANS else (n, k)
            _cblas_gemv(dt, TRANS if tb == NO_TRANS else NO_TRANS, rows, cols, b, ldb, a,
                        a1 // s if k > 1 else 1, c, c1 // s)
        elif n == 1:  # c[:, 0] = op(A) b[:, 0]
            rows, cols = (m, k) if ta == NO_TRANS else (k, m)
            _cblas_gemv(dt, ta, rows, cols, a, lda, b, b0 // s if k > 1 else 1, c, c0 // s)
        else:
            _cblas_gemm(dt, ta, tb, m, n, k, a, lda, b, ldb, c, max(c0 // s, n))

    @njit(nogil=True, cache=True, inline="always")
    def _cblas_product(A, B, out):
        """out = A @ B through NumPy's BLAS (see the module docstring).

        A (m, k) and B (k, n) each row-major (rows contiguous, e.g. C-contiguous
        or a leading slice of the rows or columns of a C-contiguous array) or the
        transpose of a C-contiguous matrix (``H.T``, ``W.T``); out (m, n)
        row-major.  Nothing else is checked: these are the kernels' operands.
        Inlined where it is called, once per combination of layouts, so it only
        reads shapes and strides: the rest is ``_product``, compiled once per
        dtype (a first fit compiled 0.15 s less than with that logic here).
        A single row or column goes through GEMV: OpenBLAS's GEMM took ~4x
        longer for a 1 x 784 x 256 product.
        """
        m, k = A.shape
        n = B.shape[1]
        if k == 0:
            for i in range(m):
                for j in range(n):
                    out[i, j] = 0
            return
        _product(out.dtype.type(0), out.itemsize, m, n, k, A.ctypes.data, A.strides[0],
                 A.strides[1], B.ctypes.data, B.strides[0], B.strides[1], out.ctypes.data,
                 out.strides[0], out.strides[1])

    @njit(cache=True)
    def _probe_kernel(A, B, C, v):
        """The products the kernels make, through NumPy's BLAS (the probe): A @ B,
        A.T @ C, A @ A.T, one row v @ B (GEMV) and one column A @ B[:, :1] (GEMV)."""
        m, k = A.shape
        n = B.shape[1]
        nn = np.empty((m, n), A.dtype)
        _cblas_product(A, B, nn)
        tn = np.empty((k, n), A.dtype)
        _cblas_product(A.T, C, tn)
        nt = np.empty((m, m), A.dtype)
        _cblas_product(A, A.T, nt)
        row = np.empty((1, n), A.dtype)
        _cblas_product(v, B, row)
        col = np.empty((m, 1), A.dtype)
        _cblas_product(A, B[:, :1].copy(), col)
        return nn, tn, nt, row, col


def _register():
    """Register NumPy's cblas symbols with LLVM under our names (the kernels call those)."""
    path, addresses = _FOUND
    for name, address in addresses.items():
        ll.add_symbol(name, address)


def _probe():
    """Register NumPy's cblas symbols and check the products on a tiny kernel."""
    if _MISSING is not None:
        raise _MISSING
    _register()
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        A, B, C = (rng.standard_normal(s).astype(dtype) for s in ((5, 3), (3, 4), (5, 4)))
        v = A[:1].copy()
        got = _probe_kernel(A, B, C, v)
        want = (A @ B, A.T @ C, A @ A.T, v @ B, A @ B[:, :1])
        for g, w in zip(got, want):
            if not np.allclose(g, w, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"NumPy's cblas from a kernel differs from NumPy ({dtype})")


if os.environ.get("FASTMLP_KERNEL_BLAS") == "numba":
    _FOUND, _WHY_NOT = None, "FASTMLP_KERNEL_BLAS=numba"
else:
    _FOUND = _numpy_cblas()
    _WHY_NOT = None if _FOUND else "NumPy's BLAS is not an OpenBLAS with 64-bit integers"

# the probe's outcome depends on the library too (a remembered pass is for this one)
if _ext.use("blas", _probe, _WHY_NOT, key=_FOUND[0] if _FOUND else ""):
    _register()  # again: a remembered pass does not run the probe
    gemm = _cblas_product  # noqa: F811
    #: which BLAS the kernels' GEMMs call: "numpy-cblas:<library path>" or "numba-np.dot"
    KERNEL_BLAS = f"numpy-cblas:{_FOUND[0]}"
else:
    KERNEL_BLAS = "numba-np.dot"


def kernel_blas_path():
    """The file of the BLAS library the kernels call directly, or None (``np.dot``)."""
    return KERNEL_BLAS.split(":", 1)[1] if KERNEL_BLAS.startswith("numpy-cblas:") else None
