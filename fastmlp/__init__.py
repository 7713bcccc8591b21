"""fastmlp: multilayer perceptrons for scikit-learn users, compiled with Numba.

>>> from fastmlp import MLP
>>> MLP is MLPClassifier
True
"""

from . import ops
from ._estimator import MLP, MLPClassifier, MLPRegressor
from .backends import available_backends

__version__ = "0.1.0"

__all__ = ["MLP", "MLPClassifier", "MLPRegressor", "available_backends", "ops", "__version__"]
