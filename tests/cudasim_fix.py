"""The test suite's fix for numba's CUDA simulator: one shared array per allocation site and launch.

In the simulator (``NUMBA_ENABLE_CUDASIM=1``) every GPU thread of a block is
a Python thread, and ``cuda.shared.array`` is ``FakeCUDAShared.array`` of
``numba/cuda/simulator/kernelapi.py``: it keys the launch's shared arrays by
the calling (file, line) and creates the array on the first call with an
unlocked check-then-set::

    res = self._allocations.get(caller)
    if res is None:
        res = np.empty(shape, dtype)
        self._allocations[caller] = res
    return res

Two threads of one block that reach the same ``cuda.shared.array`` line
together (a thread switch between the ``get`` and the store) each get an
array of their own, so their "shared" memory is not shared: a GEMM tile or
a block reduction then reads values the other threads never wrote there.
This made the simulated kernels (those of the per-phase fallback driver
most: it launches one kernel per phase and batch, each a new chance)
disagree with the CPU now and then, by up to a few per cent.  The kernels
are not at fault, and a real GPU is not affected.

``install()`` replaces the method with the same logic under a lock (and the
caller's frame read directly rather than through ``traceback``, which is
also much faster).  It is the test suite's business, not the package's: the
simulator exists for tests, and a library should not patch another one in a
user's process.  ``tests/conftest.py`` installs it (an autouse fixture, once
numba-cuda is imported under the simulator); it is idempotent and changes
nothing on a real GPU.  The bug is numba-cuda's (0.30.4 still has it): the
report's text is ``benchmarks/numba_cuda_simulator_shared_race.md``.
"""

import sys
import threading

import numpy as np

_LOCK = threading.Lock()


def _locked_array(self, shape, dtype, alignment=None):
    """``FakeCUDAShared.array`` with the first allocation of each site made once."""
    if alignment is not None or shape == 0:
        # the simulator's own errors and its dynamic shared memory (one
        # preallocated buffer, no race): unchanged
        return _locked_array.original(self, shape, dtype, alignment)
    from numba.cuda import types
    from numba.cuda.np import numpy_support

    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    f = sys._getframe(1)
    caller = (f.f_code.co_filename, f.f_lineno)  # the simulator's key
    with _LOCK:
        res = self._allocations.get(caller)
        if res is None:
            res = self._allocations[caller] = np.empty(shape, dtype)
    return res


def install():
    """Make the simulator's ``cuda.shared.array`` thread-safe; True when done (or already)."""
    try:
        from numba.cuda.simulator.kernelapi import FakeCUDAShared
    except ImportError:  # pragma: no cover - a numba without the simulator
        return False
    current = FakeCUDAShared.array
    if current is _locked_array:
        return True
    probe = FakeCUDAShared(0)
    if not isinstance(getattr(probe, "_allocations", None), dict):  # pragma: no cover
        return False  # a simulator this fix does not know: leave it alone
    _locked_array.original = current
    FakeCUDAShared.array = _locked_array
    return True


def uninstall():
    """Put the simulator's own method back (the tests use it to show the race)."""
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    if FakeCUDAShared.array is _locked_array:
        FakeCUDAShared.array = _locked_array.original
