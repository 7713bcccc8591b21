"""Shared fixtures (the CUDA-simulator switch lives in the root conftest.py)."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's id (reproducible, not shared)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
