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
epoch or an lbfgs fit, the BLAS libraries of the *whole process* (NumPy's and
SciPy's OpenBLAS/MKL, through threadpoolctl) are limited to one thread, and
restored when the last such fit in any thread finishes.  Other code that calls BLAS from another thread during that time
runs single-threaded too.
"""

import copy
from contextlib import contextmanager

# fastmath flags for the CPU kernels Python calls (compile-time, see above); the
# kernels that other kernels call are compiled without any (backends/cpu/calls.py,
# CALLEE_MATH: otherwise a process that compiled them and one that loaded them from
# numba's cache could round a sum differently).  "nnan" and
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
# several threads (consecutive row ranges, each its own workspace, BLAS on one
# thread), as many as a fit's epochs may use (``CPU_THREADS``, below).  The CSR product is serial,
# memory-latency-bound code: on the 2-core AMD EPYC a 20000 x 30000 matrix of
# 18 non-zeros a row (benchmarks/RESULTS.md, "Sparse input") went from about
# scipy's speed to ~1.8x less time.  Below ~1e5 non-zeros the hand-off costs
# more than it saves.  0 always splits; a huge value never does.
CPU_SPLIT_PREDICT_MIN_NNZ = 100_000

# Rows per chunk of the full-batch loss and gradient (solver="lbfgs"): bounds
# its workspace (one chunk's activations per layer) for any n_samples, while
# keeping each GEMM large enough for BLAS to run at full speed.
FULL_BATCH_CHUNK_ROWS = 4096

# Threads of CPU training.  BLAS always runs on one thread inside a CPU fit:
# a multi-threaded OpenBLAS GEMM rounds differently from a one-thread one
# (float32 and float64: an lbfgs fit of 6000 x 300, (256, 128) gave other
# weights with OPENBLAS_NUM_THREADS=1 and 2), so the model would depend on
# BLAS's thread count (a joblib worker has one, the main process all cores).
# The parallelism is fastmlp's own: each minibatch (sgd, adam) or the whole
# data (lbfgs's full-batch sums) is cut into parts by its size alone; each part
# is gathered, run forward and backward with its own workspace and gradient;
# then the parts' gradients are added in part order, each thread adding (and
# stepping) its slices of the parameters (``backends/cpu/train.py``, the
# barrier in ``backends/cpu/sync.py``).  Threads take whole parts, so the
# arithmetic and its order depend on the parts only: the weights are bitwise
# the same on 1, 2, 3, 4, 8 ... threads, inside joblib's workers or not.
#
# Parts of a minibatch: 2 from CPU_SPLIT_MIN_ROWS rows; doubling, up to
# CPU_SPLIT_MAX_PARTS, while each part keeps CPU_SPLIT_PART_ROWS rows; halved
# while the parts' extra gradients (parts - 1 copies of the parameters) would
# pass CPU_SPLIT_MAX_BYTES.  The full-batch sums of n rows: 1 part, doubling
# the same way.  More parts cost time on one thread (each part packs the
# weights for its GEMMs again and writes a gradient that is added later).
# Measured on a 2-core Intel Xeon, one thread, fit time against 2 parts
# (benchmarks/RESULTS.md, "Every core"; benchmarks/cpu_parts.py):
# 784 -> (256, 128), batch 256: 4 parts of 64 rows 1.09-1.26x, 8 parts of 32
# rows 1.22-1.64x; batch 512: 4 parts of 128 rows 1.06-1.16x; batch 1024:
# 4 / 8 parts of 256 / 128 rows 0.99-1.04x / 1.04-1.13x; 40 -> (100, 100),
# batch 100: 4 parts of 25 rows 1.19-1.23x.  Hence parts of at least 128 rows
# beyond two.  CPU_SPLIT_MIN_ROWS = 0 never splits (and
# gives other roundings).
CPU_SPLIT_MIN_ROWS = 64
CPU_SPLIT_PART_ROWS = 128
CPU_SPLIT_MAX_PARTS = 16
CPU_SPLIT_MAX_BYTES = 2**28

# Threads that run the parts: 0 (the default) takes numba's thread count
# (NUMBA_NUM_THREADS, numba.set_num_threads: the knob for fastmlp's compiled
# parallelism) capped by the BLAS thread limit in force (the cores by default;
# a joblib worker's share of them; threadpoolctl.threadpool_limits), then the
# largest power of two that divides the parts.  A positive value replaces the
# first two (tests and benchmarks: more threads than cores).  The result never
# depends on it.
CPU_THREADS = 0

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
