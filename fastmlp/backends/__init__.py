"""The one switch between compute backends.

``get_backend("cpu" | "cuda" | "auto")`` returns a module with the same
interface for every backend: ``name``, ``is_available()``, ``Trainer``,
``predict`` and ``loss_grad``.  "auto" picks CUDA when a usable GPU is present
and the CPU otherwise (also under numba's CUDA simulator, which only
``backend="cuda"`` uses, for tests).
"""

BACKENDS = ("auto", "cpu", "cuda")


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
        # "auto" never picks numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1):
        # it runs every GPU thread in Python, far slower than the CPU backend.
        if name == "auto" and getattr(cuda, "is_simulated", lambda: False)():
            return cpu
        return cuda
    if name == "auto":
        return cpu
    raise RuntimeError(
        'backend="cuda" was requested but no usable NVIDIA GPU was found '
        f"({cuda.unavailable_reason()}); use backend=\"cpu\" instead."
    )
