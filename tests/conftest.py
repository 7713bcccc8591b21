"""Test configuration.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported for the CUDA
tests to run in numba's simulator on machines without a GPU; it is set here,
at collection time, unless a real GPU run asked otherwise
(FASTMLP_REAL_GPU=1).
"""

import os
import zlib

if os.environ.get("FASTMLP_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not shared)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
