"""The one switch between compute backends.

``get_backend("cpu" | "cuda" | "auto")`` returns a module with the same
interface for every backend: ``name``, ``is_available()``, ``Trainer``,
``predict`` and ``loss_grad``.  "auto" picks CUDA when a usable GPU is present
and the CPU otherwise (also under numba's CUDA simulator, which only
``backend="cuda"`` uses, for tests).
"""

import ctypes
import functools
import sys

BACKENDS = ("auto", "cpu", "cuda")


@functools.lru_cache(maxsize=None)
def _cuda_driver_found():
    """Whether NVIDIA's driver library loads (the names numba-cuda's loader tries).

    Without it no GPU can run, and "auto" picks the CPU without importing
    numba-cuda, whose import alone took ~0.8 s of a first fit on the project's
    machine.  Loading the library starts nothing on a GPU.
    """
    if sys.platform == "win32":  # pragma: no cover - not CI's platform
        loader, names = getattr(ctypes, "WinDLL", ctypes.CDLL), ["nvcuda.dll"]
    elif sys.platform == "darwin":  # pragma: no cover
        loader, names = ctypes.CDLL, ["libcuda.dylib", "/usr/local/cuda/lib/libcuda.dylib"]
    else:
        loader = ctypes.CDLL
        names = ["libcuda.so.1", "libcuda.so"]
        names += [f"{d}/{n}" for d in ("/usr/lib", "/usr/lib64") for n in names]
    for path in names:
        try:
            loader(path)
        except OSError:
            continue
        return True
    return False


def cuda_simulated():
    """True when numba runs CUDA kernels in its Python simulator (NUMBA_ENABLE_CUDASIM=1).
    (Here, not in ``cuda``, so that "auto" can ask without importing numba-cuda.)"""
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def _cuda_module():
    from . import cuda

    return cuda


def available_backends():
    """Names of the backends usable on this machine, e.g. ``['cpu']`` or ``['cpu', 'cuda']``.

    "cuda" is listed when numba-cuda is installed and a GPU answers (or when
    numba's CUDA simulator is switched on, for tests).

    Examples
    --------
    >>> from fastmlp import available_backends
    >>> "cpu" in available_backends()
    True
    """
    names = ["cpu"]
    try:
        if _cuda_module().is_available():
            names.append("cuda")
    except ImportError:
        pass
    return names


def get_backend(name):
    """Return the backend module for ``name``; raise ValueError/RuntimeError clearly."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose one of {list(BACKENDS)}.")
    from . import cpu

    if name == "cpu":
        return cpu
    if name == "auto" and (cuda_simulated() or not _cuda_driver_found()):
        # "auto" never picks numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1: it runs
        # every GPU thread in Python, far slower than the CPU backend), and without a
        # driver there is no GPU: the CPU, without importing numba-cuda
        return cpu
    try:
        cuda = _cuda_module()
        usable = cuda.is_available()
    except ImportError as exc:
        if name == "auto":
            return cpu
        raise RuntimeError(
            'backend="cuda" needs the GPU stack: pip install "fastmlp[cuda]" '
            f'({exc}); use backend="cpu" to run on the CPU.'
        ) from None
    if usable:
        return cuda
    if name == "auto":
        return cpu
    raise RuntimeError(
        'backend="cuda" was requested but no usable NVIDIA GPU was found '
        f"({cuda.unavailable_reason()}); use backend=\"cpu\" instead."
    )
