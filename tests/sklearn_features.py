"""What the installed scikit-learn's MLP offers, for the tests that compare against it.

A test comparing with a scikit-learn feature that this scikit-learn lacks skips with
the reason (CI runs the suite on the oldest declared scikit-learn too, ``.ci/oldest``).
"""

import inspect

import pytest
import sklearn
from sklearn.neural_network import MLPClassifier, MLPRegressor

#: MLPClassifier/MLPRegressor.fit(..., sample_weight=) (scikit-learn >= 1.7)
SAMPLE_WEIGHT = "sample_weight" in inspect.signature(MLPClassifier.fit).parameters
#: MLPRegressor(loss=...), e.g. "poisson" (scikit-learn >= 1.7)
LOSS = "loss" in MLPRegressor().get_params()

_WHY = f"scikit-learn {sklearn.__version__}'s MLP has no {{}} (1.7+)"
needs_sample_weight = pytest.mark.skipif(not SAMPLE_WEIGHT, reason=_WHY.format("sample_weight"))
needs_loss = pytest.mark.skipif(not LOSS, reason=_WHY.format("loss parameter"))


def require(sample_weight=None, params=()):
    """Skip the running test when its scikit-learn call needs what this one lacks."""
    if sample_weight is not None and not SAMPLE_WEIGHT:
        pytest.skip(_WHY.format("sample_weight"))
    if "loss" in params and not LOSS:
        pytest.skip(_WHY.format("loss parameter"))
