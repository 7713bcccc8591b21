"""The CUDA backend (work in progress: see the CUDA issue)."""

name = "cuda"


def is_available():
    return False


def unavailable_reason():
    return "the CUDA backend is not built yet"
