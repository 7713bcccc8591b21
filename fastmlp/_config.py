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

# CUDA launch configuration.  Small blocks in the simulator make the
# multi-block paths run on tiny test inputs.
CUDA_THREADS_PER_BLOCK = 256
CUDA_TILE = 16
