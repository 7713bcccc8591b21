"""fastmlp: multilayer perceptrons for scikit-learn users, compiled with Numba.

>>> from fastmlp import MLP
>>> MLP is MLPClassifier
True
"""

import gc as _gc

# Start-up (issue 28): scikit-learn and the SciPy parts the estimators use are
# imported first, with the cyclic garbage collector as the process has it (a
# process fitting scikit-learn's MLPClassifier imports the same); then the
# collector is paused while numba and fastmlp's own modules load.  Those
# allocate ~100,000 objects that live as long as the process (numba's typing
# and lowering registries, the kernels' dispatchers), and each full
# collection the allocations set off would walk the whole heap, scikit-learn's,
# SciPy's and pandas' objects included: 0.2-0.3 s of CPU of a fresh
# process's import and first fit here, to find ~470 garbage cycles.  The
# collector's state is put back as found, and what was allocated meanwhile
# is moved to its oldest generation (``freeze`` then ``unfreeze``: two list
# splices, the documented way into the oldest generation) rather than swept
# by the next young collection (another 20-35 ms); those cycles (~29,000
# objects, mostly llvmlite IR; the process's peak memory did not change) go
# at the next full collection.  Not where the process had frozen objects
# itself (a pre-fork server): ``unfreeze`` would thaw them too.
import scipy.optimize  # noqa: F401,E402
import scipy.sparse  # noqa: F401,E402
import sklearn.base  # noqa: F401,E402
import sklearn.metrics  # noqa: F401,E402
import sklearn.model_selection  # noqa: F401,E402
import sklearn.preprocessing  # noqa: F401,E402

_gc_enabled = _gc.isenabled()
_gc.disable()
try:
    from ._estimator import MLP, MLPClassifier, MLPRegressor
    from .backends import available_backends
finally:
    if _gc.get_freeze_count() == 0:
        _gc.freeze()
        _gc.unfreeze()
    if _gc_enabled:
        _gc.enable()
del _gc_enabled

__version__ = "0.1.0"

__all__ = ["MLP", "MLPClassifier", "MLPRegressor", "available_backends", "ops", "__version__"]


def __getattr__(name):
    """``fastmlp.ops`` is imported on first use (a fit does not need it: start-up)."""
    if name == "ops":
        import importlib

        return importlib.import_module(".ops", __name__)  # binds fastmlp.ops too
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"ops"})
