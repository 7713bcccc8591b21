"""Shared fixtures (the CUDA-simulator switch lives in the root conftest.py).

``rng``: a fresh generator per test, seeded from the test's id.

``config``: ``config(PREDICT_CHUNK_ROWS=7)`` overrides a ``fastmlp._config``
setting for the rest of the test (restored afterwards).

``backend``: the estimator tests that take it run once per backend name.
Unmarked, a test gets "cpu" only; marked ``@pytest.mark.both_backends`` it
runs on "cpu" and on "cuda" (in numba's simulator where there is no GPU,
skipped where numba-cuda is missing).  The simulator runs every GPU thread in
Python, so marked tests must stay tiny: a few dozen rows, at most two epochs.
Under the "cuda" parameter the launches are small (3 x 3 thread blocks, set
through ``fastmlp._config.override``) so that the multi-block paths run.

``_simulator_fix`` (autouse): once numba-cuda is imported under the simulator,
its ``cuda.shared.array`` is made thread-safe before the test runs
(``cudasim_fix.py``: a numba-cuda bug, fixed here and not in the package).
"""

import os
import sys
import zlib

import numpy as np
import pytest

BOTH = ("cpu", "cuda")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_backends: run once per backend through the `backend` fixture "
        "(cpu, and cuda: in the simulator without a GPU; tiny data, <= 2 epochs)")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("backend", BOTH if both else ("cpu",), indirect=True)


@pytest.fixture
def backend(request):
    """The backend name a test passes as ``backend=`` (see the module docstring)."""
    if request.param == "cpu":
        yield "cpu"
        return
    cuda = pytest.importorskip("fastmlp.backends.cuda")
    _install_simulator_fix()
    if not cuda.is_available():
        pytest.skip(f"CUDA backend unavailable: {cuda.unavailable_reason()}")
    from fastmlp import _config

    old = sys.getswitchinterval()
    if cuda.is_simulated():
        sys.setswitchinterval(1e-4)  # the simulator's threads spin on the GIL
    try:
        with _config.override(CUDA_TILE=3, CUDA_REGISTER_BLOCK=2):
            yield "cuda"
    finally:
        sys.setswitchinterval(old)


def _install_simulator_fix():
    if "numba.cuda" in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        import cudasim_fix

        cudasim_fix.install()


@pytest.fixture(autouse=True)
def _simulator_fix():
    """numba-cuda's simulator, once imported, gets its shared arrays locked (cudasim_fix)."""
    _install_simulator_fix()


@pytest.fixture
def config():
    """``config(NAME=value, ...)`` overrides fastmlp._config settings until the test ends
    (through ``_config.override``; the previous values come back afterwards)."""
    from contextlib import ExitStack

    from fastmlp import _config

    with ExitStack() as stack:
        yield lambda **settings: stack.enter_context(_config.override(**settings))


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's id (reproducible, not shared)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes, one thread each, and its Client, per test
    module (the dask test files')."""
    import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit="2GiB")
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
