"""GEMM for the CPU kernels, through the BLAS that NumPy itself calls.

numba's ``np.dot`` inside compiled code calls SciPy's BLAS (through
``scipy.linalg.cython_blas``).  In the PyPI wheels NumPy and SciPy each ship
their own OpenBLAS build, and they are not equally fast: on this project's
2-core AVX2 machine SciPy 1.17's OpenBLAS 0.3.30 took ~50 % longer than
NumPy 2.4's OpenBLAS 0.3.31 for the small transposed products of a backward
pass (dW = H^T dZ, one thread, called from a kernel: 100x40x100 21.0 vs
14.0 us, 256x128x10 30.7 vs 19.3 us; see benchmarks/RESULTS.md).  So the
kernels call NumPy's ``cblas_?gemm`` / ``cblas_?gemv`` directly; the step's
GEMMs are then the very calls the benchmarks' NumPy floor makes.

How: at import, the addresses of NumPy's 64-bit-integer ``cblas_sgemm``,
``cblas_dgemm``, ``cblas_sgemv`` and ``cblas_dgemv`` (found through
threadpoolctl's list of loaded BLAS libraries) are registered with LLVM under
the names ``fastmlp_sgemm`` etc., and the kernels call those names (``gemm``
below).  Compiled code refers to
the names, not to an address, so numba's on-disk cache stays valid from one
process to the next.  Where NumPy's BLAS is not such a library (MKL,
Accelerate, a 32-bit-integer OpenBLAS), or when the environment variable
``FASTMLP_KERNEL_BLAS=numba`` is set before import, the names point to small
compiled adapters that call numba's ``np.dot`` instead (SciPy's BLAS, as
before).  ``KERNEL_BLAS`` says which is in use.
"""

import ctypes
import os

import numpy as np
from llvmlite import binding as ll
from llvmlite import ir
from numba import carray, cfunc, config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enum values
_NAMES = ("sgemm", "dgemm", "sgemv", "dgemv")
_PREFIX = {types.float32: "fastmlp_s", types.float64: "fastmlp_d"}


def _numpy_cblas():
    """(path, {our name: address}) of NumPy's ILP64 OpenBLAS ?gemm and ?gemv, or None."""
    try:
        from threadpoolctl import ThreadpoolController

        libs = ThreadpoolController().select(internal_api="openblas").lib_controllers
    except Exception:  # threadpoolctl missing or unable to inspect: use the adapters
        return None
    np_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    # NumPy's own copy first (wheels: site-packages/numpy.libs, numpy/.dylibs)
    libs = sorted(libs, key=lambda lib: not os.path.abspath(lib.filepath).startswith(
        os.path.join(np_dir, "numpy")))
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64"):  # the suffixes of 64-bit-integer builds
                try:
                    return lib.filepath, {
                        f"fastmlp_{f}": ctypes.cast(getattr(handle, f"{prefix}cblas_{f}{suffix}"),
                                                    ctypes.c_void_p).value
                        for f in _NAMES}
                except AttributeError:
                    continue
    return None


def _adapters(dtype):
    """Compiled functions with cblas_?gemm's and cblas_?gemv's signatures (64-bit
    integers, row-major, as ``gemm`` calls them) that run numba's np.dot."""
    T = types.float32 if dtype == np.float32 else types.float64
    i32, i64, P = types.int32, types.int64, types.CPointer(T)

    @cfunc(types.void(i32, i32, i32, i64, i64, i64, T, P, i64, P, i64, T, P, i64), cache=True)
    def gemm_adapter(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        if (alpha == 1 and beta == 0 and ldc == N and lda == (M if ta == TRANS else K)
                and ldb == (K if tb == TRANS else N)):
            # what gemm passes: whole rows; the transposes as views, no copies (numba's
            # np.dot hands an F-ordered operand to BLAS as a transpose)
            c = carray(C, (M, N))
            if ta == TRANS and tb == TRANS:
                np.dot(carray(A, (K, M)).T, carray(B, (N, K)).T, c)
            elif ta == TRANS:
                np.dot(carray(A, (K, M)).T, carray(B, (K, N)), c)
            elif tb == TRANS:
                np.dot(carray(A, (M, K)), carray(B, (N, K)).T, c)
            else:
                np.dot(carray(A, (M, K)), carray(B, (K, N)), c)
            return
        # anything else cblas allows: through contiguous copies
        c2 = carray(C, (M, ldc))[:, :N]
        if ta == TRANS:
            a = np.ascontiguousarray(carray(A, (K, lda))[:, :M].T)
        else:
            a = np.ascontiguousarray(carray(A, (M, lda))[:, :K])
        if tb == TRANS:
            b = np.ascontiguousarray(carray(B, (N, ldb))[:, :K].T)
        else:
            b = np.ascontiguousarray(carray(B, (K, ldb))[:, :N])
        p = np.dot(a, b)
        if beta == 0:
            c2[:, :] = alpha * p
        else:
            c2[:, :] = alpha * p + beta * c2

    @cfunc(types.void(i32, i32, i64, i64, T, P, i64, P, i64, T, P, i64), cache=True)
    def gemv_adapter(order, ta, M, N, alpha, A, lda, x, incx, beta, y, incy):
        # y = op(A) x for a row-major A of M rows and N columns (a view unless its
        # leading dimension exceeds N: one-row predicts must not copy the weights)
        a = carray(A, (M, N)) if lda == N else np.ascontiguousarray(carray(A, (M, lda))[:, :N])
        if ta == TRANS:
            n_in, n_out = M, N
        else:
            n_in, n_out = N, M
        xv = np.ascontiguousarray(carray(x, ((n_in - 1) * incx + 1,))[::incx])
        p = np.dot(a.T, xv) if ta == TRANS else np.dot(a, xv)
        out = carray(y, ((n_out - 1) * incy + 1,))[::incy]
        if beta == 0:
            out[:] = alpha * p
        else:
            out[:] = alpha * p + beta * out

    return gemm_adapter, gemv_adapter


def _register():
    found = None if os.environ.get("FASTMLP_KERNEL_BLAS") == "numba" else _numpy_cblas()
    if found is not None:
        path, addresses = found
        for name, address in addresses.items():
            ll.add_symbol(name, address)
        return f"numpy-cblas:{path}"
    for dtype, t in ((np.float32, "s"), (np.float64, "d")):
        mm, mv = _adapters(dtype)
        ll.add_symbol(f"fastmlp_{t}gemm", mm.address)
        ll.add_symbol(f"fastmlp_{t}gemv", mv.address)
    return "numba-np.dot"


#: which BLAS the kernels' GEMMs call: "numpy-cblas:<library path>" or "numba-np.dot"
KERNEL_BLAS = _register()


def kernel_blas_path():
    """The file of the BLAS library the kernels call directly, or None (the adapters)."""
    return KERNEL_BLAS.split(":", 1)[1] if KERNEL_BLAS.startswith("numpy-cblas:") else None


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
    the operands' layouts: ``gemm``, which numba compiles per layout, only reads
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
def gemm(A, B, out):
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


if config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: the kernels run as Python, intrinsics cannot
    def gemm(A, B, out):  # noqa: F811
        """out = A @ B (Python: NUMBA_DISABLE_JIT is set)."""
        out[...] = A @ B
