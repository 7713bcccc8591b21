"""skops persistence: every fitted estimator round-trips, trusting only fastmlp's and NumPy's types.

The check on the types is generic on purpose: whatever the estimators keep in their fitted
state, skops must report nothing but fastmlp's own classes and NumPy's array, dtype and scalar
classes as types to trust (no functions, modules or other libraries' objects).
"""

import importlib
import io
import json
import warnings
import zipfile
from functools import lru_cache

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

import skops.io as sio  # noqa: E402  (the test extra installs it)
from skops.io.exceptions import UntrustedTypesFoundException  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu",
               "maxout"]
KINDS = ["classifier", "regressor"]
DTYPES = ["float32", "float64"]
SOLVERS = ["adam", "sgd"]
N_FEATURES = 4


def _resolve(qualname):
    """The object a skops type name such as "numpy.dtype" refers to (None if nothing)."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def allowed_type(qualname):
    """A fastmlp class, or a NumPy array / dtype / scalar class; nothing else.

    Allowed NumPy names are therefore e.g. numpy.ndarray, numpy.dtype, numpy.dtypes.Float32DType,
    numpy.float32, numpy.float64, numpy.int64, numpy.bool_ (never numpy.load or other functions).
    """
    obj = _resolve(qualname)
    if not isinstance(obj, type):
        return False
    if qualname.startswith("fastmlp."):
        return obj.__module__.startswith("fastmlp")
    if qualname.startswith("numpy."):
        return issubclass(obj, (np.ndarray, np.dtype, np.generic))
    return False


def test_the_allow_list_itself():
    assert allowed_type("numpy.dtype") and allowed_type("numpy.ndarray")
    assert allowed_type("numpy.float64") and allowed_type("fastmlp._estimator.MLPClassifier")
    for bad in ("numpy.load", "numpy.lib", "builtins.eval", "os.system", "fastmlp.ops.softmax",
                "sklearn.pipeline.Pipeline", "fastmlp.nothing_here"):
        assert not allowed_type(bad), bad


@lru_cache(maxsize=None)
def data(kind):
    rng = np.random.default_rng(7 if kind == "classifier" else 8)
    X = rng.normal(size=(90, N_FEATURES))
    if kind == "classifier":
        y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    else:
        y = X @ rng.normal(size=N_FEATURES)
    return X, y


def fit(kind, activation, dtype, solver):
    X, y = data(kind)
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    est = cls(hidden_layer_sizes=(5, 4), activation=activation, dtype=dtype, solver=solver,
              max_iter=3, random_state=0, backend="cpu", learning_rate_init=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def outputs(est, X):
    out = [est.predict(X)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return out


def assert_same_outputs(a, b, X):
    for pa, pb in zip(outputs(a, X), outputs(b, X)):
        assert pa.dtype == pb.dtype
        assert_array_equal(pa, pb)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind, activation, dtype, solver, rng):
    est = fit(kind, activation, dtype, solver)
    blob = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=blob)
    assert untrusted, "a fastmlp estimator is never trusted by default"
    bad = [t for t in untrusted if not allowed_type(t)]
    assert not bad, f"types outside fastmlp/NumPy classes in the fitted state: {bad}"
    # the README's rule: the estimator class is all a fastmlp file asks to trust
    assert untrusted == [f"{type(est).__module__}.{type(est).__qualname__}"], untrusted

    loaded = sio.loads(blob, trusted=untrusted)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    for name in ("coefs_", "intercepts_", "prelu_alphas_"):
        for a, b in zip(getattr(est, name, []), getattr(loaded, name, [])):
            assert a.dtype == b.dtype
            assert_array_equal(a, b)
    assert loaded.loss_curve_ == est.loss_curve_ and loaded.n_iter_ == est.n_iter_
    X = rng.normal(size=(40, N_FEATURES))
    assert_same_outputs(est, loaded, X)

    # the optimizer state came along: one more epoch moves both copies alike
    Xt, yt = data(kind)
    est.partial_fit(Xt, yt)
    loaded.partial_fit(Xt, yt)
    assert_same_outputs(est, loaded, X)


def test_file_round_trip_and_default_refusal(tmp_path, rng):
    est = fit("classifier", "maxout", "float32", "adam")
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path)  # nothing of fastmlp's is trusted unless the caller says so
    loaded = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    assert_same_outputs(est, loaded, rng.normal(size=(30, N_FEATURES)))


# --------------------------------------------------------------------------- tampered files
def _rewrite_schema(blob, edit):
    """The same skops zip with schema.json passed through edit(schema) (in place)."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            payload = json.dumps(schema) if item.filename == "schema.json" else src.read(item)
            dst.writestr(item.filename, payload)
    return out.getvalue()


def _object_nodes(node):
    """Every node of the schema that names a Python type, depth first."""
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            yield node
        for value in node.values():
            yield from _object_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _object_nodes(value)


@pytest.mark.parametrize("target", ["root", "nested"])
@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("os", "system"),
                                         ("subprocess", "Popen"), ("numpy", "load")])
def test_tampered_type_is_refused(target, module, name):
    est = fit("regressor", "prelu", "float64", "sgd")
    genuine = sio.dumps(est)
    trusted = sio.get_untrusted_types(data=genuine)

    # the rewrite machinery alone leaves a loadable file
    sio.loads(_rewrite_schema(genuine, lambda s: None), trusted=trusted)

    def edit(schema):
        nodes = list(_object_nodes(schema))
        assert nodes[0]["__module__"] == "fastmlp._estimator"
        if target == "nested":
            # below the estimator: the first array of its fitted state (coefs_ and the like)
            nodes = [n for n in nodes[1:] if (n["__module__"], n["__class__"])
                     == ("numpy", "ndarray")]
            assert nodes, "the fitted state holds no array"
        nodes[0]["__module__"], nodes[0]["__class__"] = module, name

    tampered = _rewrite_schema(genuine, edit)
    assert f"{module}.{name}" in sio.get_untrusted_types(data=tampered)
    with pytest.raises(UntrustedTypesFoundException, match=f"{module}.{name}"):
        sio.loads(tampered, trusted=trusted)
