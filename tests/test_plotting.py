"""LossCurveDisplay renders the curves a fit recorded (Agg backend, to PNG)."""

import numpy as np
import pytest

import matplotlib  # noqa: E402  (the test extra installs it)
matplotlib.use("Agg")

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp.plotting import LossCurveDisplay  # noqa: E402


def test_from_estimator_with_early_stopping_renders_png(tmp_path, rng):
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, early_stopping=True,
                        n_iter_no_change=100, random_state=0, backend="cpu")
    with pytest.warns(Warning):
        clf.fit(X, y)
    disp = LossCurveDisplay.from_estimator(clf)
    assert set(disp.lines_) == {"train_loss", "validation_loss", "validation_score"}
    np.testing.assert_allclose(disp.lines_["train_loss"].get_ydata(), clf.loss_curve_)
    np.testing.assert_allclose(disp.lines_["validation_loss"].get_ydata(),
                               clf.validation_loss_curve_)
    np.testing.assert_allclose(disp.lines_["validation_score"].get_ydata(),
                               clf.validation_scores_)
    out = tmp_path / "curves.png"
    disp.figure_.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000


def test_plot_on_given_axes_without_validation(rng):
    import matplotlib.pyplot as plt

    X = rng.normal(size=(100, 3))
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0, backend="cpu")
    with pytest.warns(Warning):
        reg.fit(X, X[:, 0])
    fig, ax = plt.subplots()
    disp = LossCurveDisplay.from_estimator(reg, ax=ax)
    assert disp.ax_ is ax and disp.score_ax_ is None
    assert list(disp.lines_) == ["train_loss"]
    plt.close(fig)


def test_unfitted_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="fit it first"):
        LossCurveDisplay.from_estimator(MLPClassifier())
