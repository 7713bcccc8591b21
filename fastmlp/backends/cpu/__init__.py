"""The CPU backend: ``@njit`` kernels, GEMMs through BLAS.

Kernels by subject: ``activations``, ``losses``, ``dense``, ``optimizers``,
``train``.  ``fastmlp/backends/cuda/`` has a file of the same name for each
subject, and both packages give the estimators the same interface (``Trainer``,
``FullBatch``, ``predict``); the kernels inside differ (the GPU's are phases of
one epoch kernel), while their per-element and per-row math is the one of
``fastmlp/backends/scalar.py``.  CPU only: ``blas`` (the GEMMs' BLAS calls) and
``sync`` (the barrier of split epochs, whose parts ``Trainer`` and ``FullBatch`` run in
several threads).
"""

import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._cache import refresh_numba_cache
from . import _ext, sync, views  # noqa: F401  (the extensions probe themselves on import)
from . import blas  # noqa: F401  (before the cache is refreshed: its probe decides a state)

# before any kernel is loaded: drop cached machine code built from other sources,
# or with other numba extensions on or off (see _ext)
refresh_numba_cache(Path(__file__).parent, _ext.state())

from ... import _config  # read at call time: an override is seen by the next call
from ..._registry import SGD
from ..layout import csr_arrays
from .sync import ABORT, SYNC_SIZE, publish, wait_change
from .train import loss_grad_batch, loss_grad_sum, predict_csr, predict_forward, train_epoch

name = "cpu"

# Trainer, FullBatch and predict take a CSR matrix as X (its first layer multiplies the
# sparse rows: ``dense.csr_matmul``); a backend without this attribute is given dense rows
TAKES_CSR = True


def is_available():
    return True


# the BLAS libraries' threadpoolctl controller, shared with the kernels' BLAS lookup
_blas_controller = blas.controller


class _OneThread:
    """Reference-counted one-thread limits per BLAS library, safe across Python threads.

    Each library's thread count is saved when its first user arrives and put
    back when its last user leaves, however the users (fits in several
    threads, of either kind below) overlap; plain nested threadpoolctl limits
    could restore in the wrong order and leave BLAS on one thread for good.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = {}      # library path -> users holding it at one thread
        self._original = {}   # library path -> its thread count before the first user

    @contextmanager
    def hold(self, libs):
        with self._lock:
            for lib in libs:
                if self._users.get(lib.filepath, 0) == 0:
                    self._original[lib.filepath] = lib.num_threads
                    lib.set_num_threads(1)
                self._users[lib.filepath] = self._users.get(lib.filepath, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for lib in libs:
                    self._users[lib.filepath] -= 1
                    if self._users[lib.filepath] == 0:
                        lib.set_num_threads(self._original.pop(lib.filepath))


    def given(self, libs):
        """Each library's thread count as its users left it: the count saved where a
        hold has it at one thread, else its current one."""
        with self._lock:
            return [self._original.get(lib.filepath, lib.num_threads) for lib in libs]


_one_thread = _OneThread()


def serial_blas():
    """Every BLAS library on one thread while the block runs (small training steps).

    The limit is process-wide (threadpoolctl changes the BLAS libraries'
    own thread count): while any CPU fit is inside a small-step epoch, every
    BLAS call of the process, from any thread, runs on one thread.
    """
    return _one_thread.hold(_blas_controller().lib_controllers)


def host_blas_serial():
    """Every BLAS library on one thread while an lbfgs fit runs (``_solvers``): its
    full-batch sums run BLAS on one thread (``FullBatch``), and SciPy's L-BFGS-B
    between them calls BLAS too (dot products over the parameters), whose rounding
    would otherwise depend on BLAS's thread count; one-thread BLAS also keeps two
    thread pools from spinning on the same cores."""
    return serial_blas()


def _workspaces(spec, cap, parts=1):
    """Float and int32 workspaces of ``cap`` rows, ``parts`` of them back to back.
    The int32 one (maxout's argmax) is None for the other activations."""
    ws = np.empty(parts * max(spec.ws_cols, 1) * cap, dtype=spec.dtype)
    iws = np.empty(parts * spec.iws_cols * cap, dtype=np.int32) if spec.iws_cols else None
    return ws, iws


def _dense_or_csr(X):
    """(X, None) for a dense X; (None, ``csr_arrays(X)``) for a CSR matrix."""
    if sp.issparse(X):
        return None, csr_arrays(X)
    return X, None


def _given(a):
    """``a``, or None where it has no rows (labels, float targets or sample weights a
    fit does not have): the kernels are then compiled without the code that reads it
    (see ``train``'s module docstring)."""
    return a if a.shape[0] else None


def _optimizer_arrays(opt):
    """(velocity, moment1, moment2) for ``train_epoch``: SGD's velocity or Adam's moments, the
    other solver's None."""
    if opt.solver == SGD:
        return opt.state1, None, None
    return None, opt.state1, opt.state2


def _numba_threads():
    """numba's thread count, the user's knob for fastmlp's compiled parallelism
    (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``, per calling thread).

    Read without starting numba's thread pool, which training does not use: while
    the pool has not started, nobody has called ``set_num_threads`` (it starts the
    pool), so the count is ``NUMBA_NUM_THREADS``.  (A started GNU OpenMP pool makes
    a forked child abort in numba's parallel kernels; a fit should not start one.)
    """
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def _blas_threads():
    """The thread count the BLAS libraries were given by whoever set it (their default:
    the cores; ``OPENBLAS_NUM_THREADS`` and the like; a joblib worker's share of the
    cores; ``threadpoolctl.threadpool_limits``), the smallest of them; None without a
    BLAS.  Where a fit in this process holds BLAS at one thread (``serial_blas``), the
    count it saved."""
    counts = _one_thread.given(_blas_controller().lib_controllers)
    return min(counts) if counts else None


def cpu_threads():
    """How many threads a CPU epoch may run in: numba's thread count, capped by the
    BLAS thread limit in force (``_blas_threads``: the epoch's threads replace BLAS's,
    so a joblib worker or a ``threadpool_limits`` block that gives BLAS one thread
    gets one-thread epochs), and 1 without the atomic barrier (``sync.SPLIT``)."""
    if not sync.SPLIT:  # no atomic barrier (see sync): one thread
        return 1
    if int(_config.CPU_THREADS) > 0:  # set by hand (tests, benchmarks)
        return int(_config.CPU_THREADS)
    n = _numba_threads()
    blas = _blas_threads()
    if blas is not None:
        n = min(n, blas)
    return max(1, int(n))


def _can_split():
    """Whether split epochs (compiled code in several threads) may run (``cpu_threads``
    is at least 2)."""
    return cpu_threads() >= 2


def _parts_within_memory(spec, parts):
    """``parts`` halved until the parts' gradients beyond the first fit in
    ``CPU_SPLIT_MAX_BYTES`` (at least 1)."""
    size = spec.n_params * spec.dtype.itemsize
    while parts > 1 and (parts - 1) * size > _config.CPU_SPLIT_MAX_BYTES:
        parts //= 2
    return parts


def epoch_parts(spec, cap):
    """How many parts ``train_epoch`` cuts each batch of ``cap`` rows into: a fixed
    function of the batch size, the network's size and the settings, never of the
    thread count, so that the model is the same on any number of threads.

    Two for a batch of at least ``CPU_SPLIT_MIN_ROWS`` rows; more, doubling up to
    ``CPU_SPLIT_MAX_PARTS``, while each part keeps ``CPU_SPLIT_PART_ROWS`` rows; fewer
    where the parts' gradients would pass ``CPU_SPLIT_MAX_BYTES`` (see ``_config``
    for the measurements behind the defaults).  1: no split.
    """
    if not 0 < int(_config.CPU_SPLIT_MIN_ROWS) <= cap:
        return 1
    return _parts_within_memory(spec, _doublings(2, cap))


def _doublings(parts, rows):
    """parts, doubled up to CPU_SPLIT_MAX_PARTS while each of ``rows`` rows' parts
    keeps CPU_SPLIT_PART_ROWS rows."""
    most = int(_config.CPU_SPLIT_MAX_PARTS)
    each = max(1, int(_config.CPU_SPLIT_PART_ROWS))
    parts = min(parts, max(1, most))
    while parts * 2 <= most and parts * 2 * each <= rows:
        parts *= 2
    return parts


def split_parts(spec, n):
    """How many parts the full-batch sums (``loss_grad_sum``) cut n rows into: a fixed
    function of n, the network's size and the settings (as ``epoch_parts``), doubling
    while each part keeps ``CPU_SPLIT_PART_ROWS`` rows."""
    if int(_config.CPU_SPLIT_MIN_ROWS) <= 0:
        return 1
    return _parts_within_memory(spec, _doublings(1, n))


def epoch_threads(parts, threads=None):
    """The threads that run a split epoch (or full-batch sums) of ``parts`` parts: the
    largest power of two dividing ``parts`` not above ``threads`` (default
    ``cpu_threads()``), so that every thread does as many parts; with
    ``CPU_THREADS`` set by hand, that many (at most ``parts``)."""
    if threads is None and int(_config.CPU_THREADS) > 0 and sync.SPLIT:
        return max(1, min(parts, int(_config.CPU_THREADS)))
    n = cpu_threads() if threads is None else threads
    t = 1
    while t * 2 <= min(n, parts) and parts % (t * 2) == 0:
        t *= 2
    return t


_GO, _DONE = 0, 1
_HELPER_SPINS = 50_000  # ~0.7 ms of spinning (measured here) before the helper sleeps on an Event


class _Helper:
    """The second thread of a trainer's split epochs.

    Between epochs it spins (compiled, without the GIL) for a short while on
    a counter, then sleeps on an Event: starting a thread per epoch cost
    ~150 us here, as much as a whole epoch of a small network.  It holds no
    reference to the trainer; the trainer's finalizer stops it.
    """

    def __init__(self):
        self.ctl = np.zeros(2, dtype=np.int64)  # [_GO: epochs started, _DONE: epochs finished]
        self.wake = threading.Event()
        self.job = None
        self.error = None
        self.thread = threading.Thread(target=self._loop, name="fastmlp-split-epoch",
                                       daemon=True)
        self.thread.start()

    def _loop(self):
        seen = 0
        while True:
            if not wait_change(self.ctl, _GO, seen, _HELPER_SPINS):
                self.wake.wait()
                self.wake.clear()
                continue
            seen = int(self.ctl[_GO])
            job = self.job
            if job is None:
                return  # stopped
            try:
                job()
            except BaseException as exc:  # raised again by the trainer, in its thread
                self.error = exc
            finally:
                publish(self.ctl, _DONE, seen)

    def start(self, job):
        """Run ``job`` (part 1 of an epoch) in the helper thread; None ends the thread."""
        self.job = job
        self.error = None
        publish(self.ctl, _GO, self.ctl[_GO] + 1)
        self.wake.set()

    def wait(self):
        """Until the started job has returned."""
        target = self.ctl[_GO]
        while self.ctl[_DONE] != target:
            wait_change(self.ctl, _DONE, self.ctl[_DONE], _HELPER_SPINS)

    def stop(self):
        """End the thread (after the job it is running, if any)."""
        self.start(None)


class _Team:
    """Helper threads (``_Helper``) that run a compiled kernel beside the calling thread:
    ``run(kernel, args_of, threads, sync)`` calls ``kernel(*args_of(i))`` in threads
    i = 1 .. threads - 1 and ``kernel(*args_of(0))`` here, and returns thread 0's
    result.  If one raises, the others are released from their barrier
    (``sync[ABORT]``) and the error is raised here.  The helpers are started on
    first use and kept (their owner's finalizer stops them)."""

    def __init__(self, owner):
        self._helpers = []
        self._owner = weakref.ref(owner)

    def run(self, kernel, args_of, threads, sync):
        while len(self._helpers) < threads - 1:
            helper = _Helper()
            weakref.finalize(self._owner(), helper.stop)
            self._helpers.append(helper)
        sync[:] = 0

        def job(args):
            def run():
                try:
                    kernel(*args)
                except BaseException:
                    sync[ABORT] = 1  # releases the other threads from their barrier
                    raise
            return run

        started = []
        try:
            for i, helper in enumerate(self._helpers[:threads - 1], start=1):
                helper.start(job(args_of(i)))
                started.append(helper)
            result = kernel(*args_of(0))
        except BaseException:
            sync[ABORT] = 1
            raise
        finally:
            for helper in started:
                helper.wait()
        for helper in started:
            if helper.error is not None:
                raise helper.error
        return result


class Trainer:
    """Holds one fit's data, parameters, optimizer state and workspaces.

    Built once per fit (once per partial_fit call); ``epoch`` runs one compiled
    epoch.  ``theta`` and the optimizer state are updated in place.

    X: (n, d) C-contiguous, spec.dtype, or a CSR matrix of spec.dtype (the
    batches' rows are then not gathered).  Y: (n, k) float targets or (0, k);
    y: (n,) int64 labels or (0,); sw: (n,) weights or (0,).
    opt: ``fastmlp.backends.layout.OptimizerState``, updated in place.
    dropout: None, or a ``fastmlp.backends.layout.Dropout`` (masks drawn in the
    kernels); rows: None, or (n,) int64 the index in the training data of each
    row of X (a chunk of a larger data set), which keys the dropout masks.
    """

    def __init__(self, spec, X, Y, y, sw, batch_size, theta, opt, alpha, dropout=None,
                 rows=None):
        self.spec = spec
        # what the fit does not have is None from here on (see _given)
        (self.X, self.S), self.Y, self.y, self.sw = _dense_or_csr(X), _given(Y), _given(y), \
            _given(sw)
        self.cap = int(batch_size)
        self.theta = theta
        self.opt = opt
        self.alpha = float(alpha)
        # each batch cut into parts by its size alone (see train.train_epoch and
        # epoch_parts), run in as many threads as may run (epoch_threads): the model is
        # the same whether the parts run in one thread or several
        self.parts = parts = epoch_parts(spec, self.cap)
        self.threads = epoch_threads(parts)
        self.grad = np.zeros(parts * theta.shape[0], dtype=theta.dtype)
        # a part's workspace: its rows only (ceil(cap / parts), see train_epoch)
        self.ws, self.iws = _workspaces(spec, -(-self.cap // parts), parts)
        self.sync = np.zeros(SYNC_SIZE, dtype=np.int64)  # the split's barrier (see sync)
        self.red = np.zeros(2 * parts)                   # its parts' loss and sum(w^2)
        self._team = _Team(self)                         # threads 1 .. threads - 1
        d = X.shape[1]
        self.Xb = None if self.S is not None else np.empty((self.cap, d), dtype=spec.dtype)
        self.Yb = None if self.Y is None else np.empty((self.cap, Y.shape[1]), dtype=spec.dtype)
        self.yb = None if self.y is None else np.empty(self.cap, dtype=np.int64)
        self.swb = None if self.sw is None else np.empty(self.cap, dtype=spec.dtype)
        self.dropout = dropout
        self.rows = rows
        self._drop_arrays = dropout.arrays(spec) if dropout is not None else None
        self._drop = None  # the epoch's dropout arguments of train_epoch (see epoch)
        # BLAS runs on one thread in every epoch: a multi-threaded GEMM rounds float32
        # differently (OpenBLAS, measured: 784 -> (256, 128), batch 256), and BLAS's thread
        # count differs between a joblib worker and the main process; the epoch's own
        # threads (the parts) are its parallelism

    @property
    def split(self):
        """Whether each batch's parts run in several threads (see ``train_epoch``)."""
        return self.threads > 1

    def epoch(self, order, index=0):
        """One epoch over the rows in ``order``; returns the summed batch losses x rows.
        index: the epoch's number in the fit (keys the dropout masks)."""
        if self.dropout is not None:
            gid = order if self.rows is None else np.ascontiguousarray(self.rows[order],
                                                                       dtype=np.int64)
            self._drop = (gid, *self._drop_arrays, self.dropout.key(index))
        with serial_blas():
            if self.split:
                return self._split_epoch(order)
            return train_epoch(*self._epoch_args(order, 0, 1))  # every part in this thread

    def _split_epoch(self, order):
        """The epoch as ``threads`` threads of ``train_epoch`` meeting at barriers:
        threads 1, 2, ... in the trainer's helper threads, thread 0 here."""
        threads = self.threads
        return self._team.run(train_epoch, lambda i: self._epoch_args(order, i, threads),
                              threads, self.sync)

    def _epoch_args(self, order, part, threads):
        s = self.spec
        o = self.opt
        return (
            self.X, self.S, self.Y, self.y, self.sw, order, self.theta, self.grad, s.layers, s.code,
            s.param, s.pieces, s.out_code, self.alpha, *_optimizer_arrays(o), o.hyper,
            self.ws, self.iws, self.cap, self.Xb, self.Yb, self.yb, self.swb, self._drop, part,
            threads, self.parts, self.sync, self.red,
        )

    def snapshot(self):
        """A host copy of the current parameters (for early stopping)."""
        return self.theta.copy()

    def finish(self):
        """Return the trained flat parameter vector (a NumPy array)."""
        return self.theta


class FullBatch:
    """Unnormalised full-batch sums for L-BFGS: one compiled call per evaluation.

    ``fb(theta, grad)`` writes ``grad = sum_i w_i dl_i/dtheta`` and returns
    ``sum_i w_i l_i`` (w_i = 1 without weights; l_i the per-row loss, summed
    over outputs).  No L2 term and no division by the weight sum: the caller
    adds those, so that sums over blocks held in different places add up.
    The rows are walked in chunks of ``_config.FULL_BATCH_CHUNK_ROWS``, so the
    workspace does not grow with n_samples.

    X: (n, d) C-contiguous, spec.dtype, or a CSR matrix of spec.dtype.
    Y: (n, k) float targets or (0, k); y: (n,) int64 labels or (0,);
    sw: (n,) weights or (0,).  dropout: None, or a ``layout.Dropout`` whose
    masks for ``rows`` (n,) (each row's index in the training data) and epoch
    number ``epoch`` apply, as the training epoch draws them (the dask
    estimators' step-synchronous minibatch shares).
    """

    def __init__(self, spec, X, Y, y, sw, dropout=None, rows=None, epoch=0):
        self.spec = spec
        self.drop = None
        if dropout is not None:
            thr, fl = dropout.arrays(spec)
            self.drop = (np.ascontiguousarray(rows, dtype=np.int64), thr, fl,
                         dropout.key(epoch))
        # what the fit does not have is None from here on (see _given)
        (self.X, self.S), self.Y, self.y, self.sw = _dense_or_csr(X), _given(Y), _given(y), \
            _given(sw)
        n = X.shape[0]
        # the rows cut into parts by n alone, run in as many threads as may run (see
        # train.loss_grad_sum): the sums do not depend on the thread count
        self.parts = parts = split_parts(spec, n)
        self.threads = epoch_threads(parts)
        self.cap = max(1, min(-(-n // parts), int(_config.FULL_BATCH_CHUNK_ROWS)))
        self.ws, self.iws = _workspaces(spec, self.cap, self.threads)
        chunked = -(-n // parts) > self.cap  # a part of several chunks: a chunk buffer
        self.gbuf = np.empty(self.threads * spec.n_params * chunked, dtype=spec.dtype)
        self.grad = np.empty(parts * spec.n_params if parts > 1 else 0, dtype=spec.dtype)
        self.sync = np.zeros(SYNC_SIZE, dtype=np.int64)
        self.red = np.zeros(parts)
        self._team = _Team(self)

    def __call__(self, theta, grad):
        # BLAS on one thread always: a multi-threaded GEMM's rounding depends on BLAS's
        # thread count; the parts are the parallelism
        with serial_blas():
            return self._call(theta, grad)

    def _call(self, theta, grad):
        s = self.spec
        g = self.grad if self.parts > 1 else grad
        threads = self.threads

        def args_of(i):
            return (self.X, self.S, self.Y, self.y, self.sw, theta, g, self.gbuf, s.layers,
                    s.code, s.param, s.pieces, s.out_code, self.ws, self.iws, self.cap,
                    self.drop, i, threads, self.parts, self.sync, self.red)

        if threads > 1:
            total = self._team.run(loss_grad_sum, args_of, threads, self.sync)
        else:
            total = loss_grad_sum(*args_of(0))
        if self.parts > 1:
            grad[:] = g[:grad.shape[0]]
        return float(total)


def predict(spec, theta, X, apply_out):
    """Logits (apply_out False) or predictions for X (n, d), dense or a CSR matrix, in
    bounded memory."""
    n = X.shape[0]
    cap = max(1, min(n, int(_config.PREDICT_CHUNK_ROWS)))
    ws, iws = _workspaces(spec, cap)
    out = np.empty((n, spec.n_outputs), dtype=spec.dtype)
    args = (theta, spec.layers, spec.code, spec.param, spec.pieces, spec.out_code, apply_out,
            ws, iws, cap, out)
    if not sp.issparse(X):
        predict_forward(X, *args, False)
        return out
    data, indices, indptr = csr_arrays(X)
    threads = min(cpu_threads(), n)
    if X.nnz < _config.CPU_SPLIT_PREDICT_MIN_NNZ or threads < 2:
        predict_csr((data, indices, indptr), *args)
        return out
    # threads on consecutive row ranges, each with its own workspace, BLAS on one thread
    # (the CSR product is serial code; BLAS pools beside it would fight for the cores)
    bounds = [n * i // threads for i in range(threads + 1)]
    pool = _predict_pool(threads - 1)
    with serial_blas():
        others = []
        for lo, hi in zip(bounds[1:-1], bounds[2:]):
            wsi, iwsi = _workspaces(spec, cap)
            others.append(pool.submit(predict_csr, (data, indices, indptr[lo:hi + 1]),
                                      *args[:7], wsi, iwsi, cap, out[lo:hi]))
        predict_csr((data, indices, indptr[:bounds[1] + 1]), *args[:10], out[:bounds[1]])
        for other in others:
            other.result()
    return out


_pool = None
_pool_size = 0


def _predict_pool(workers):
    """The extra threads of a split sparse predict (started on first use; replaced by a
    larger pool when a predict needs more than ``workers`` threads)."""
    global _pool, _pool_size
    if _pool is None or _pool_size < workers:
        from concurrent.futures import ThreadPoolExecutor

        old, _pool = _pool, ThreadPoolExecutor(workers, thread_name_prefix="fastmlp-predict")
        _pool_size = workers
        if old is not None:
            old.shutdown(wait=False)
    return _pool


_SMALL_WS_BYTES = 2**20  # the most workspace a thread keeps for small_predictor


def small_predictor(spec, theta):
    """``run(X, apply_out)``: ``predict`` of a few rows in one compiled call that also
    checks them (the output, or None when X holds NaN or inf).

    For ``fastmlp._fastpath``: everything but X is looked up once here, so a
    call costs the forward pass, the output's allocation and one dispatch.  The
    workspace is kept per thread (the kernel releases the GIL, so threads must
    not share one), sized for the most rows that thread has asked for so far, up
    to ``_SMALL_WS_BYTES`` (at least 64 rows): more rows than that are run in
    chunks of that many (``predict_forward`` chunks by ``cap``).
    """
    layers, code, param, pieces, out_code = (spec.layers, spec.code, spec.param, spec.pieces,
                                             spec.out_code)
    dtype, n_out = spec.dtype, spec.n_outputs
    ws_cols, iws_cols = max(spec.ws_cols, 1), spec.iws_cols
    most = max(64, _SMALL_WS_BYTES // ((ws_cols + iws_cols) * spec.dtype.itemsize))
    local = threading.local()

    def run(X, apply_out):
        m = X.shape[0]
        try:
            ws, iws, cap = local.ws
        except AttributeError:
            cap = 0
        if m > cap and cap < most:
            cap = min(m, most)
            ws = np.empty(ws_cols * cap, dtype=dtype)
            iws = np.empty(iws_cols * cap, dtype=np.int32) if iws_cols else None
            local.ws = ws, iws, cap
        out = np.empty((m, n_out), dtype=dtype)
        if predict_forward(X, theta, layers, code, param, pieces, out_code, apply_out, ws, iws,
                           cap, out, True):
            return out
        return None

    return run


def loss_grad(spec, theta, X, Y, y, sw, alpha):
    """Full-batch loss and gradient (a new array like theta); for checks and tools."""
    n = X.shape[0]
    ws, iws = _workspaces(spec, n)
    grad = np.zeros_like(theta)
    loss = loss_grad_batch(X, _given(Y), _given(y), _given(sw), theta, grad, spec.layers,
                           spec.code, spec.param, spec.pieces, spec.out_code, float(alpha), ws,
                           iws, n)
    return loss, grad
