"""Root pytest configuration, loaded before anything imports numba.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported for the CUDA
tests to run in numba's simulator on machines without a GPU.  It is set here
unless a real-GPU run asks otherwise with FASTMLP_REAL_GPU=1.
"""

import os

if os.environ.get("FASTMLP_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
