"""The kernels' GEMM (``fastmlp.backends.cpu.blas.gemm``) against NumPy.

Every layout the kernels pass (row-major, transposed views, leading row
slices of larger buffers; a single row or column: the GEMV path) and leading
column slices, both dtypes, with fresh random operands; then the same checks,
and a whole fit, with the plain ``np.dot`` that stands in where NumPy's BLAS
cannot be called directly (``FASTMLP_KERNEL_BLAS=numba``), in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastmlp.backends.cpu import blas

SHAPES = [(5, 3, 4), (1, 7, 3), (3, 7, 1), (1, 5, 1), (3, 1, 2), (1, 1, 1), (0, 3, 2),
          (4, 0, 3), (2, 3, 0), (37, 29, 17), (1, 1, 5), (5, 1, 1)]


def _layouts(M, rng):
    """M itself, as the transpose of a C-contiguous matrix, as the leading rows of a
    larger C-contiguous buffer (a workspace view, a batch of X) and as its leading
    columns (a leading dimension beyond the row length)."""
    taller = np.vstack([M, rng.standard_normal((3, M.shape[1])).astype(M.dtype)])
    wider = np.hstack([M, rng.standard_normal((M.shape[0], 2)).astype(M.dtype)])
    return {"C": M, "T": np.ascontiguousarray(M.T).T, "rows of": taller[:M.shape[0]],
            "columns of": wider[:, :M.shape[1]]}


def _outputs(m, n, dtype):
    return {"C": np.full((m, n), np.nan, dtype),
            "rows of": np.full((m + 2, n), np.nan, dtype)[:m],
            "columns of": np.full((m, n + 3), np.nan, dtype)[:, :n]}


N_CHECKS = 2 * len(SHAPES) * 4 * 4 * 3  # dtypes x shapes x layouts of A, of B x outputs


def check_all():
    rng = np.random.default_rng(12345)
    checked = 0
    for dtype in (np.float32, np.float64):
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        for m, k, n in SHAPES:
            A = rng.standard_normal((m, k)).astype(dtype)
            B = rng.standard_normal((k, n)).astype(dtype)
            want = A.astype(np.float64) @ B.astype(np.float64)
            for la, a in _layouts(A, rng).items():
                for lb, b in _layouts(B, rng).items():
                    for lo, out in _outputs(m, n, dtype).items():
                        blas.gemm(a, b, out)
                        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol * 10,
                                                   err_msg=f"{dtype} {(m, k, n)} {la} {lb} {lo}")
                        checked += 1
    return checked


def test_gemm_matches_numpy_in_every_layout():
    assert check_all() == N_CHECKS


def test_gemm_writes_only_its_output():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((6, 4)).astype(np.float32)
    B = rng.standard_normal((4, 5)).astype(np.float32)
    buf = rng.standard_normal(40).astype(np.float32)
    before = buf.copy()
    out = buf[3:33].reshape(6, 5)
    blas.gemm(A, B, out)
    np.testing.assert_allclose(out, A @ B, rtol=1e-5)
    np.testing.assert_array_equal(buf[:3], before[:3])
    np.testing.assert_array_equal(buf[33:], before[33:])


def test_numpys_openblas_is_called_where_numpy_ships_one():
    """With NumPy's PyPI wheel (its own 64-bit-integer OpenBLAS) the kernels call it."""
    config = getattr(np.__config__, "CONFIG", None)
    if config is None:
        pytest.skip("this NumPy (< 1.26) does not describe its BLAS in np.__config__.CONFIG")
    cfg = config["Build Dependencies"]["blas"]
    ships_ilp64 = (cfg.get("name") == "scipy-openblas"
                   and "USE64BITINT" in cfg.get("openblas configuration", ""))
    if (ships_ilp64 and os.environ.get("FASTMLP_KERNEL_BLAS") != "numba"
            and os.environ.get("FASTMLP_NUMBA_EXT", "1") != "0"):
        assert blas.KERNEL_BLAS.startswith("numpy-cblas:")
        assert os.path.exists(blas.kernel_blas_path())
    else:
        assert blas.KERNEL_BLAS in ("numba-np.dot",) or blas.kernel_blas_path()


def test_one_threadpoolctl_scan_serves_the_lookup_and_the_thread_limits():
    """Start-up (issue 28): the kernels' BLAS is looked up in the same threadpoolctl
    controller that the CPU backend limits threads with (one scan of the loaded
    libraries a process), and it is one of the OpenBLAS libraries listed there."""
    from fastmlp.backends import cpu

    assert cpu._blas_controller() is blas.controller()
    openblas = {os.path.realpath(lib.filepath) for lib in blas.controller().lib_controllers
                if lib.internal_api == "openblas"}
    path = blas.kernel_blas_path()
    if path is not None:
        assert os.path.realpath(path) in openblas


@pytest.mark.skipif(blas.KERNEL_BLAS == "numba-np.dot",
                    reason="this process already multiplies through numba's np.dot (the "
                           "comparison with NumPy's BLAS runs where that path is on)")
def test_plain_np_dot_gives_the_same_results_and_fits(tmp_path):
    """FASTMLP_KERNEL_BLAS=numba: every GEMM through numba's np.dot, in a new process
    (the choice is made at import); the fit equals this process's to float64 rounding."""
    from fastmlp import MLPClassifier

    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0)
    kw = dict(hidden_layer_sizes=(9, 5), max_iter=30, random_state=0, batch_size=32)
    here = MLPClassifier(**kw).fit(X, y).loss_curve_
    code = textwrap.dedent(f"""
        import numpy as np, json, warnings
        warnings.simplefilter("ignore")
        from fastmlp.backends.cpu import blas
        assert blas.KERNEL_BLAS == "numba-np.dot", blas.KERNEL_BLAS
        import test_blas
        n = test_blas.check_all()
        from fastmlp import MLPClassifier
        rng = np.random.default_rng(3)
        X = rng.standard_normal((120, 6))
        y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0)
        print(json.dumps([n, MLPClassifier(**{kw!r}).fit(X, y).loss_curve_]))
    """)
    # its own numba cache: kernels built with another BLAS path have another cache stamp,
    # and in the suite's cache folder they would clear the kernels every other process uses
    env = dict(os.environ, FASTMLP_KERNEL_BLAS="numba", NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                           os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    n, there = json.loads(run.stdout.strip().splitlines()[-1])
    assert n == N_CHECKS
    np.testing.assert_allclose(there, here, rtol=1e-7)  # two BLAS libraries: other sum orders


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_one_row_product_equals_the_matrix_product(dtype):
    """The GEMV path (m == 1 or n == 1) gives the same numbers as the GEMM path."""
    rng = np.random.default_rng(11)
    A = rng.standard_normal((8, 50)).astype(dtype)
    B = rng.standard_normal((50, 30)).astype(dtype)
    full = np.empty((8, 30), dtype)
    blas.gemm(A, B, full)
    for i in range(8):
        row = np.empty((1, 30), dtype)
        blas.gemm(A[i:i + 1], B, row)
        tol = 1e-5 if dtype == np.float32 else 1e-12  # (sums in another order)
        np.testing.assert_allclose(row[0], full[i], rtol=tol, atol=tol)
