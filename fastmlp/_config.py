"""Tunables in one place, read when used.

Each setting is a module attribute, defined once below.  The API:

- read: ``_config.PREDICT_CHUNK_ROWS``, or ``_config.current()`` for all of
  them as a dict;
- override for a block: ``with _config.override(PREDICT_CHUNK_ROWS=7): ...``
  sets the values on entry and puts the previous ones back on exit (also on
  an error); an unknown name raises ``ValueError``;
- reset: ``_config.reset()`` puts every setting back to its default.

Both backends read the *run-time* settings (all but ``FASTMATH``) from this
module at call time, never from a copy taken at import, so an override is
seen by the next fit or predict.  Settings are process-wide, like the module
they live in: an override is seen by every thread, so tests and tools should
not override concurrently from several threads.

``FASTMATH`` is a *compile-time* setting: the CPU kernels are compiled with it
when ``fastmlp.backends.cpu`` is first imported (and cached on disk), so it is
changed by editing this file, which also invalidates the kernel cache
(``fastmlp/backends/_cache.py``); ``override`` refuses it.

Process-wide state outside this module: while a CPU fit runs an sgd or adam
epoch, or an lbfgs evaluation whose GEMMs are small (see
``CPU_SERIAL_GEMM_BELOW``), the BLAS libraries of the *whole process* (NumPy's and SciPy's OpenBLAS/MKL, through threadpoolctl) are
limited to one thread, and restored when the last such fit in any thread
finishes.  Other code that calls BLAS from another thread during that time
runs single-threaded too.
"""

import copy
from contextlib import contextmanager

# fastmath flags for every CPU kernel (compile-time, see above).  "nnan" and
# "ninf" are deliberately absent: the estimators rely on NaN/inf propagating
# so that a diverging fit is detected and reported instead of silently
# producing garbage.  "contract" (fused multiply-adds) and "arcp" (x / y as
# x * (1 / y)) are absent too: each changes the rounding of an optimizer step,
# an activation derivative or a softmax, so a float64 fit would drift from
# scikit-learn's (measured: half of all Adam moments and SGD velocities differed
# in the last bit); the GEMMs, where the time goes, are BLAS's either way.
FASTMATH = {"nsz", "reassoc"}

# Rows per chunk when predicting: bounds the memory predict needs for any
# input size (activations of one chunk per layer).
PREDICT_CHUNK_ROWS = 4096

# Bytes of dense rows densified at a time when training on a sparse X (rounded
# down to whole batches, at least one): the memory a sparse fit holds beyond
# the sparse matrix itself (8 MiB: 1048 float32 rows of 2000 features).
SPARSE_CHUNK_BYTES = 8 * 2**20

# A sparse X whose share of non-zeros (nnz / (rows x columns)) is at most this
# runs its first layer on the CSR rows directly (``backends/cpu/dense.py::
# csr_matmul`` / ``csr_grads``: O(nnz x units) per batch); a denser one is
# densified a chunk of rows at a time and multiplied by BLAS, which is then
# faster.  Measured on the 2-core AMD EPYC (benchmarks/RESULTS.md, "Sparse
# input"; 4000 x 2000 float32, hidden (64,), CSR time / densified time): fit
# 0.21 at 1 % non-zeros, 0.50 at 10 %, 0.96 at 20 %, 1.17 at 40 %;
# predict_proba 0.13, 0.38, 0.69, 0.97.  Both costs grow with the hidden
# units alike, so the crossover (fit: between 20 and 40 %) does not move much
# with the network.  The CUDA backend (``backends/cuda/sparse.py``) uses the
# same switch: a sparser X goes to the device as its CSR arrays, a denser one
# as dense rows a chunk at a time to the tiled GEMM (its crossover on a GPU
# is not measured yet).
SPARSE_DENSIFY_ABOVE = 0.25

# A CPU predict of a CSR matrix with at least this many non-zeros runs its rows in
# two threads (halves, each its own workspace, BLAS on one thread), where
# split epochs may run (numba's thread count >= 2).  The CSR product is serial,
# memory-latency-bound code: on the 2-core AMD EPYC a 20000 x 30000 matrix of
# 18 non-zeros a row (benchmarks/RESULTS.md, "Sparse input") went from about
# scipy's speed to ~1.8x less time.  Below ~1e5 non-zeros the hand-off costs
# more than it saves.  0 always splits; a huge value never does.
CPU_SPLIT_PREDICT_MIN_NNZ = 100_000

# Rows per chunk of the full-batch loss and gradient (solver="lbfgs"): bounds
# its workspace (one chunk's activations per layer) for any n_samples, while
# keeping each GEMM large enough for BLAS to run at full speed.
FULL_BATCH_CHUNK_ROWS = 4096

# BLAS threads during CPU training.  An sgd / adam epoch always runs BLAS on
# one thread: its parallelism is its own (the halves, below), and a
# multi-threaded OpenBLAS GEMM rounds float32 differently from a one-thread
# one, which would make the model depend on BLAS's thread count (a joblib
# worker has one, the main process all cores).  lbfgs's full-batch sums
# (only their loops are serial) let BLAS own the cores, except where the
# largest GEMM has fewer multiply-adds than this: there BLAS runs on one thread: OpenBLAS's second thread
# did not pay below it on a quiet 2-core machine (32x128x128: 1.04x,
# 100x40x100: 0.99x) while its hand-offs made such GEMMs several times
# slower when other processes loaded the cores; from about 1e6 up (100^3:
# 1.4x, 256x784x256: 1.9x) two threads win.  The limit is process-wide (it
# is threadpoolctl's): see the module docstring.  0 never limits.
CPU_SERIAL_GEMM_BELOW = 1_000_000

# Training steps of at least CPU_SPLIT_MIN_ROWS rows whose largest GEMM has
# fewer than CPU_SPLIT_GEMM_BELOW multiply-adds split each batch between two
# threads of compiled code (each with one-thread BLAS): each half is
# gathered, run forward and backward by its own thread, and each thread then
# sums the two gradients, adds the L2 term and steps half of the parameters
# (``fastmlp.backends.cpu.sync``).  Measured on 2 cores (benchmarks/RESULTS.md,
# 2026-12-06, Intel Xeon with AVX-512) against the one-thread epoch with two
# BLAS threads: digits demo 0.092 vs 0.096 s; 784 -> (256, 128) batch 256
# 0.257 vs 0.318 s; 784 -> (256,) batch 1024 0.171 vs 0.212 s;
# 784 -> (1024, 1024) batch 256 1.07 vs 1.13 s; 100 -> (2048, 2048) batch 512
# 2.48 vs 2.63 s: ahead at every size tried, so there is no upper limit by
# default.  (With numba's parallel loop and a one-thread step, as before,
# the medium case had lost: 1.53x vs 1.15x its floor on an AMD machine.)
# Where only one thread may run (one core, numba's thread count 1, a joblib
# worker), the same halves run one after the other in one thread: the halves
# depend on the batch alone, so the model is bitwise the same for any thread
# count.  CPU_SPLIT_MIN_ROWS = 0 never splits (and gives other roundings).
CPU_SPLIT_MIN_ROWS = 64
CPU_SPLIT_GEMM_BELOW = float("inf")

# CUDA launch configuration.  Every CUDA kernel runs blocks of CUDA_TILE x
# CUDA_TILE threads (the GEMM tiles' shape; the elementwise phases use the same
# threads flattened).  Small blocks in the simulator make the multi-block
# paths run on tiny test inputs.
CUDA_TILE = 16
# Register blocking of the forward GEMM: each thread computes R x R outputs, so a
# block of CUDA_TILE x CUDA_TILE threads covers a (R * CUDA_TILE)^2 output tile.
CUDA_REGISTER_BLOCK = 2
# How the CUDA backend runs an epoch (and a predict chunk): "persistent" = one
# cooperative kernel for every phase of every batch (grid sync between phases);
# "launches" = one kernel launch per phase and batch from a host loop; "auto" =
# persistent, falling back to launches (once, with a warning) where a
# cooperative launch cannot run.
CUDA_EPOCH_DRIVER = "auto"

# --- the API -----------------------------------------------------------------

# settings the kernels are compiled with: editing this file changes them
COMPILE_TIME = frozenset({"FASTMATH"})


def _names():
    return [k for k in globals() if k.isupper() and k != "COMPILE_TIME"]


_DEFAULTS = {k: copy.deepcopy(globals()[k]) for k in _names()}


def current():
    """Every setting and its present value, as a new dict."""
    return {k: globals()[k] for k in _DEFAULTS}


@contextmanager
def override(**settings):
    """Set run-time settings for the ``with`` block; the previous values come back after it.

    >>> from fastmlp import _config
    >>> with _config.override(PREDICT_CHUNK_ROWS=7):
    ...     _config.PREDICT_CHUNK_ROWS
    7
    >>> _config.PREDICT_CHUNK_ROWS
    4096
    """
    unknown = sorted(set(settings) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown setting(s) {unknown}; the settings are {sorted(_DEFAULTS)}.")
    fixed = sorted(set(settings) & COMPILE_TIME)
    if fixed:
        raise ValueError(f"{fixed} are compile-time settings: edit fastmlp/_config.py instead.")
    g = globals()
    saved = {k: g[k] for k in settings}
    g.update(settings)
    try:
        yield
    finally:
        g.update(saved)


def reset():
    """Put every setting back to its default (the values written in this file)."""
    globals().update({k: copy.deepcopy(v) for k, v in _DEFAULTS.items()})
