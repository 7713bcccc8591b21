"""scikit-learn's common estimator checks, on both estimators, with no expected failures."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPClassifier, MLPRegressor

# Small networks and few epochs keep the checks fast; learning_rate_init=0.01
# lets 50 epochs reach the training scores the checks demand.  dtype="float64"
# because check_sample_weight_equivalence_* compares weighted and repeated fits
# at rtol=1e-7, which float32 rounding of the (differently ordered) gradient
# sums cannot meet; float32 is exercised by the other test files.
ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=0.01,
                  random_state=0, backend="cpu", dtype="float64"),
    MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=0.01,
                 random_state=0, backend="cpu", dtype="float64"),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
