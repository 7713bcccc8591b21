"""scikit-learn's callback API (``sklearn.callback``, scikit-learn >= 1.9), when present.

The estimators inherit ``CallbackSupportMixin`` (giving ``set_callbacks``) and
report one fit task per call with one subtask per epoch, so ``ProgressBar``
and ``ScoringMonitor`` work on them.  With an older scikit-learn the mixin is
an empty class and ``EpochCallbacks`` does nothing; nothing else changes.
"""

try:  # scikit-learn >= 1.9
    from sklearn.callback import CallbackSupportMixin, with_callbacks

    HAVE_CALLBACKS = True
except ImportError:  # pragma: no cover - exercised only on older scikit-learn
    HAVE_CALLBACKS = False

    class CallbackSupportMixin:
        """Stand-in: this scikit-learn has no callback API."""

    def with_callbacks(method):
        return method


class EpochCallbacks:
    """Drive the callback hooks of one fit: a root task, a subtask per epoch.

    All methods are no-ops (and cost nothing) when the estimator has no callbacks.
    ``reconstruct`` is a function returning the attributes that make a copy of
    the estimator predict as it would after the current epoch; scikit-learn
    calls it only when some callback asks for a fitted estimator, so a fit
    whose callbacks only count epochs copies no weights.
    """

    def __init__(self, estimator, X, y, max_epochs, metadata=None):
        self.active = HAVE_CALLBACKS and bool(getattr(estimator, "_skl_callbacks", None))
        self.estimator, self.X, self.y, self.metadata = estimator, X, y, metadata
        self.max_epochs = max_epochs
        self._ctx = self._sub = None

    def begin(self):
        """Begin the fit's task (the training loop calls it once its engine is ready)."""
        if self.active:
            self._ctx = self.estimator._init_callback_context(max_subtasks=self.max_epochs)
            self._ctx.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y,
                                             metadata=self.metadata)

    def epoch_begin(self):
        if self.active:
            self._sub = self._ctx.subcontext(task_name="epoch")
            self._sub.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y,
                                             metadata=self.metadata)

    def epoch_end(self, reconstruct):
        """End the epoch's task; returns True when a callback asks to stop."""
        if not self.active:
            return False
        # a callable argument is evaluated by scikit-learn only if a callback needs it
        stop = self._sub.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=reconstruct)
        self._sub = None
        return bool(stop)

    def fit_end(self, reconstruct):
        if self.active and self._ctx is not None:
            if self._sub is not None:  # an epoch that raised: close it empty
                self._sub.call_on_fit_task_end(estimator=self.estimator)
            self._ctx.call_on_fit_task_end(
                estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
                reconstruction_attributes=reconstruct)


# a fit without callbacks (the dask estimators: see their Notes)
NO_CALLBACKS = EpochCallbacks(None, None, None, 0)
