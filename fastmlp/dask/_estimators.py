"""fastmlp.dask: the estimators (input checks, fit, block-wise predict, to_local)."""

import copy
import time
import uuid

import dask
import dask.array as da
import distributed
import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import _get_feature_names, check_is_fitted

from .._estimator import MLPClassifier, MLPRegressor
from .._solvers import fit_lbfgs, fit_stochastic, validation_split
from ._blocks import _block_label_counts, _merge_label_counts, _predict_block, _prepare_part
from ._cluster import _balanced_homes, _client_blas_serial, _Cluster
from ._engine import ClusterEngine, _r2


def _resolve_client(client, owner):
    if client is not None:
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError(
            f"{owner} needs a dask.distributed Client: create one first "
            "(e.g. `Client(LocalCluster())`, or `Client('tcp://scheduler:8786')` for a "
            "cluster) or pass client=...") from None


def _as_dask_array(obj, what, lengths=True):
    """A dask array from a dask array, DataFrame or Series; TypeError otherwise.

    lengths=True computes the partitions' lengths (known chunk sizes, needed to
    line up X, y and the weights); None leaves them unknown.
    """
    if isinstance(obj, da.Array):
        return obj
    if dask.is_dask_collection(obj) and hasattr(obj, "to_dask_array"):
        return obj.to_dask_array(lengths=lengths)
    raise TypeError(
        f"{what} must be a dask array, DataFrame or Series, got {type(obj).__name__}. Wrap "
        "in-memory data with dask.array.from_array(X, chunks=(rows_per_block, -1)), or fit "
        "the local fastmlp.MLPClassifier / MLPRegressor on it.")


def _label_counts(y):
    """A delayed (sorted unique labels, their counts) over all of y's values.

    One task per block and one to merge (``da.unique`` takes ~100 ms more here,
    on every fit)."""
    count = dask.delayed(_block_label_counts, pure=True)
    return dask.delayed(_merge_label_counts, pure=True)(
        *[count(b) for b in y.to_delayed().ravel()])


def _check_rows(arr, what, X):
    """arr (y or sample_weight) must share X's row blocks and have one column block."""
    if arr.ndim not in (1, 2):
        raise ValueError(f"{what} must be 1- or 2-dimensional, got shape {arr.shape}.")
    if any(np.isnan(c) for c in arr.chunks[0]):
        raise ValueError(f"{what} has unknown chunk sizes; call {what}.compute_chunk_sizes() "
                         "(or convert DataFrames with to_dask_array(lengths=True)).")
    if arr.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but {what} has {arr.shape[0]}.")
    if arr.chunks[0] != X.chunks[0]:
        raise ValueError(
            f"{what} must be partitioned along rows like X (blocks of {X.chunks[0]} rows), "
            f"got blocks of {arr.chunks[0]}; rechunk it with "
            f"{what}.rechunk({{0: X.chunks[0]}}).")
    if arr.ndim == 2 and arr.numblocks[1] != 1:
        raise ValueError(f"{what} must have one block along its columns; rechunk it with "
                         f"{what}.rechunk({{1: -1}}).")


def _check_training_input(X, y, sample_weight):
    """Dask arrays with the same row blocks and one column block; names for X's columns."""
    feature_names = (_get_feature_names(X._meta)
                     if dask.is_dask_collection(X) and hasattr(X, "columns") else None)
    X = _as_dask_array(X, "X")
    y = _as_dask_array(y, "y")
    if sample_weight is not None:
        sample_weight = _as_dask_array(sample_weight, "sample_weight")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (rows, features), got shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes (e.g. after boolean indexing); call "
                         "X.compute_chunk_sizes() first (or convert DataFrames with "
                         "to_dask_array(lengths=True)).")
    if X.numblocks[1] != 1:
        raise ValueError(
            f"X must be chunked along rows only (one block of all {X.shape[1]} columns), got "
            f"column blocks {X.chunks[1]}; rechunk it with X.rechunk({{1: -1}}).")
    _check_rows(y, "y", X)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if sample_weight is not None:
        _check_rows(sample_weight, "sample_weight", X)
        if sample_weight.ndim != 1:
            raise ValueError(f"sample_weight must be 1-dimensional, got shape "
                             f"{sample_weight.shape}.")
    if X.shape[0] == 0:
        raise ValueError("X has no rows.")
    return X, y, sample_weight, feature_names


# the dask estimators' own parameters (the others are the local estimator's)
_DASK_PARAMS = ("client", "sync")


def _check_sync(sync):
    """``sync`` is "step", "epoch" or a positive int; ValueError otherwise."""
    if isinstance(sync, str) and sync in ("step", "epoch"):
        return sync
    if isinstance(sync, (int, np.integer)) and not isinstance(sync, (bool, np.bool_)) \
            and sync >= 1:
        return int(sync)
    raise ValueError(
        "The 'sync' parameter of the dask estimators must be 'step' (synchronous steps: the "
        "local fit's model), 'epoch' (parameter averaging once per epoch) or a positive int "
        f"K (averaging every K local steps); got {sync!r}.")


class _Rows:
    """What ``validation_split`` reads of a fit's data: its number of rows."""

    def __init__(self, n):
        self.n = n


def _row_map(starts, train_idx):
    """(block, position in the block's training rows) of each training row.

    starts: the first row of each block (and the end); train_idx: the training
    rows (global indices) in the local fit's order (after an early-stopping
    split, train_test_split's).  A block keeps its training rows in row order
    (``_prepare_part``)."""
    ordered = np.sort(train_idx)
    block = np.searchsorted(starts, ordered, side="right") - 1
    pos = np.arange(ordered.shape[0]) - np.searchsorted(ordered, starts[block])
    rank = np.searchsorted(ordered, train_idx)
    return block[rank].astype(np.int64), pos[rank].astype(np.int64)


class _Net:
    """What ``_publish_weights`` / ``_same_network`` read of a fit's data."""

    def __init__(self, n_features, n_outputs, out_activation):
        self.X = np.empty((0, n_features))
        self.n_outputs, self.out_activation = n_outputs, out_activation


class _DaskMLPMixin:
    """fit on dask collections, block-wise predict, to_local (shared by both estimators)."""

    _local_class = None

    @property
    def partial_fit(self):
        raise AttributeError(
            f"{type(self).__name__} has no partial_fit; stream blocks through a local "
            "estimator with dask_ml.wrappers.Incremental instead.")

    def _local_params(self):
        return {k: v for k, v in self.get_params(deep=False).items() if k not in _DASK_PARAMS}

    def __getstate__(self):
        state = super().__getstate__()
        state["client"] = None  # a Client does not travel; None means the current one
        return state

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None):
        """Fit on dask collections, each block of rows where it lives.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)
            Chunked along rows only (one block of columns), known chunk sizes.
        y : dask array or dask Series/DataFrame of shape (n_samples,) or (n_samples, n_outputs)
            Targets, partitioned along rows exactly like X.
        sample_weight : dask array of shape (n_samples,), default=None
            Per-sample weights, partitioned like X.

        Returns
        -------
        self : object
            The fitted estimator (its attributes are NumPy arrays, as a local fit's).
        """
        params = self._local_params()
        local = self._local_class(**params)
        local._validate_params()
        sync = _check_sync(self.sync)
        step = sync == "step" and self.solver != "lbfgs"
        client = _resolve_client(self.client, type(self).__name__)
        X, y, sample_weight, feature_names = _check_training_input(X, y, sample_weight)
        first_pass = not (self.warm_start and hasattr(self, "coefs_"))
        if not first_pass:
            local = self.to_local()
            local.set_params(**params)
            local._validate_params()
        local.__dict__.pop("feature_names_in_", None)  # blocks reach the workers as arrays
        d = int(X.shape[1])
        n_outputs, out, class_weight = self._encode_targets(local, client, y, d, first_pass)
        net = _Net(d, n_outputs, out)
        rng = check_random_state(self.random_state)
        if first_pass:
            local.__dict__.pop("_dropout_seed", None)  # a new model draws its own
            spec = local._make_spec(d, n_outputs, out)
            theta = local._init_theta(spec, rng)
        else:
            spec = local._same_network(net)
            theta = local._current_theta().astype(spec.dtype, copy=True)
        dropout = None
        if self.solver != "lbfgs":  # (lbfgs with dropout > 0: refused by _validate_params)
            # drawn where the local fit draws it: after the weights, before the split
            dropout = local._dropout_for_fit(rng, first_pass)
            if dropout is not None and not step:
                raise ValueError(
                    f"dropout={self.dropout!r} needs sync='step' (the local fit's minibatches, "
                    "whose masks are the local fit's); the averaging modes (sync="
                    f"{self.sync!r}) do not draw masks.")
        n = int(X.shape[0])
        starts = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        holdout, train_rows, seed = None, None, 0
        if step:
            # the rest of rng is the local fit's: its early-stopping split, then its shuffles
            train_idx = np.arange(n)
            if self.early_stopping:
                train_idx, holdout = self._local_split(local, client, y, n, n_outputs, starts,
                                                       rng)
            train_rows = _row_map(starts, train_idx)
        else:
            seed = int(rng.randint(np.iinfo(np.int32).max))
            if self.early_stopping and self.solver != "lbfgs":
                holdout = (self.validation_fraction, seed)

        tic = time.perf_counter()
        with _client_blas_serial():
            cluster = self._prepare_blocks(client, local, class_weight, X, y, sample_weight,
                                           holdout)
            try:
                summaries = cluster.start()
                prepared = time.perf_counter() - tic
                W = float(sum(s[1] for s in summaries))
                if not W > 0:
                    raise ValueError("Sample weights must contain at least one non-zero number.")
                engine = ClusterEngine(cluster, spec, summaries, W, seed, local, net, sync,
                                       rng, train_rows, dropout)
                if self.solver == "lbfgs":
                    fit = fit_lbfgs(local, engine, spec, theta, n_outputs, out)
                    local._publish_lbfgs(spec, fit, net, first_pass)
                    info = {"evaluations": fit.evaluations}
                else:
                    fit = fit_stochastic(local, engine, theta, local._new_optimizer(theta),
                                         local._history(first_pass))
                    local._publish_stochastic(spec, fit, net)
                    info = {"epochs": fit.n_iter, "sync": sync, "steps": engine.steps,
                            "round_seconds": engine.round_seconds,
                            "client_seconds": engine.client_seconds}
            finally:
                cluster.close()
        info.update(blocks=len(cluster.parts), rounds=cluster.rounds,
                    bytes_received=cluster.bytes_received, seconds=time.perf_counter() - tic,
                    prepare_seconds=prepared, actor_failures=cluster.fallbacks,
                    actors=cluster.use_actors)

        fitted = {k: v for k, v in local.__dict__.items() if k not in params}
        if feature_names is not None:
            fitted["feature_names_in_"] = feature_names
        fitted["_dask_fit_info"] = info
        keep = {k: v for k, v in self.__dict__.items()
                if k in params or k in _DASK_PARAMS or k.startswith(("_skl", "_callback"))}
        keep.update(fitted)
        self.__dict__ = keep  # published in one assignment, as the local estimators do
        return self

    def _local_split(self, local, client, y, n, n_outputs, starts, rng):
        """The local fit's early-stopping split (``_solvers.validation_split`` on rng,
        stratified as it stratifies: single-output classifiers, on the labels, which
        come to the client for it).  Returns (training rows in the local fit's order,
        {block: its validation rows, from 0})."""
        stratify = None
        if hasattr(local, "_label_binarizer") and n_outputs == 1:
            labels = np.asarray(client.compute(y).result())
            stratify = local._label_binarizer.transform(labels).astype(bool)
        train_idx, val_idx = validation_split(_Rows(n), self.validation_fraction, stratify,
                                              rng)
        val_idx = np.sort(val_idx)
        cut = np.searchsorted(val_idx, starts)
        holdout = {i: val_idx[cut[i]:cut[i + 1]] - starts[i] for i in range(len(starts) - 1)}
        return train_idx, holdout

    def _prepare_blocks(self, client, local, class_weight, X, y, sample_weight, holdout):
        """Persist every non-empty block, prepared, on the worker that computes it.

        holdout: None, (fraction, seed) for every block, or {block: its validation
        rows} (see ``_prepare_part``)."""
        template = self._local_class(**self._local_params())
        template.warm_start = False  # a block need not hold every class
        if "class_weight" in template.get_params():
            template.class_weight = None  # resolved on the client into class_weight
        for key in ("_label_binarizer", "classes_", "n_features_in_"):
            if hasattr(local, key):
                setattr(template, key, getattr(local, key))
        tag = uuid.uuid4().hex[:12]
        template = dask.delayed(template, name=f"fastmlp-template-{tag}")
        xs = X.to_delayed().ravel()
        ys = y.to_delayed().ravel()
        ws = [None] * len(xs) if sample_weight is None else sample_weight.to_delayed().ravel()
        starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
        prepare = dask.delayed(_prepare_part, pure=True)
        blocks = [i for i in range(len(xs)) if X.chunks[0][i] > 0]
        home = _balanced_homes(client, X, blocks)
        # a loose restriction: a recomputation after a worker loss runs anywhere
        parts = [client.compute(prepare(template, class_weight, xs[i], ys[i], ws[i], i,
                                        int(starts[i]),
                                        holdout.get(i) if isinstance(holdout, dict) else holdout,
                                        dask_key_name=f"fastmlp-part-{tag}-{i}"),
                                workers=home.get(i), allow_other_workers=True)
                 for i in blocks]
        return _Cluster(client, parts, [X.chunks[0][i] for i in blocks],
                        {j: home[i][0] for j, i in enumerate(blocks) if i in home})

    # ------------------------------------------------------------------ predict
    def _blockwise(self, X, method):
        """``method`` of the fitted local estimator mapped over X's row blocks (lazy)."""
        check_is_fitted(self, "coefs_")
        names = getattr(self, "feature_names_in_", None)
        if dask.is_dask_collection(X) and hasattr(X, "columns"):
            cols = _get_feature_names(X._meta)
            if names is not None and (cols is None or list(cols) != list(names)):
                raise ValueError(
                    f"The feature names should match those that were passed during fit: "
                    f"fitted with {list(names)}, got {None if cols is None else list(cols)}.")
        X = _as_dask_array(X, "X", lengths=None)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        est = self.to_local()
        est.__dict__.pop("feature_names_in_", None)  # names were checked above
        sample = getattr(est, method)(np.zeros((1, X.shape[1])))
        if sample.ndim == 1:
            return X.map_blocks(_predict_block, est, method, dtype=sample.dtype,
                                chunks=(X.chunks[0],), drop_axis=1, meta=sample[:0])
        return X.map_blocks(_predict_block, est, method, dtype=sample.dtype,
                            chunks=(X.chunks[0], (sample.shape[1],)), meta=sample[:0])

    def predict(self, X):
        """Predict for each row, block by block on the workers.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)
            An in-memory array is predicted locally (a NumPy result).

        Returns
        -------
        y : dask array of shape (n_samples,) or (n_samples, n_outputs)
            Lazy; ``.compute()`` brings it to the client.
        """
        if not dask.is_dask_collection(X):
            return super().predict(X)
        return self._blockwise(X, "predict")

    def to_local(self):
        """The fitted model as a plain local estimator (NumPy arrays only).

        Returns
        -------
        estimator : MLPClassifier or MLPRegressor
            Same parameters (without ``client``) and fitted attributes (copies).
        """
        check_is_fitted(self, "coefs_")
        params = self._local_params()
        state = dict(params)
        for k, v in self.__dict__.items():
            if (k in params or k in _DASK_PARAMS or k in ("_theta", "_dask_fit_info")
                    or k.startswith(("_skl", "_callback"))):
                continue
            state[k] = copy.deepcopy(v)
        local = object.__new__(self._local_class)
        local.__setstate__(state)
        return local

    def _score_client(self):
        return _resolve_client(self.client, type(self).__name__)

    @staticmethod
    def _score_inputs(pred, y, sample_weight):
        y = _as_dask_array(y, "y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if not any(np.isnan(c) for c in pred.chunks[0]):
            y = y.rechunk({0: pred.chunks[0]})
        w = None
        if sample_weight is not None:
            w = _as_dask_array(sample_weight, "sample_weight")
            if not any(np.isnan(c) for c in pred.chunks[0]):
                w = w.rechunk(pred.chunks[0])
        return y, w


_NOTES = """
    Notes
    -----
    ``solver="lbfgs"`` is exact: the same objective, gradient and L-BFGS-B
    iterates as the local estimator on the concatenated rows (to rounding:
    the per-block sums add up in another order, the same order wherever
    the blocks live).  Each evaluation sends the parameter vector to every
    worker once and returns one partial (loss, gradient) sum per worker to
    the client.

    ``solver="sgd"`` / ``"adam"`` with ``sync="step"`` (the default) is
    synchronous data-parallel training, as PyTorch's DistributedDataParallel:
    every minibatch is the local fit's (the same shuffle drawn from the same
    ``random_state``, the same ``batch_size`` boundaries over the rows in
    block order); each block computes its share of the batch's loss and
    gradient sums, the shares are added along the block tree, and the client
    takes the step (SGD with momentum / Nesterov, Adam, the L2 term and the
    learning-rate schedules) exactly as the local compiled epoch does.  With
    ``dtype="float64"`` the fit equals the local fit on the concatenated rows
    to rounding (``loss_curve_`` to ~1e-10, the same ``n_iter_``), early
    stopping included: the validation split is the local fit's (stratified
    for a single-output classifier, whose labels then come to the client
    once).  Its cost: one round trip per minibatch, carrying the parameters
    to each worker and one gradient-sized partial sum back from each worker
    (``ceil(rows / batch_size)`` round trips per epoch; on a 2-worker
    LocalCluster on a shared 2-core machine, 4-10 ms of dask messaging each
    at best, ``benchmarks/RESULTS.md``); it is faster than the local fit
    only where a minibatch's compute is large against that (wide networks,
    large batches, workers with cores of their own).

    ``sync="epoch"`` is parameter averaging ("local SGD"; Zinkevich et al.
    2010, *Parallelized Stochastic Gradient Descent*; McMahan et al. 2017,
    *Communication-Efficient Learning of Deep Networks from Decentralized
    Data*): every epoch each block of rows trains its own copy of the
    network for one epoch over its rows (minibatches of ``batch_size``, its
    own shuffle drawn from ``random_state``, the epoch and the block's
    index), all copies starting from the same parameters and optimizer
    state, and the copies' parameters, optimizer moments and Adam step
    counts are averaged weighted by rows: one round trip per epoch.  This is
    not the same trajectory as one-machine training: an epoch takes fewer,
    averaged steps, so it may need more epochs or a larger
    ``learning_rate_init``; fewer, larger blocks average less.  An int
    ``sync=K`` averages the same way after every K minibatches of each block
    (``ceil(batches of the largest block / K)`` round trips per epoch).
    Averaged fits are reproducible for a fixed ``random_state`` and
    chunking, wherever the blocks live; their ``early_stopping`` holds out a
    random ``validation_fraction`` of each block's rows (not stratified).
    In every mode ``tol``, ``n_iter_no_change``, the learning-rate schedules
    and ``verbose`` work per epoch as in the local estimator.
    scikit-learn callbacks (``set_callbacks``) are not called.

    The prepared blocks are dask futures whose graph goes back to the input
    collections, so a worker lost during a fit costs recomputing its blocks
    and repeating the current round; the result is unchanged.  Rounds go
    through one dask actor per worker (a call from the client straight to
    the worker, which runs it in the worker's actor thread, beside its task
    threads); where the client cannot reach the workers directly, the rounds
    run as ordinary tasks.

    ``predict`` / ``predict_proba`` map the fitted local estimator over the
    blocks of X and return lazy dask arrays; ``score`` reduces on the
    cluster.  In-memory (NumPy) inputs to the prediction methods are
    handled locally.  ``_dask_fit_info`` records the last fit's rounds, the
    bytes the client received, the time spent preparing the blocks and
    whether the actors were used; for sgd / adam also ``sync``, its
    training rounds (``steps``) and, step-synchronous, the seconds spent in
    the rounds (``round_seconds``) and in the client's steps
    (``client_seconds``).
"""


class DaskMLPClassifier(_DaskMLPMixin, MLPClassifier):
    __doc__ = """Data-parallel :class:`fastmlp.MLPClassifier` on a dask.distributed cluster.

    The parameters are :class:`fastmlp.MLPClassifier`'s plus ``client``; ``fit``
    takes dask arrays or DataFrames chunked along rows, and every block is
    trained where it lives.  The fitted attributes are the local
    estimator's (NumPy arrays); ``to_local()`` returns the plain estimator.

    Parameters
    ----------
    client : distributed.Client or None, default=None
        The cluster to train on; None means the current client
        (``distributed.get_client()``).  Not pickled with the estimator.
    sync : {"step", "epoch"} or int >= 1, default="step"
        How ``solver="sgd"`` / ``"adam"`` keep the blocks' work together
        (see the Notes; lbfgs is always exact).  ``"step"``: synchronous
        minibatch steps, the local fit's model (one round trip per minibatch);
        ``"epoch"``: parameter averaging once per epoch (one round trip per
        epoch, another model); an int K: averaging after every K local
        minibatch steps of each block (in between).  ``dropout`` > 0 needs
        ``"step"`` (each block draws the local fit's masks for its rows).
    hidden_layer_sizes, activation, solver, alpha, ... :
        As in :class:`fastmlp.MLPClassifier`.

    Attributes
    ----------
    classes_, coefs_, intercepts_, loss_, n_iter_, n_features_in_, ... :
        As in :class:`fastmlp.MLPClassifier`.
""" + _NOTES + """
    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import DaskMLPClassifier
    >>> cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                        dashboard_address=None)
    >>> client = Client(cluster)
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.normal(size=(400, 4)), chunks=(100, 4))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> clf = DaskMLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=50,
    ...                         random_state=0, backend="cpu").fit(X, y)
    >>> clf.predict(X)  # doctest: +ELLIPSIS
    dask.array<_predict_block, shape=(400,), ...>
    >>> bool(clf.score(X, y) > 0.9)
    True
    >>> clf.to_local()  # doctest: +ELLIPSIS
    MLPClassifier(...)
    >>> client.close(); cluster.close()
"""

    _local_class = MLPClassifier

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        class_weight=None,
        dropout=0.0,
        client=None,
        sync="step",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, dtype=dtype, negative_slope=negative_slope,
            prelu_init=prelu_init, elu_alpha=elu_alpha, maxout_pieces=maxout_pieces,
            class_weight=class_weight, dropout=dropout,
        )
        self.client = client
        self.sync = sync

    def _encode_targets(self, local, client, y, n_features, first_pass):
        """Fix the label encoding on ``local`` from y's unique labels (computed on the
        cluster); returns (n_outputs, output activation, weight per class or None)."""
        labels, counts = client.compute(_label_counts(y)).result()
        if y.ndim == 1:
            shown = labels
        else:
            counts = None
            if not np.all(np.isin(labels, [0, 1])):
                raise ValueError(
                    "Unknown label type: 'multiclass-multioutput'. MLPClassifier needs class "
                    "labels (binary, multiclass or a multilabel indicator matrix).")
            k = y.shape[1]
            shown = np.vstack([np.eye(k), np.zeros((1, k))]).astype(y.dtype)
        _, targets, out = local._prepare_targets(np.zeros((shown.shape[0], n_features)), shown,
                                                 first_pass, False, None)
        class_weight = None
        if self.class_weight is not None:
            if y.ndim != 1:
                raise ValueError("class_weight is not supported for multilabel targets.")
            if isinstance(self.class_weight, str) and self.class_weight == "balanced":
                # compute_sample_weight("balanced"): n / (n_classes * count), over all rows
                class_weight = y.shape[0] / (len(labels) * counts.astype(np.float64))
            else:  # validated as the local estimator does; one weight per class
                class_weight = local._combine_weights(None, local.classes_)
        return targets["n_outputs"], out, class_weight

    def predict_proba(self, X):
        """Class probabilities, block by block on the workers.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)

        Returns
        -------
        proba : dask array of shape (n_samples, n_classes)
            Columns ordered as ``classes_``.
        """
        if not dask.is_dask_collection(X):
            return super().predict_proba(X)
        return self._blockwise(X, "predict_proba")

    def predict_log_proba(self, X):
        """Log of ``predict_proba(X)``, block by block on the workers.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)

        Returns
        -------
        log_proba : dask array of shape (n_samples, n_classes)
        """
        if not dask.is_dask_collection(X):
            return super().predict_log_proba(X)
        return self._blockwise(X, "predict_log_proba")

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (subset accuracy for multilabel), reduced on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)
        y : dask array of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : dask array of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if not dask.is_dask_collection(X):
            return super().score(X, y, sample_weight=sample_weight)
        pred = self.predict(X)
        y, w = self._score_inputs(pred, y, sample_weight)
        right = pred == y
        if right.ndim == 2:
            right = right.all(axis=1)
        acc = da.average(right.astype(np.float64), weights=w)
        return float(self._score_client().compute(acc).result())


class DaskMLPRegressor(_DaskMLPMixin, MLPRegressor):
    __doc__ = """Data-parallel :class:`fastmlp.MLPRegressor` on a dask.distributed cluster.

    The parameters are :class:`fastmlp.MLPRegressor`'s plus ``client``; see
    :class:`DaskMLPClassifier` for how a fit runs.

    Parameters
    ----------
    client : distributed.Client or None, default=None
        The cluster to train on; None means the current client.
    sync : {"step", "epoch"} or int >= 1, default="step"
        See :class:`DaskMLPClassifier`.
    loss, hidden_layer_sizes, activation, solver, ... :
        As in :class:`fastmlp.MLPRegressor`.

    Attributes
    ----------
    coefs_, intercepts_, loss_, n_iter_, n_features_in_, ... :
        As in :class:`fastmlp.MLPRegressor`.
""" + _NOTES + """
    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import DaskMLPRegressor
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.normal(size=(10_000, 5)), chunks=(2_500, 5))
    >>> y = X @ np.arange(5.0)
    >>> reg = DaskMLPRegressor(hidden_layer_sizes=(32,), solver="adam", max_iter=30,
    ...                        random_state=0).fit(X, y)  # doctest: +SKIP
    >>> reg.predict(X).compute()[:3]  # doctest: +SKIP
    array([...])
    >>> reg.to_local().predict(X[:3].compute())  # doctest: +SKIP
    array([...])
"""

    _local_class = MLPRegressor

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="auto",
        dtype="float32",
        negative_slope=0.01,
        prelu_init=0.25,
        elu_alpha=1.0,
        maxout_pieces=2,
        dropout=0.0,
        client=None,
        sync="step",
    ):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, dtype=dtype, negative_slope=negative_slope,
            prelu_init=prelu_init, elu_alpha=elu_alpha, maxout_pieces=maxout_pieces,
            dropout=dropout,
        )
        self.client = client
        self.sync = sync

    def _encode_targets(self, local, client, y, n_features, first_pass):
        """Set n_features_in_ on ``local``; returns (n_outputs, output activation, None)."""
        shown = np.zeros((1,) if y.ndim == 1 else (1, y.shape[1]))
        _, targets, out = local._prepare_targets(np.zeros((1, n_features)), shown, first_pass,
                                                 False, None)
        return targets["n_outputs"], out, None

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 (uniform average over outputs), on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)
        y : dask array of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : dask array of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if not dask.is_dask_collection(X):
            return super().score(X, y, sample_weight=sample_weight)
        pred = self.predict(X)
        y, w = self._score_inputs(pred, y, sample_weight)
        y = y.astype(np.float64)
        if y.ndim == 1:
            y, pred = y[:, None], pred[:, None]
        w = da.ones_like(y[:, 0]) if w is None else w.astype(np.float64)
        mean = (w[:, None] * y).sum(axis=0) / w.sum()
        ss_res = (w[:, None] * (y - pred) ** 2).sum(axis=0)
        ss_tot = (w[:, None] * (y - mean) ** 2).sum(axis=0)
        ss_res, ss_tot = self._score_client().gather(
            self._score_client().compute([ss_res, ss_tot]))
        return _r2(np.asarray(ss_res, dtype=np.float64), np.asarray(ss_tot, dtype=np.float64))
