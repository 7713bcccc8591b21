"""ONNX export of fitted fastmlp estimators (``pip install "fastmlp[onnx]"``).

:func:`to_onnx` turns a fitted :class:`~fastmlp.MLPClassifier` or
:class:`~fastmlp.MLPRegressor` into an ``onnx.ModelProto`` that onnxruntime
(or any ONNX runtime) serves without Python.  Importing this module also
registers fastmlp's estimators with skl2onnx, so ``skl2onnx.to_onnx(est, X)``
and scikit-learn pipelines that contain a fastmlp estimator convert as well.

The graph computes exactly what the estimator's ``predict`` computes, in the
estimator's ``dtype`` (a float64 model gives double tensors):

- each layer is ``MatMul`` + ``Add``; each hidden activation maps to standard
  operators (``ACTIVATIONS`` below): identity, logistic (= sigmoid), tanh,
  relu, leaky_relu (slope ``negative_slope``), prelu (the learned per-unit
  slopes ``prelu_alphas_[l]``), elu (``elu_alpha``) and maxout (``Reshape`` to
  (n, units, pieces) + ``ReduceMax``; piece p of unit j is column
  ``j * pieces + p`` of ``coefs_[l]``).  onnxruntime's CPU provider has no
  double kernel for ``LeakyRelu``, ``PRelu`` or ``Elu``; in a float64 graph
  they are written with ``Greater``/``Where``/``Mul``/``Exp``.
- outputs follow skl2onnx's conventions: a classifier gives ``label`` and
  ``probabilities`` (behind a ZipMap, ``output_label`` and
  ``output_probability``, unless ``zipmap=False``); a regressor gives
  ``variable`` of shape (n, n_outputs).  Labels are decided on the logits, as
  ``predict`` decides them (argmax for softmax, logit > 0 for logistic); a
  classifier fitted on a single class labels every row with it and has the
  two probability columns [1 - p, p] of its ``predict_proba``.
"""

import numbers

import numpy as np

try:
    import onnx
    from onnx import TensorProto, numpy_helper
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )
except ImportError as exc:  # pragma: no cover - exercised with the packages hidden
    raise ImportError(
        "fastmlp.onnx needs the onnx and skl2onnx packages (and onnxruntime to run "
        'the exported models): pip install "fastmlp[onnx]"'
    ) from exc

from sklearn.utils.validation import check_is_fitted

from ._estimator import MLPClassifier, MLPRegressor
from ._registry import resolve_activation

__all__ = ["to_onnx"]

MIN_OPSET = 13  # Softmax/ReduceMax/Gather semantics used below are those of opset >= 13
_ZIPMAP_CHOICES = (True, False, "columns")
_PROTO = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
_TENSOR_TYPE = {np.dtype(np.float32): FloatTensorType, np.dtype(np.float64): DoubleTensorType}


# --------------------------------------------------------------------------- graph writing
class _Writer:
    """Adds initializers and nodes to a skl2onnx container under unique names.

    ``dtype`` is the model's float dtype; ``native`` says whether onnxruntime
    has CPU kernels of LeakyRelu/PRelu/Elu for it (float32 only).
    """

    def __init__(self, scope, container, dtype):
        self.scope = scope
        self.container = container
        self.dtype = np.dtype(dtype)
        self.proto = _PROTO[self.dtype]
        self.native = self.dtype == np.float32
        self.opset = container.target_opset_onnx
        self._scalars = {}

    def scalar(self, hint, value):
        """A 0-d initializer in the model dtype, written once per value."""
        key = float(value)
        if key not in self._scalars:
            self._scalars[key] = self.const(hint, key)
        return self._scalars[key]

    def const(self, hint, value, dtype=None):
        """An initializer holding ``value`` (in the model dtype unless ``dtype``)."""
        name = self.scope.get_unique_variable_name(hint)
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        if arr.dtype.kind in "US":
            self.container.add_initializer(
                name, TensorProto.STRING, list(arr.shape), [s.encode("utf-8") for s in arr.ravel()])
        else:
            tensor = numpy_helper.from_array(np.ascontiguousarray(arr), name)
            self.container.add_initializer(name, tensor.data_type, list(arr.shape), tensor)
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        """One node; returns the name of its output."""
        out = out or self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(op_type, list(inputs), out,
                                name=self.scope.get_unique_operator_name(op_type), **attrs)
        return out

    def cast(self, name, proto, out=None):
        return self.op("Cast", [name], out, to=proto)

    def where_positive(self, z, otherwise):
        """z where z > 0, else ``otherwise`` (the kernels' ``z if z > 0 else ...``)."""
        return self.op("Where", [self.op("Greater", [z, self.scalar("zero", 0.0)]), z, otherwise])


# Hidden activations: name -> f(writer, Z, est, l) -> H, for hidden layer l.
def _identity(w, z, est, l):
    return z


def _logistic(w, z, est, l):
    return w.op("Sigmoid", [z])


def _tanh(w, z, est, l):
    return w.op("Tanh", [z])


def _relu(w, z, est, l):
    return w.op("Relu", [z])


def _leaky_relu(w, z, est, l):
    slope = float(est.negative_slope)
    if w.native:
        return w.op("LeakyRelu", [z], alpha=slope)
    return w.where_positive(z, w.op("Mul", [z, w.scalar("slope", slope)]))


def _prelu(w, z, est, l):
    slopes = w.const("prelu_alpha", np.ravel(est.prelu_alphas_[l]))
    if w.native:
        return w.op("PRelu", [z, slopes])
    return w.where_positive(z, w.op("Mul", [z, slopes]))


def _elu(w, z, est, l):
    # alpha * (exp(z) - 1) for z <= 0; exp of min(z, 0) so the unused branch never overflows
    alpha = float(est.elu_alpha)
    if w.native:
        return w.op("Elu", [z], alpha=alpha)
    em1 = w.op("Sub", [w.op("Exp", [w.op("Min", [z, w.scalar("zero", 0.0)])]), w.scalar("one", 1.0)])
    return w.where_positive(z, w.op("Mul", [em1, w.scalar("alpha", alpha)]))


def _maxout(w, z, est, l):
    pieces = int(est.maxout_pieces)
    units = est.coefs_[l].shape[1] // pieces
    grouped = w.op("Reshape", [z, w.const("maxout_shape", [-1, units, pieces], np.int64)])
    if w.opset >= 18:  # axes became an input in opset 18
        return w.op("ReduceMax", [grouped, w.const("axes", [2], np.int64)], keepdims=0)
    return w.op("ReduceMax", [grouped], axes=[2], keepdims=0)


ACTIVATIONS = {
    "identity": _identity,
    "logistic": _logistic,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "elu": _elu,
    "maxout": _maxout,
}


def _check_network(est, activation):
    """Raise a ValueError naming what does not fit together in the fitted arrays."""
    coefs, intercepts = est.coefs_, est.intercepts_
    if len(coefs) != len(intercepts) or not coefs:
        raise ValueError("coefs_ and intercepts_ must hold one array per layer each.")
    pieces = int(est.maxout_pieces) if activation == "maxout" else 1
    width = est.n_features_in_
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        hidden = l < len(coefs) - 1
        if np.ndim(W) != 2 or np.shape(W)[0] != width or np.shape(b) != (np.shape(W)[1],):
            raise ValueError(f"coefs_[{l}] / intercepts_[{l}] have shapes {np.shape(W)} / "
                             f"{np.shape(b)}, which do not continue a {width}-wide layer.")
        width = np.shape(W)[1] // pieces if hidden else np.shape(W)[1]
        if hidden and np.shape(W)[1] != width * pieces:
            raise ValueError(f"coefs_[{l}] has {np.shape(W)[1]} columns, not a multiple of "
                             f"maxout_pieces={pieces}.")
        if hidden and activation == "prelu" and np.shape(est.prelu_alphas_[l]) != (width,):
            raise ValueError(f"prelu_alphas_[{l}] must have shape {(width,)}, "
                             f"got {np.shape(est.prelu_alphas_[l])}.")
    if width != est.n_outputs_:
        raise ValueError(f"the last layer has {width} outputs but n_outputs_ is {est.n_outputs_}.")


class _AsFitted:
    """The estimator as it was fitted: activation, slope, alpha and pieces come from
    the fitted network (``_spec``), not from parameters changed after the fit."""

    def __init__(self, est):
        self._est = est
        spec = getattr(est, "_spec", None)
        self.activation = spec.activation if spec is not None else est.activation
        self.negative_slope = spec.param if spec is not None and spec.activation == "leaky_relu" \
            else est.negative_slope
        self.elu_alpha = spec.param if spec is not None and spec.activation == "elu" \
            else est.elu_alpha
        self.maxout_pieces = spec.pieces if spec is not None and spec.activation == "maxout" \
            else est.maxout_pieces

    def __getattr__(self, name):
        return getattr(self._est, name)


def _logits(w, est, x):
    """The forward pass up to the output layer's pre-activation O."""
    est = _AsFitted(est)
    activation = resolve_activation(est.activation)
    _check_network(est, activation)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} has no ONNX graph in fastmlp.onnx yet; "
                         f"exportable: {sorted(ACTIVATIONS)}.")
    act = ACTIVATIONS[activation]
    h = x
    last = len(est.coefs_) - 1
    for l, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = w.op("Add", [w.op("MatMul", [h, w.const("coef", W)]), w.const("intercept", b)])
        h = act(w, z, est, l) if l < last else z
    return h


# --------------------------------------------------------------------------- labels and types
def _label_classes(est, nocl=False):
    """classes_ as skl2onnx labels them: int64 for integer, bool or whole-number float
    classes, str otherwise, positions 0..k-1 with skl2onnx's option nocl=True;
    returns (array, tensor type class)."""
    classes = np.arange(len(est.classes_)) if nocl else np.asarray(est.classes_)
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64), Int64TensorType
    if classes.dtype.kind == "f":
        if not np.all(classes == np.round(classes)):
            raise ValueError(f"classes_ {classes.tolist()} are not whole numbers; ONNX class "
                             "labels must be integers or strings (refit with int or str labels).")
        return classes.astype(np.int64), Int64TensorType
    if classes.dtype.kind in "US" or all(isinstance(c, str) for c in classes):
        return classes.astype(str), StringTensorType
    raise ValueError(f"classes_ of dtype {classes.dtype} cannot be ONNX labels; "
                     "use integer or string labels.")


def _float_type(var_type):
    """The float type of the outputs for an input of ``var_type``: double for a double
    input, float for float, int64 and boolean inputs (which the graph casts at its
    input, as skl2onnx's own MLP converter does)."""
    if isinstance(var_type, DoubleTensorType):
        return DoubleTensorType
    if isinstance(var_type, (FloatTensorType, Int64TensorType, BooleanTensorType)):
        return FloatTensorType
    raise TypeError(f"fastmlp's ONNX converter takes float, double, int64 or boolean input "
                    f"tensors, got {type(var_type).__name__}.")


def _model_dtype(est):
    return np.dtype(np.asarray(est.coefs_[0]).dtype)


def _check_input(operator):
    if len(operator.inputs) != 1:
        raise ValueError(f"a fastmlp estimator takes one input tensor, got {len(operator.inputs)}.")
    inp = operator.inputs[0].type
    kind = _float_type(inp)
    shape = getattr(inp, "shape", None)
    est = operator.raw_operator
    if shape is not None and len(shape) == 2 and isinstance(shape[1], numbers.Integral) \
            and shape[1] != est.n_features_in_:
        raise ValueError(f"the input has {shape[1]} columns but the estimator was fitted "
                         f"on {est.n_features_in_} features.")
    return kind, operator.inputs[0].get_first_dimension()


# --------------------------------------------------------------------------- skl2onnx hooks
def _classifier_shapes(operator):
    """Shape calculator: label (n,), or (n, n_labels) for multilabel; probabilities
    (n, n_classes)."""
    est = operator.raw_operator
    check_is_fitted(est)
    kind, n = _check_input(operator)
    if len(operator.outputs) != 2:
        raise ValueError(f"a classifier has two outputs (label, probabilities), "
                         f"got {len(operator.outputs)}.")
    multilabel = est.out_activation_ == "logistic" and est.n_outputs_ > 1
    n_columns = len(est.classes_)
    if not multilabel and n_columns == 1:
        # fitted on one class: predict_proba has two columns, [1 - p, p], as in scikit-learn
        options = operator.scope_inst.get_options(est, dict(zipmap=True))
        if options["zipmap"] is not False:
            raise ValueError(f"a classifier fitted on a single class ({est.classes_.tolist()}) "
                             "has two probability columns for one class, which ZipMap cannot "
                             "label; convert it with zipmap=False.")
        n_columns = 2
    if multilabel:
        operator.outputs[0].type = Int64TensorType([n, est.n_outputs_])
    else:
        nocl = operator.scope_inst.get_options(est, dict(nocl=False))["nocl"]
        _, label_type = _label_classes(est, nocl)
        operator.outputs[0].type = label_type([n])
    operator.outputs[1].type = kind([n, n_columns])


def _regressor_shapes(operator):
    """Shape calculator: variable (n, n_outputs)."""
    est = operator.raw_operator
    check_is_fitted(est)
    kind, n = _check_input(operator)
    if len(operator.outputs) != 1:
        raise ValueError(f"a regressor has one output, got {len(operator.outputs)}.")
    operator.outputs[0].type = kind([n, est.n_outputs_])


def _begin(scope, operator, container):
    """Writer in the model dtype and the input cast to it."""
    est = operator.raw_operator
    check_is_fitted(est)
    if container.target_opset_onnx < MIN_OPSET:
        raise ValueError(f"fastmlp exports need target_opset >= {MIN_OPSET}, "
                         f"got {container.target_opset_onnx}.")
    w = _Writer(scope, container, _model_dtype(est))
    x = operator.inputs[0].full_name
    if type(operator.inputs[0].type) is not _TENSOR_TYPE[w.dtype]:  # noqa: E721 (exact)
        x = w.cast(x, w.proto)  # a float, double, int64 or boolean input: the model's dtype
    return w, x


def _finish(w, name, var):
    """Write tensor ``name`` (model dtype) to output variable ``var``, cast to its type."""
    proto = _PROTO[np.dtype(np.float64 if isinstance(var.type, DoubleTensorType) else np.float32)]
    if proto == w.proto:
        w.op("Identity", [name], var.full_name)
    else:
        w.cast(name, proto, var.full_name)


def _convert_classifier(scope, operator, container):
    est = operator.raw_operator
    w, x = _begin(scope, operator, container)
    options = container.get_options(est, dict(zipmap=True, nocl=False))
    if options["zipmap"] is True and isinstance(operator.outputs[1].type, DoubleTensorType):
        raise ValueError("ZipMap (ai.onnx.ml) takes float32 probabilities only; convert with "
                         "zipmap=False or zipmap='columns' (skl2onnx: options={id(est): "
                         "{'zipmap': False}}), or give the graph a float32 input.")
    label_var, proba_var = operator.outputs
    o = _logits(w, est, x)
    out = est.out_activation_
    if out == "softmax":
        proba = w.op("Softmax", [o], axis=1)
        index = w.op("ArgMax", [o], axis=1, keepdims=0)
    elif out == "logistic" and est.n_outputs_ == 1:
        p = w.op("Sigmoid", [o])
        proba = w.op("Concat", [w.op("Sub", [w.scalar("one", 1.0), p]), p], axis=1)
        positive = w.cast(w.op("Greater", [o, w.scalar("zero", 0.0)]), TensorProto.INT64)
        index = w.op("Reshape", [positive, w.const("flat", [-1], np.int64)])
    elif out == "logistic":
        proba = w.op("Sigmoid", [o])
        index = None
        w.cast(w.op("Greater", [o, w.scalar("zero", 0.0)]), TensorProto.INT64, label_var.full_name)
    else:
        raise ValueError(f"out_activation_={out!r} is not a classifier output "
                         "(softmax or logistic).")
    if index is not None:
        classes, _ = _label_classes(est, options["nocl"])
        if len(classes) == 1:  # single class: predict gives it whatever the logit
            classes = np.repeat(classes, 2)
        w.op("Gather", [w.const("classes", classes, classes.dtype), index], label_var.full_name,
             axis=0)
    _finish(w, proba, proba_var)


_REGRESSION_OUTPUTS = {"identity": None, "exp": "Exp"}


def _convert_regressor(scope, operator, container):
    est = operator.raw_operator
    w, x = _begin(scope, operator, container)
    out = est.out_activation_
    if out not in _REGRESSION_OUTPUTS:
        raise ValueError(f"out_activation_={out!r} is not a regressor output (identity or exp).")
    o = _logits(w, est, x)
    if _REGRESSION_OUTPUTS[out]:
        o = w.op(_REGRESSION_OUTPUTS[out], [o])
    _finish(w, o, operator.outputs[0])


update_registered_converter(
    MLPClassifier, "FastmlpMLPClassifier", _classifier_shapes, _convert_classifier,
    options={"zipmap": list(_ZIPMAP_CHOICES), "nocl": [False, True]},
)
update_registered_converter(
    MLPRegressor, "FastmlpMLPRegressor", _regressor_shapes, _convert_regressor,
)


# --------------------------------------------------------------------------- public function
def to_onnx(estimator, *, target_opset=None, name=None, zipmap=True):
    """Export a fitted fastmlp estimator as an ONNX model.

    The graph takes one input ``X`` of shape (n, n_features_in_) in the
    estimator's dtype (float for ``dtype="float32"``, double for
    ``"float64"``) and computes what ``predict`` / ``predict_proba`` compute.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    target_opset : int, default=None
        Opset of the default ONNX domain (>= 13); None takes the newest one
        skl2onnx has tested.
    name : str, default=None
        Name of the ONNX graph; None gives "fastmlp_<class name>".
    zipmap : True, False or "columns", default=True
        Classifiers only, as in skl2onnx: True gives outputs ``output_label``
        and ``output_probability`` (a list of {class: probability} dicts);
        False gives ``label`` and ``probabilities`` (an (n, n_classes)
        tensor); "columns" one output per class.  ZipMap holds float32 only,
        so a float64 classifier needs False or "columns"; a classifier fitted
        on a single class needs False.

    Returns
    -------
    model : onnx.ModelProto
        A regressor's output is ``variable``, of shape (n, n_outputs).

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_iris
    >>> from fastmlp import MLPClassifier
    >>> from fastmlp.onnx import to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # a few epochs only: not converged
    ...     clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0,
    ...                         backend="cpu").fit(X, y)
    >>> model = to_onnx(clf, zipmap=False)
    >>> sess = ort.InferenceSession(model.SerializeToString(),
    ...                             providers=["CPUExecutionProvider"])
    >>> [o.name for o in sess.get_outputs()]
    ['label', 'probabilities']
    >>> label, proba = sess.run(None, {"X": X[:5].astype(np.float32)})
    >>> bool((label == clf.predict(X[:5])).all())
    True
    >>> bool(np.allclose(proba, clf.predict_proba(X[:5]), atol=1e-5))
    True
    """
    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError("to_onnx exports fastmlp's MLPClassifier and MLPRegressor, "
                        f"got {type(estimator).__name__}.")
    check_is_fitted(estimator)
    if target_opset is not None:
        if isinstance(target_opset, bool) or not isinstance(target_opset, numbers.Integral):
            raise TypeError(f"target_opset must be an int or None, got {target_opset!r}.")
        if target_opset < MIN_OPSET:
            raise ValueError(f"target_opset must be >= {MIN_OPSET}, got {target_opset}.")
        target_opset = int(target_opset)
    if name is None:
        name = f"fastmlp_{type(estimator).__name__}"
    elif not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}.")
    if isinstance(zipmap, (bool, np.bool_)):
        zipmap = bool(zipmap)
    elif not (isinstance(zipmap, str) and zipmap == "columns"):
        raise ValueError(f"zipmap must be True, False or 'columns', got {zipmap!r}.")
    dtype = _model_dtype(estimator)
    if dtype not in _TENSOR_TYPE:
        raise ValueError(f"coefs_ have dtype {dtype}; fastmlp exports float32 and float64 models.")
    if isinstance(estimator, MLPClassifier):
        if zipmap is True and dtype == np.float64:
            raise ValueError("ZipMap (ai.onnx.ml) takes float32 probabilities only; export a "
                             "float64 classifier with zipmap=False or zipmap='columns'.")
        options = {id(estimator): {"zipmap": zipmap}}
    else:
        options = None
    initial_types = [("X", _TENSOR_TYPE[dtype]([None, estimator.n_features_in_]))]
    return convert_sklearn(estimator, name=name, initial_types=initial_types,
                           target_opset=target_opset, options=options)
