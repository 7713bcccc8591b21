"""BLAS threads during CPU training: one thread for small steps, restored afterwards."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fastmlp import MLPClassifier
from fastmlp._config import CPU_SERIAL_GEMM_BELOW
from fastmlp.backends import cpu

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blas_threads():
    cpu._blas_controller()  # loads SciPy's BLAS too, as training does
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def test_serial_blas_limits_and_restores():
    before = _blas_threads()
    with cpu.serial_blas():
        assert _blas_threads() == [1]
        with cpu.serial_blas():  # nested: still one thread, nothing restored early
            assert _blas_threads() == [1]
        assert _blas_threads() == [1]
    assert _blas_threads() == before
    assert not any(cpu._one_thread._users.values())


def test_host_blas_serial_leaves_the_kernels_blas_alone():
    """lbfgs limits NumPy's BLAS (not the kernels'); mixed with serial_blas, all comes back."""
    libs = cpu._blas_controller().lib_controllers
    before = {lib.filepath: lib.num_threads for lib in libs}
    kernel = cpu._kernel_blas_path()
    with cpu.host_blas_serial():
        now = {lib.filepath: lib.num_threads for lib in libs}
        if kernel is not None:
            assert now[kernel] == before[kernel]
            assert all(n == 1 for path, n in now.items() if path != kernel)
        with cpu.serial_blas():
            assert _blas_threads() == [1]
        assert {lib.filepath: lib.num_threads for lib in libs} == now
    assert {lib.filepath: lib.num_threads for lib in libs} == before
    assert not any(cpu._one_thread._users.values())


def test_overlapping_limits_from_threads_restore_the_thread_counts():
    """Two threads whose limits overlap in either order restore every count."""
    libs = cpu._blas_controller().lib_controllers
    before = {lib.filepath: lib.num_threads for lib in libs}
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with cpu.host_blas_serial():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with cpu.serial_blas():
            b_in.set()
            a_out.wait(5)  # a leaves first, b is still inside

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert {lib.filepath: lib.num_threads for lib in libs} == before


def test_concurrent_small_fits_restore_the_thread_count(rng):
    X = rng.standard_normal((300, 5)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    before = _blas_threads()
    errors = []

    def work():
        try:
            for _ in range(5):
                MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, backend="cpu").fit(X, y)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _blas_threads() == before
    assert not any(cpu._one_thread._users.values())


def test_which_steps_run_serial(rng):
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    small = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, backend="cpu").fit(X, y)
    assert cpu.gemm_size(small._spec, 64) == 64 * 8 * 4 < CPU_SERIAL_GEMM_BELOW
    assert cpu.gemm_size(small._spec, 10**6) >= CPU_SERIAL_GEMM_BELOW


def _fit_split_flag(queue):
    """In a forked child: a fit must train (one-thread epoch), not abort in numba's pool."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 5))
    y = rng.integers(0, 2, 200)
    split_possible = cpu._can_split()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    queue.put((split_possible, float(clf.loss_)))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork() only")
def test_split_epochs_then_fork(rng):
    """After split epochs (numba's thread pool started) a forked child still fits."""
    import multiprocessing

    X = rng.standard_normal((200, 5))
    y = rng.integers(0, 2, 200)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    if not cpu._can_split() or cpu._split_pid is None:
        pytest.skip("one numba thread here: no split epochs")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_split_flag, args=(queue,))
    child.start()
    split_in_child, loss = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert split_in_child is False  # the child uses the one-thread epoch
    assert np.isfinite(loss) and clf.n_iter_ == 3


def test_split_epochs_in_concurrent_threads(rng, config):
    """Fits with split epochs in several Python threads at once: each equals its lone fit."""
    config(CPU_SPLIT_MIN_ROWS=16)
    X = rng.standard_normal((300, 6))
    y = rng.integers(0, 3, 300)
    params = [dict(hidden_layer_sizes=(h,), max_iter=4, random_state=h, batch_size=64)
              for h in (5, 7, 9)]
    alone = [MLPClassifier(**p).fit(X, y).coefs_[0] for p in params]
    results = [None] * len(params)

    def work(i):
        results[i] = MLPClassifier(**params[i]).fit(X, y).coefs_[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(params))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, alone):
        np.testing.assert_array_equal(got, want)
