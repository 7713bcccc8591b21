"""fastmlp.onnx: exported graphs run by onnxruntime against the estimators, on fresh inputs.

Every hidden activation x every output (binary, multiclass, multilabel, regression,
Poisson, multi-output regression) x both dtypes: probabilities / predictions within
1e-5 (float32) or 1e-10 (float64), identical labels.
"""

import importlib
import sys
import warnings
import zlib
from functools import lru_cache

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import onnx  # noqa: E402  (the test extra installs onnx, onnxruntime, skl2onnx)
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402

import fastmlp.onnx as fonnx  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp.onnx import to_onnx  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu",
               "maxout"]
TASKS = ["binary", "multiclass", "multilabel", "regression", "poisson", "multioutput"]
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
N_FEATURES = 5
# Parameters away from their defaults, so the export must read them.
NET = dict(hidden_layer_sizes=(7, 6), max_iter=6, backend="cpu", negative_slope=0.2,
           elu_alpha=0.7, maxout_pieces=3, prelu_init=0.3)


def _seed(*key):
    return zlib.crc32(repr(key).encode())


def _targets(task, rng, X):
    n = X.shape[0]
    if task == "binary":
        return rng.choice(np.array(["no", "yes"]), n)  # string labels
    if task == "multiclass":
        return rng.choice(np.array([3, 7, 11, 20]), n)  # integer labels, not 0..k-1
    if task == "multilabel":
        Y = (rng.random((n, 3)) < 0.5).astype(int)
        Y[:2] = [[0, 0, 0], [1, 1, 1]]  # every column has both values
        return Y
    if task == "poisson":
        return rng.poisson(np.exp(0.4 * X[:, 0])).astype(float)
    if task == "multioutput":
        return X @ rng.normal(size=(N_FEATURES, 3))
    return X @ rng.normal(size=N_FEATURES) + 0.1 * rng.normal(size=n)


@lru_cache(maxsize=None)
def fitted(activation, task, dtype):
    """A small fitted estimator (cached for the module: each is fitted once)."""
    rng = np.random.default_rng(_seed(activation, task, dtype))
    X = rng.normal(size=(80, N_FEATURES))
    y = _targets(task, rng, X)
    if task in ("regression", "poisson", "multioutput"):
        est = MLPRegressor(loss="poisson" if task == "poisson" else "squared_error",
                           activation=activation, dtype=dtype, random_state=0,
                           learning_rate_init=0.01 if task == "poisson" else 0.05, **NET)
    else:
        est = MLPClassifier(activation=activation, dtype=dtype, random_state=0,
                            learning_rate_init=0.05, **NET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def fresh_X(est, rng, n=60, dtype=None):
    """New rows, wider than the training data so every activation sees both signs."""
    X = 2.0 * rng.normal(size=(n, est.n_features_in_))
    return X.astype(dtype or est.coefs_[0].dtype)


def check_outputs(est, X, outs, tol):
    """The graph's outputs equal predict / predict_proba (labels exactly)."""
    if isinstance(est, MLPClassifier):
        label, proba = outs
        expected = est.predict_proba(X)  # (n, n_classes); (n, 2) for a single class
        assert proba.dtype == X.dtype and proba.shape == expected.shape
        assert_allclose(proba, expected, **tol)
        assert_array_equal(label, est.predict(X))
    else:
        (pred,) = outs
        assert pred.dtype == X.dtype and pred.shape == (X.shape[0], est.n_outputs_)
        assert_allclose(pred, est.predict(X).reshape(X.shape[0], -1), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnxruntime_matches_the_estimator(activation, task, dtype, rng):
    est = fitted(activation, task, dtype)
    if activation == "prelu":  # the slopes were learned per unit, not left at prelu_init
        assert all(np.ptp(a) > 1e-4 for a in est.prelu_alphas_)
    model = to_onnx(est, zipmap=False)
    X = fresh_X(est, rng)
    check_outputs(est, X, session(model).run(None, {"X": X}), TOL[dtype])


# The ops each activation becomes: float32 uses onnxruntime's fused kernels, float64
# (which has no double LeakyRelu/PRelu/Elu kernel) the decomposition.
EXPECTED_OPS = {
    ("leaky_relu", "float32"): {"LeakyRelu"}, ("leaky_relu", "float64"): {"Where"},
    ("prelu", "float32"): {"PRelu"}, ("prelu", "float64"): {"Where"},
    ("elu", "float32"): {"Elu"}, ("elu", "float64"): {"Where", "Exp"},
    ("maxout", "float32"): {"Reshape", "ReduceMax"}, ("maxout", "float64"): {"ReduceMax"},
    ("relu", "float64"): {"Relu"}, ("tanh", "float64"): {"Tanh"},
    ("logistic", "float64"): {"Sigmoid"},
}


@pytest.mark.parametrize("activation,dtype", sorted(EXPECTED_OPS))
def test_graph_is_in_the_model_dtype_with_standard_ops(activation, dtype):
    model = to_onnx(fitted(activation, "multiclass", dtype), zipmap=False)
    onnx.checker.check_model(model)
    proto = onnx.TensorProto.DOUBLE if dtype == "float64" else onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == proto
    floats = {i.data_type for i in model.graph.initializer} & {onnx.TensorProto.FLOAT,
                                                               onnx.TensorProto.DOUBLE}
    assert floats == {proto}
    ops = {n.op_type for n in model.graph.node}
    assert EXPECTED_OPS[activation, dtype] <= ops
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    if dtype == "float64":
        assert not ops & {"LeakyRelu", "PRelu", "Elu"}


@pytest.mark.parametrize("opset", [13, 17, None])
def test_maxout_at_each_reducemax_form(opset, rng):
    """ReduceMax takes axes as an attribute before opset 18 and as an input from 18."""
    est = fitted("maxout", "multiclass", "float32")
    model = to_onnx(est, target_opset=opset, zipmap=False)
    if opset is not None:
        assert model.opset_import[0].version == opset or any(
            o.domain == "" and o.version <= opset for o in model.opset_import)
    X = fresh_X(est, rng)
    check_outputs(est, X, session(model).run(None, {"X": X}), TOL["float32"])


def test_zipmap_outputs_follow_skl2onnx(rng):
    est = fitted("tanh", "multiclass", "float32")
    sess = session(to_onnx(est))  # zipmap=True by default, as skl2onnx
    assert [o.name for o in sess.get_outputs()] == ["output_label", "output_probability"]
    X = fresh_X(est, rng)
    label, maps = sess.run(None, {"X": X})
    assert_array_equal(label, est.predict(X))
    assert [sorted(m) for m in maps[:1]] == [sorted(est.classes_.tolist())]
    proba = np.array([[m[c] for c in est.classes_] for m in maps])
    assert_allclose(proba, est.predict_proba(X), **TOL["float32"])


def test_zipmap_columns_and_float64(rng):
    est = fitted("relu", "binary", "float64")
    with pytest.raises(ValueError, match="zipmap"):
        to_onnx(est)  # ZipMap cannot hold doubles
    sess = session(to_onnx(est, zipmap="columns"))
    # skl2onnx names the columns "s<label>" for string labels
    assert [o.name for o in sess.get_outputs()] == ["output_label", "sno", "syes"]
    X = fresh_X(est, rng)
    label, p_no, p_yes = sess.run(None, {"X": X})
    assert_array_equal(label, est.predict(X))
    assert_allclose(np.column_stack([p_no, p_yes]), est.predict_proba(X), **TOL["float64"])


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_skl2onnx_to_onnx_converts_fastmlp_estimators(task, rng):
    est = fitted("elu", task, "float32")
    X = fresh_X(est, rng)
    options = {id(est): {"zipmap": False}} if task == "multiclass" else None
    model = skl2onnx.to_onnx(est, X[:1], options=options)
    check_outputs(est, X, session(model).run(None, {"X": X}), TOL["float32"])


def test_nocl_option_gives_class_positions(rng):
    """skl2onnx's option nocl=True: labels are positions in classes_, not the classes."""
    est = fitted("tanh", "multiclass", "float64")
    X = fresh_X(est, rng)
    model = skl2onnx.to_onnx(est, X[:1], options={id(est): {"zipmap": False, "nocl": True}})
    label, _ = session(model).run(None, {"X": X})
    assert_array_equal(label, np.searchsorted(est.classes_, est.predict(X)))


def test_float_input_to_a_float64_model(rng):
    """A float32 input tensor is cast to double; the outputs follow the input type (skl2onnx)."""
    est = fitted("prelu", "multiclass", "float64")
    X = fresh_X(est, rng, dtype=np.float32)
    model = skl2onnx.to_onnx(est, X[:1], options={id(est): {"zipmap": False}})
    label, proba = session(model).run(None, {"X": X})
    assert proba.dtype == np.float32
    assert_allclose(proba, est.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert_array_equal(label, est.predict(X))


def _integral_X(kind, rng, n, d):
    """Fresh int64 rows (both signs, up to |5|) or boolean rows."""
    if kind == "int64":
        return rng.integers(-5, 6, size=(n, d)).astype(np.int64)
    return rng.random((n, d)) < 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("kind", ["int64", "bool"])
def test_int64_and_boolean_inputs_are_cast(kind, task, dtype, rng):
    """Int64TensorType and BooleanTensorType inputs are cast to the model's dtype at the
    graph's input (skl2onnx's MLP converter accepts both): the outputs are float (as
    skl2onnx gives for these inputs) and equal predict on the same rows."""
    est = fitted("tanh", task, dtype)
    X = _integral_X(kind, rng, 60, est.n_features_in_)
    Types = {"int64": skl2onnx.common.data_types.Int64TensorType,
             "bool": skl2onnx.common.data_types.BooleanTensorType}
    options = {id(est): {"zipmap": False}} if task != "regression" else None
    model = skl2onnx.convert_sklearn(est, initial_types=[("X", Types[kind]([None, X.shape[1]]))],
                                     options=options)
    assert model.graph.input[0].type.tensor_type.elem_type == (
        onnx.TensorProto.INT64 if kind == "int64" else onnx.TensorProto.BOOL)
    outs = session(model).run(None, {"X": X})
    Xf = X.astype(dtype)  # what the graph's Cast gives, and what predict is handed
    tol = TOL["float32"]  # the outputs are float32 tensors
    if task == "regression":
        (pred,) = outs
        assert pred.dtype == np.float32 and pred.shape == (X.shape[0], 1)
        assert_allclose(pred, est.predict(Xf).reshape(-1, 1), **tol)
        assert_allclose(pred, est.predict(X).reshape(-1, 1), **tol)  # predict casts too
    else:
        label, proba = outs
        assert proba.dtype == np.float32
        assert_allclose(proba, est.predict_proba(Xf), **tol)
        assert_array_equal(label, est.predict(Xf))
        assert_array_equal(label, est.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pipeline_with_a_scaler(dtype, rng):
    X = rng.normal(loc=3.0, scale=[1, 10, 0.1, 5, 2], size=(120, N_FEATURES))
    y = np.where(X[:, 0] + 0.1 * X[:, 1] > 4.0, "a", np.where(X[:, 2] > 3.0, "b", "c"))
    clf = MLPClassifier(activation="maxout", dtype=dtype, random_state=0, **NET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), clf).fit(X, y)
    Xn = rng.normal(loc=3.0, scale=[1, 10, 0.1, 5, 2], size=(60, N_FEATURES)).astype(dtype)
    model = skl2onnx.to_onnx(pipe, Xn[:1], options={id(clf): {"zipmap": False}})
    label, proba = session(model).run(None, {"X": Xn})
    # the scaler runs in the input dtype in ONNX, in float64 in scikit-learn
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else TOL[dtype]
    assert_allclose(proba, pipe.predict_proba(Xn), **tol)
    assert_array_equal(label, pipe.predict(Xn))


def test_graph_name_and_opset():
    est = fitted("relu", "regression", "float32")
    assert to_onnx(est).graph.name == "fastmlp_MLPRegressor"
    assert to_onnx(est, name="served").graph.name == "served"


# --------------------------------------------------------------------------- errors
def test_not_fitted_raises_sklearn_error():
    with pytest.raises(NotFittedError):
        to_onnx(MLPClassifier())


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(target_opset=9), ValueError, "target_opset"),
    (dict(target_opset="18"), TypeError, "target_opset"),
    (dict(zipmap="yes"), ValueError, "zipmap"),
    (dict(name=3), TypeError, "name"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        to_onnx(fitted("relu", "multiclass", "float32"), **kwargs)


def test_other_estimators_are_refused():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(TypeError, match="LogisticRegression"):
        to_onnx(LogisticRegression().fit(X, X[:, 0] > 0))


def test_unknown_activation_is_named():
    from sklearn.base import clone
    est = fitted("relu", "multiclass", "float32")
    broken = clone(est)
    broken.__dict__.update({k: v for k, v in vars(est).items() if k.endswith("_")})
    broken.activation = "swish"
    with pytest.raises(ValueError, match="swish"):
        to_onnx(broken, zipmap=False)


def test_fractional_float_classes_are_refused():
    """ONNX labels are int64 or strings: whole-number float classes become int64, others
    are refused (fastmlp itself fits only class-like labels, so set them by hand)."""
    import copy
    est = copy.deepcopy(fitted("relu", "binary", "float32"))
    est.classes_ = np.array([1.0, 2.0])
    X = fresh_X(est, np.random.default_rng(2))
    label, _ = session(to_onnx(est, zipmap=False)).run(None, {"X": X})
    assert label.dtype == np.int64 and set(label) <= {1, 2}
    est.classes_ = np.array([0.5, 1.5])
    with pytest.raises(ValueError, match="classes_"):
        to_onnx(est, zipmap=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class_classifier(dtype, rng):
    """Fitted on one class, predict gives that class and predict_proba [1 - p, p]."""
    X = rng.normal(size=(40, N_FEATURES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(activation="elu", dtype=dtype, random_state=0, **NET).fit(
            X, np.full(40, "only"))
    X = fresh_X(est, rng)
    check_outputs(est, X, session(to_onnx(est, zipmap=False)).run(None, {"X": X}), TOL[dtype])
    with pytest.raises(ValueError, match="single class"):
        to_onnx(est, zipmap="columns")


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx -> ImportError
    monkeypatch.delitem(sys.modules, "fastmlp.onnx")
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[onnx\]"'):
        importlib.import_module("fastmlp.onnx")


def test_public_functions_have_examples():
    for name in fonnx.__all__:
        assert ">>>" in (getattr(fonnx, name).__doc__ or ""), name


@pytest.mark.parametrize("activation, param, value", [
    ("leaky_relu", "negative_slope", 0.3), ("elu", "elu_alpha", 0.2)])
def test_export_uses_the_fitted_parameters(activation, param, value):
    """set_params after fit changes neither predict nor the exported graph."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((80, 4))
    y = (X[:, 0] > 0).astype(int)
    est = MLPClassifier(hidden_layer_sizes=(6,), activation=activation, max_iter=30,
                        random_state=0, backend="cpu", dtype="float64", negative_slope=0.05,
                        elu_alpha=1.5).fit(X, y)
    expected = est.predict_proba(X)
    est.set_params(**{param: value})
    sess = ort.InferenceSession(to_onnx(est, zipmap=False).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    _, proba = sess.run(None, {sess.get_inputs()[0].name: X})
    np.testing.assert_allclose(proba, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.predict_proba(X), expected, rtol=0, atol=0)
