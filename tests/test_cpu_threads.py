"""BLAS threads during CPU training: one thread for small steps, restored afterwards."""

import os
import threading

import numpy as np
import pytest
from numba import njit
from threadpoolctl import threadpool_info

from fastmlp import MLPClassifier
from fastmlp.backends import cpu
from fastmlp.backends.cpu import sync as cpu_sync

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


def test_host_blas_serial_holds_every_blas_and_restores():
    """lbfgs holds every BLAS library at one thread; mixed with serial_blas, all comes back."""
    libs = cpu._blas_controller().lib_controllers
    before = {lib.filepath: lib.num_threads for lib in libs}
    with cpu.host_blas_serial():
        assert _blas_threads() == [1]
        with cpu.serial_blas():
            assert _blas_threads() == [1]
        assert _blas_threads() == [1]
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


def test_every_cpu_step_runs_blas_on_one_thread(rng, monkeypatch):
    """sgd / adam epochs and lbfgs's full-batch sums, large or small, run BLAS on one
    thread (its rounding would depend on its thread count); afterwards it is restored."""
    before = _blas_threads()
    seen = []
    for name in ("train_epoch", "loss_grad_sum"):
        real = getattr(cpu, name)

        def spy(*args, _real=real, _name=name):
            seen.append((_name, tuple(_blas_threads())))
            return _real(*args)

        monkeypatch.setattr(cpu, name, spy)
    X = rng.standard_normal((300, 200))
    y = rng.integers(0, 2, 300)
    for solver in ("adam", "lbfgs"):
        MLPClassifier(hidden_layer_sizes=(300,), solver=solver, max_iter=2,
                      backend="cpu").fit(X, y)
    assert {name for name, _ in seen} == {"train_epoch", "loss_grad_sum"}
    assert all(threads == (1,) for _, threads in seen), seen
    assert _blas_threads() == before


def _fit_split_flag(queue):
    """In a forked child: a fit must train (its own split epochs where possible)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 5))
    y = rng.integers(0, 2, 200)
    split_possible = cpu._can_split()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    queue.put((split_possible, float(clf.loss_), clf.n_iter_))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork() only")
def test_split_epochs_then_fork(rng):
    """After split epochs (a helper thread in the parent) a forked child still fits,
    with split epochs of its own, to the parent's result."""
    import multiprocessing

    X = rng.standard_normal((200, 5))
    y = rng.integers(0, 2, 200)
    seen = []
    original = cpu.Trainer._split_epoch

    def spy(self, order):
        seen.append(order.shape[0])
        return original(self, order)

    cpu.Trainer._split_epoch = spy
    try:
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    finally:
        cpu.Trainer._split_epoch = original
    if not seen:
        pytest.skip("one numba thread here: no split epochs")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_split_flag, args=(queue,))
    child.start()
    split_in_child, loss, n_iter = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert split_in_child is True
    r = np.random.default_rng(1)  # the child's data
    Xc = r.standard_normal((200, 5))
    want = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(
        Xc, r.integers(0, 2, 200))
    assert n_iter == 3 and loss == pytest.approx(want.loss_, rel=1e-6)


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


# --- split epochs: the barrier and the helper thread --------------------------------------

@njit(nogil=True)
def _exchange(sync, red, part, rounds):
    """Each round both threads publish a value, meet, and read the other's: the count of
    reads that saw a stale value (0 when the barrier orders them), or -1 if aborted."""
    stale = 0
    for r in range(rounds):
        red[part] = 2 * r + part
        if not cpu_sync.barrier(sync, 2):
            return -1
        if red[1 - part] != 2 * r + (1 - part):
            stale += 1
        if not cpu_sync.barrier(sync, 2):  # nobody writes the next round before both read
            return -1
    return stale


@pytest.mark.skipif(not cpu_sync.ATOMIC, reason="the atomic barrier is off (plain numba)")
def test_barrier_orders_two_threads():
    sync = np.zeros(cpu_sync.SYNC_SIZE, dtype=np.int64)
    red = np.zeros(2)
    _exchange(np.zeros(cpu_sync.SYNC_SIZE, dtype=np.int64), red, 0, 0)  # compile first
    out = [None, None]

    def run(part):
        out[part] = _exchange(sync, red, part, 3000)

    threads = [threading.Thread(target=run, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [0, 0]
    assert sync[cpu_sync.GENERATION] == 6000 and sync[cpu_sync.ARRIVALS] == 0


@pytest.mark.skipif(not cpu_sync.ATOMIC, reason="the atomic barrier is off (plain numba)")
def test_barrier_returns_false_when_aborted():
    """A thread alone at the barrier is released by the abort flag, not left spinning."""
    sync = np.zeros(cpu_sync.SYNC_SIZE, dtype=np.int64)
    result = []
    t = threading.Thread(target=lambda: result.append(cpu_sync.barrier(sync, 2)))
    t.start()
    t.join(timeout=0.2)
    assert t.is_alive()  # waiting for its partner
    sync[cpu_sync.ABORT] = 1
    t.join(timeout=30)
    assert result == [False]


def test_split_epoch_error_in_the_helper_is_raised_and_fit_unchanged(rng, monkeypatch):
    """Thread 1 (a helper thread) fails: thread 0 is released from its barrier, the fit
    raises that error, the estimator keeps its earlier state, and later fits work."""
    X = rng.standard_normal((200, 5))
    y = rng.integers(0, 3, 200)
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0).fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    real = cpu.train_epoch
    parts_seen = []

    def failing(*args):
        part = args[-5]  # (..., part, threads, parts, sync, red)
        parts_seen.append(part)
        if part == 1:
            raise RuntimeError("part 1 failed")
        return real(*args)

    monkeypatch.setattr(cpu, "train_epoch", failing)
    if not cpu._can_split():
        pytest.skip("one numba thread here: no split epochs")
    with pytest.raises(RuntimeError, match="part 1 failed"):
        clf.set_params(warm_start=True).fit(X, y)
    assert 1 in parts_seen and 0 in parts_seen
    for got, want in zip(clf.coefs_, before):
        np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(cpu, "train_epoch", real)
    again = clf.fit(X, y)
    assert np.isfinite(again.loss_) and not np.array_equal(again.coefs_[0], before[0])


def test_split_epoch_helper_threads_end_with_their_fits(rng, monkeypatch):
    """Each fit's helper thread stops once the fit is over (no thread per past fit)."""
    import gc

    if not cpu._can_split():
        pytest.skip("one numba thread here: no split epochs")
    started = []
    real = cpu._Helper

    class Counted(real):
        def __init__(self):
            super().__init__()
            started.append(self.thread)

    monkeypatch.setattr(cpu, "_Helper", Counted)
    X = rng.standard_normal((300, 6))
    y = rng.integers(0, 3, 300)
    for seed in range(3):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=seed).fit(X, y)
    assert len(started) == 3  # one helper per fit, reused across its epochs
    gc.collect()
    for t in started:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in started)


def test_a_fit_does_not_start_numbas_thread_pool():
    """Split epochs use threads of their own: a fit leaves numba's (OpenMP) pool unstarted,
    so a process forked afterwards can still use numba's parallel kernels."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np
        from numba.np.ufunc import parallel
        from fastmlp import MLPClassifier
        from fastmlp.backends import cpu
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 6))
        y = rng.integers(0, 3, 300)
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
        print(cpu._can_split(), parallel._is_initialized)
    """)
    # (BLAS's own default thread count: a limit set in this process's environment, as a
    # dask or joblib test may leave there, would cap the fit's threads)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    can_split, started = out.stdout.split()
    assert started == "False"
    import numba

    assert can_split == str(numba.config.NUMBA_NUM_THREADS >= 2 and cpu_sync.SPLIT
                            and (os.cpu_count() or 1) >= 2)
