"""The CPU backend: ``@njit`` kernels, GEMMs through BLAS.

Kernels by subject: ``activations``, ``losses``, ``dense``, ``optimizers``,
``train``.  ``fastmlp/backends/cuda/`` has a file of the same name for each
subject, and both packages give the estimators the same interface (``Trainer``,
``FullBatch``, ``predict``); the kernels inside differ (the GPU's are phases of
one epoch kernel), while their per-element and per-row math is the one of
``fastmlp/backends/scalar.py``.  CPU only: ``blas`` (the GEMMs' BLAS calls) and
``sync`` (the barrier of split epochs, which ``Trainer`` runs in two threads).
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
from ..layout import FAN_IN, ZCOLS, csr_arrays
from .blas import kernel_blas_path
from .sync import ABORT, SYNC_SIZE, publish, wait_change
from .train import loss_grad_batch, loss_grad_sum, predict_csr, predict_forward, train_epoch

name = "cpu"

# Trainer, FullBatch and predict take a CSR matrix as X (its first layer multiplies the
# sparse rows: ``dense.csr_matmul``); a backend without this attribute is given dense rows
TAKES_CSR = True


def is_available():
    return True


_blas = None


def _blas_controller():
    """A threadpoolctl controller over the loaded BLAS libraries (built once).

    The kernels call NumPy's BLAS (``blas``), or SciPy's through numba's
    ``np.dot`` where NumPy's cannot be called directly: both are loaded first
    so that the controller sees both.
    """
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


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


_one_thread = _OneThread()


def serial_blas():
    """Every BLAS library on one thread while the block runs (small training steps).

    The limit is process-wide (threadpoolctl changes the BLAS libraries'
    own thread count): while any CPU fit is inside a small-step epoch, every
    BLAS call of the process, from any thread, runs on one thread.
    """
    return _one_thread.hold(_blas_controller().lib_controllers)


def _kernel_blas_path():
    """The file of the BLAS the kernels' GEMMs call, or None if it cannot be told."""
    path = kernel_blas_path()
    if path is not None:
        return path
    # the adapters: numba's np.dot, i.e. SciPy's BLAS
    paths = [lib.filepath for lib in _blas_controller().lib_controllers
             if "scipy" in lib.filepath.replace("libscipy_openblas", "")]
    return paths[0] if len(paths) == 1 else None


def host_blas_serial():
    """The BLAS libraries the kernels do not use on one thread while the block runs.

    An lbfgs fit alternates compiled full-batch calls (two BLAS threads) with
    small NumPy vector work; where the two use different OpenBLAS copies (the
    kernels SciPy's, see ``blas``), two thread pools spin.  Two thread
    pools spinning on two cores slowed a 20000 x 100 fit 2.5x here (12.6 s vs
    5.0 s with NumPy's pool on one thread); the NumPy-side work is too small to
    need a second thread.  Where the kernels' library cannot be told apart,
    nothing is limited.
    """
    kernel = _kernel_blas_path()
    if kernel is None:
        return _one_thread.hold([])
    return _one_thread.hold([lib for lib in _blas_controller().lib_controllers
                             if lib.filepath != kernel])


def gemm_size(spec, rows):
    """Multiply-adds of the largest GEMM of a training step on ``rows`` rows."""
    return max(rows * int(r[FAN_IN]) * int(r[ZCOLS]) for r in spec.layers)


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


def _can_split():
    """Whether split epochs (compiled code in two threads) may run: numba's thread
    count, the user's knob for fastmlp's compiled parallelism (``NUMBA_NUM_THREADS``,
    ``numba.set_num_threads``, per calling thread), is at least 2, and the atomic
    barrier is on (``sync.SPLIT``).

    Read without starting numba's thread pool, which training does not use: while
    the pool has not started, nobody has called ``set_num_threads`` (it starts the
    pool), so the count is ``NUMBA_NUM_THREADS``.  (A started GNU OpenMP pool makes
    a forked child abort in numba's parallel kernels; a fit should not start one.)
    """
    import numba
    from numba.np.ufunc import parallel

    if not sync.SPLIT:  # no atomic barrier (see sync): one thread
        return False
    if getattr(parallel, "_is_initialized", True):
        return numba.get_num_threads() >= 2
    return numba.config.NUMBA_NUM_THREADS >= 2


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
        # large enough batches: rows halved (see train.train_epoch), by the batch alone, so
        # the model is the same whether the halves run in two threads or in one
        split_rows = int(_config.CPU_SPLIT_MIN_ROWS)
        self.parts = parts = 2 if (0 < split_rows <= self.cap and gemm_size(spec, self.cap)
                                   < _config.CPU_SPLIT_GEMM_BELOW) else 1
        self.threads = 2 if parts > 1 and _can_split() else 1
        self.grad = np.zeros(parts * theta.shape[0], dtype=theta.dtype)
        self.ws, self.iws = _workspaces(spec, self.cap, parts)
        self.sync = np.zeros(SYNC_SIZE, dtype=np.int64)  # the split's barrier (see sync)
        self.red = np.zeros(2 * parts)                   # its parts' loss and sum(w^2)
        self._helper = None                              # part 1's thread, from the first epoch
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
        # threads (the halves) are its parallelism

    @property
    def split(self):
        """Whether each batch's halves run in two threads (see ``train_epoch``)."""
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
            return self._epoch(order, -1 if self.parts > 1 else 0)  # -1: both halves here

    def _split_epoch(self, order):
        """The epoch as two threads of ``train_epoch`` (parts 0 and 1) meeting at
        barriers: part 1 in the trainer's helper thread, part 0 here.  If one
        raises, the other is released (``sync[ABORT]``) and the error raised here."""
        self.sync[:] = 0
        if self._helper is None:
            self._helper = _Helper()
            weakref.finalize(self, self._helper.stop)
        helper = self._helper
        args = self._epoch_args(order, 1)
        sync = self.sync

        def part1():
            try:
                train_epoch(*args)
            except BaseException:
                sync[ABORT] = 1  # releases part 0 from its barrier
                raise

        helper.start(part1)
        try:
            total = self._epoch(order, 0)
        except BaseException:
            self.sync[ABORT] = 1
            raise
        finally:
            helper.wait()
        if helper.error is not None:
            raise helper.error
        return total

    def _epoch_args(self, order, part):
        s = self.spec
        o = self.opt
        return (
            self.X, self.S, self.Y, self.y, self.sw, order, self.theta, self.grad, s.layers, s.code,
            s.param, s.pieces, s.out_code, self.alpha, *_optimizer_arrays(o), o.hyper,
            self.ws, self.iws, self.cap, self.Xb, self.Yb, self.yb, self.swb, self._drop, part,
            self.parts, self.sync, self.red,
        )

    def _epoch(self, order, part):
        return train_epoch(*self._epoch_args(order, part))

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
        self.cap = max(1, min(n, int(_config.FULL_BATCH_CHUNK_ROWS)))
        self.ws, self.iws = _workspaces(spec, self.cap)
        self.gbuf = np.empty(spec.n_params, dtype=spec.dtype) if n > self.cap else \
            np.empty(0, dtype=spec.dtype)
        self.serial_blas = gemm_size(spec, self.cap) < _config.CPU_SERIAL_GEMM_BELOW

    def __call__(self, theta, grad):
        if self.serial_blas:
            with serial_blas():
                return self._call(theta, grad)
        return self._call(theta, grad)

    def _call(self, theta, grad):
        s = self.spec
        return float(loss_grad_sum(
            self.X, self.S, self.Y, self.y, self.sw, theta, grad, self.gbuf, s.layers, s.code,
            s.param, s.pieces, s.out_code, self.ws, self.iws, self.cap, self.drop))


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
    if X.nnz < _config.CPU_SPLIT_PREDICT_MIN_NNZ or n < 2 or not _can_split():
        predict_csr((data, indices, indptr), *args)
        return out
    # two threads, each on half of the rows with its own workspace, BLAS on one thread
    # (the CSR product is serial code; two BLAS pools beside it would fight for the cores)
    half = n // 2
    ws1, iws1 = _workspaces(spec, cap)
    with serial_blas():
        other = _predict_pool().submit(
            predict_csr, (data, indices, indptr[half:]), *args[:7], ws1, iws1, cap, out[half:])
        predict_csr((data, indices, indptr[:half + 1]), *args[:10], out[:half])
        other.result()
    return out


_pool = None


def _predict_pool():
    """The one extra thread of a split sparse predict (started on first use)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(1, thread_name_prefix="fastmlp-predict")
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
