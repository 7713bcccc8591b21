"""Training curves in scikit-learn's Display style (matplotlib is optional).

See :class:`LossCurveDisplay`.
"""

import numpy as np

__all__ = ["LossCurveDisplay"]


class LossCurveDisplay:
    """Training loss per epoch, with the validation loss and score when recorded.

    Build it with :meth:`from_estimator` (or directly from the curves), then
    :meth:`plot`.  The validation score goes on a second y-axis because it is
    on another scale (accuracy or R^2).

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Training loss per epoch (``loss_curve_``).
    validation_loss_curve : array-like of shape (n_epochs,), default=None
        Validation loss per epoch (``validation_loss_curve_``, early stopping only).
    validation_scores : array-like of shape (n_epochs,), default=None
        Validation score per epoch (``validation_scores_``).
    estimator_name : str, default=None
        Used in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The loss axes.
    score_ax_ : matplotlib Axes or None
        The twin axes of the validation score.
    figure_ : matplotlib Figure
    lines_ : dict of str to matplotlib Line2D
        "train_loss", and "validation_loss" / "validation_score" when present.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from fastmlp.plotting import LossCurveDisplay
    >>> disp = LossCurveDisplay([1.0, 0.5, 0.3], [1.1, 0.7, 0.6], [0.6, 0.8, 0.85]).plot()
    >>> sorted(disp.lines_)
    ['train_loss', 'validation_loss', 'validation_score']
    """

    def __init__(self, loss_curve, validation_loss_curve=None, validation_scores=None,
                 estimator_name=None):
        self.loss_curve = np.asarray(loss_curve, dtype=float)
        self.validation_loss_curve = (None if validation_loss_curve is None
                                      else np.asarray(validation_loss_curve, dtype=float))
        self.validation_scores = (None if validation_scores is None
                                  else np.asarray(validation_scores, dtype=float))
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **plot_kwargs):
        """Plot the curves a fitted fastmlp (or scikit-learn) MLP recorded.

        Parameters
        ----------
        estimator : fitted MLPClassifier or MLPRegressor
            Any estimator with ``loss_curve_``; ``validation_loss_curve_`` and
            ``validation_scores_`` are drawn when not None.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **plot_kwargs
            Passed to the training-loss line.

        Returns
        -------
        display : LossCurveDisplay
        """
        if not hasattr(estimator, "loss_curve_"):
            raise ValueError(
                f"{type(estimator).__name__} has no loss_curve_: fit it first "
                "(with a stochastic solver).")
        disp = cls(
            estimator.loss_curve_,
            getattr(estimator, "validation_loss_curve_", None),
            getattr(estimator, "validation_scores_", None),
            estimator_name=type(estimator).__name__,
        )
        return disp.plot(ax=ax, **plot_kwargs)

    def plot(self, ax=None, **kwargs):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs
            Passed to the training-loss line.

        Returns
        -------
        self : LossCurveDisplay
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                'LossCurveDisplay needs matplotlib: pip install "fastmlp[plot]"') from None
        if ax is None:
            _, ax = plt.subplots()
        epochs = np.arange(1, self.loss_curve.shape[0] + 1)
        self.lines_ = {}
        (self.lines_["train_loss"],) = ax.plot(epochs, self.loss_curve,
                                               **{"label": "training loss", **kwargs})
        if self.validation_loss_curve is not None and self.validation_loss_curve.size:
            (self.lines_["validation_loss"],) = ax.plot(
                epochs[: self.validation_loss_curve.shape[0]], self.validation_loss_curve,
                linestyle="--", label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        self.score_ax_ = None
        handles = list(self.lines_.values())
        if self.validation_scores is not None and self.validation_scores.size:
            self.score_ax_ = ax.twinx()
            (self.lines_["validation_score"],) = self.score_ax_.plot(
                epochs[: self.validation_scores.shape[0]], self.validation_scores,
                color="tab:green", label="validation score")
            self.score_ax_.set_ylabel("validation score")
            handles.append(self.lines_["validation_score"])
        ax.legend(handles=handles, loc="best")
        if self.estimator_name:
            ax.set_title(f"{self.estimator_name} training curves")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
