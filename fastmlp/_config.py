"""Tunables in one place.

Every compiled kernel reads its flags from here so that a change of policy is
one edit, not a hunt through the backends.
"""

# fastmath flags for every CPU kernel.  "nnan" and "ninf" are deliberately
# absent: the estimators rely on NaN/inf propagating so that a diverging fit is
# detected and reported instead of silently producing garbage.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Default precision of the computation.
DEFAULT_DTYPE = "float32"

# Rows per chunk when predicting: bounds the memory predict needs for any
# input size (activations of one chunk per layer).
PREDICT_CHUNK_ROWS = 4096

# Rows per chunk of the full-batch loss and gradient (solver="lbfgs"): bounds
# its workspace (one chunk's activations per layer) for any n_samples, while
# keeping each GEMM large enough for BLAS to run at full speed.
FULL_BATCH_CHUNK_ROWS = 4096

# Rows densified at a time when training on a sparse X (rounded down to whole
# batches): the memory a sparse fit holds beyond the sparse matrix itself.
SPARSE_CHUNK_ROWS = 4096

# BLAS threads during CPU training.  The epoch's own loops are serial, so a
# multi-threaded BLAS owns the cores.  A step whose largest GEMM has fewer
# multiply-adds than this runs BLAS on one thread: OpenBLAS's second thread
# did not pay below it on a quiet 2-core machine (32x128x128: 1.04x,
# 100x40x100: 0.99x) while its hand-offs made such GEMMs several times
# slower when other processes loaded the cores; from about 1e6 up (100^3:
# 1.4x, 256x784x256: 1.9x) two threads win.
CPU_SERIAL_GEMM_BELOW = 1_000_000

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
