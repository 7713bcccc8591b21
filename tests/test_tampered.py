"""A model file can never corrupt memory: every stored attribute, corrupted, in a child process.

For several fitted estimators (each activation family, each output, both solvers' optimizer
states, early stopping, float32 and float64), every entry of the state a file stores (every
attribute, every element of its lists, every key of its dicts) is corrupted in every way that
fits its type: deleted, None, a string, wrong shape, truncated, extended, wrong dtype, NaN, inf,
huge, negative, out-of-range. Each tampered state is loaded the way pickle and skops load
(``__setstate__``) and used (predict, predict_proba, score, partial_fit, predict again) in a
child process, so that a crash fails the test instead of killing it. Every case must end in
one of three ways:

- refused at load with a ``ValueError`` / ``TypeError``;
- a ``ValueError`` / ``TypeError`` at the call;
- correct output: what a plain NumPy forward pass (``tests/reference.py``) computes from the
  weights the loaded estimator holds.

Any other exception, a crash, or an output that differs from the reference fails the test.
The same is done end to end through skops files whose arrays and JSON values are tampered.
"""

import copy
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fastmlp import MLPClassifier, MLPRegressor, _fastpath  # noqa: E402

OK_ERRORS = (ValueError, TypeError)

# name -> (estimator class name, parameters, target kind)
MODELS = {
    "relu_adam_multiclass": ("MLPClassifier", dict(hidden_layer_sizes=(5, 3), solver="adam"),
                             "multiclass"),
    "prelu_sgd_binary": ("MLPClassifier", dict(hidden_layer_sizes=(4,), activation="prelu",
                                               solver="sgd"), "binary"),
    "maxout_adam_multilabel": ("MLPClassifier", dict(hidden_layer_sizes=(4,),
                                                     activation="maxout", maxout_pieces=3),
                               "multilabel"),
    "elu_lbfgs_regression_2": ("MLPRegressor", dict(hidden_layer_sizes=(4,), activation="elu",
                                                    solver="lbfgs"), "regression2"),
    "leaky_earlystop_float64": ("MLPClassifier", dict(hidden_layer_sizes=(6,),
                                                      activation="leaky_relu",
                                                      early_stopping=True, dtype="float64"),
                                "strings"),
    "tanh_poisson_sgd": ("MLPRegressor", dict(hidden_layer_sizes=(3,), activation="tanh",
                                              solver="sgd", loss="poisson"), "counts"),
}


def model_data(target, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    if target == "multiclass":
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3)
    elif target == "binary":
        y = (X[:, 0] + X[:, 2] > 0).astype(int)
    elif target == "multilabel":
        y = (X[:, :3] > 0).astype(int)
    elif target == "strings":
        y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3)]
    elif target == "regression2":
        y = np.c_[X[:, 0] - X[:, 1], 2 * X[:, 2]]
    else:  # counts
        y = rng.poisson(np.exp(0.5 * X[:, 0]))
    return X, y


def fitted(name):
    cls_name, params, target = MODELS[name]
    cls = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[cls_name]
    X, y = model_data(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(max_iter=4, random_state=0, **params).fit(X, y), X, y


# ---------------------------------------------------------------- the corruptions
DELETE = object()


def _array_corruptions(v):
    out = []
    if v.ndim and v.shape[0]:
        out += [("one more row", np.concatenate([v, v[:1]])), ("truncated", v[:-1]),
                ("empty", v[:0])]
    out += [("extra axis", v[None]), ("as a list", v.tolist())]
    if v.ndim == 2:
        out += [("transposed", np.ascontiguousarray(v.T)), ("flattened", v.reshape(-1))]
    if v.dtype.kind in "fiu":
        big = v.astype(np.float64)
        out += [("int64", v.astype(np.int64)), ("complex", v.astype(np.complex128)),
                ("object", v.astype(object)), ("float16", v.astype(np.float16)),
                ("bool", v.astype(bool))]
        if v.size:
            for label, value in (("nan", np.nan), ("inf", np.inf), ("huge", 1e300),
                                 ("negative huge", -1e300), ("large", 1e6)):
                w = big.copy()
                w.flat[0] = value
                out.append((label, w.astype(v.dtype) if label == "large" else w))
    else:
        out += [("int64 labels", np.arange(v.size).reshape(v.shape)),
                ("reversed", v[::-1].copy())]
    return out


def corruptions(v):
    """(label, corrupted value) pairs for a stored value (DELETE: remove the entry)."""
    out = [("deleted", DELETE), ("None", None), ("a string", "x")]
    if isinstance(v, np.ndarray):
        out += _array_corruptions(v)
    elif isinstance(v, (bool, np.bool_)):
        out += [("flipped", not v), ("2", 2)]
    elif isinstance(v, (int, np.integer)):
        out += [("-1", -1), ("0", 0), ("+1", int(v) + 1), ("10**12", 10 ** 12),
                ("2**63-1", 2 ** 63 - 1), ("-(2**62)", -(2 ** 62)), ("float", float(v) + 0.5),
                ("True", True)]
    elif isinstance(v, (float, np.floating)):
        out += [("nan", float("nan")), ("inf", float("inf")), ("negated", -float(v)),
                ("1e300", 1e300), ("0", 0.0)]
    elif isinstance(v, str):
        out += [("unknown", "nope"), ("empty", ""), ("upper", v.upper())]
    elif isinstance(v, (list, tuple)):
        out += [("emptied", type(v)()), ("reversed", type(v)(v[::-1]))]
        if v:
            out += [("truncated", type(v)(v[:-1])), ("extended", type(v)(list(v) + [v[-1]])),
                    ("a dict", {0: v[0]})]
    elif isinstance(v, dict):
        out += [("emptied", {}), ("extra key", {**v, "zz": 1}), ("a list", list(v.values()))]
    elif v is None:
        out += [("0", 0), ("empty list", []), ("array", np.zeros(3))]
    return out


def entries(state):
    """Paths (tuples of keys / indices) to every stored entry worth corrupting."""
    for key, value in state.items():
        yield (key,)
        if isinstance(value, dict):
            for k, v in value.items():
                yield (key, k)
                if isinstance(v, list):
                    for i in sorted({0, len(v) - 1}) if v else ():
                        yield (key, k, i)
        elif isinstance(value, (list, tuple)) and key != "hidden_layer_sizes":
            for i in sorted({0, len(value) - 1}) if value else ():
                yield (key, i)


def get_path(state, path):
    for p in path:
        state = state[p]
    return state


def tampered(state, path, value):
    state = copy.deepcopy(state)
    parent = state
    for p in path[:-1]:
        if isinstance(parent[p], tuple):
            parent[p] = list(parent[p])
        parent = parent[p]
    if value is DELETE:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return state


def load_state(cls, state):
    """What pickle and skops do with a stored state."""
    est = object.__new__(cls)
    est.__setstate__(state)
    return est


# ---------------------------------------------------------------- the child process
def _check_use(est, X, y, label, bad):
    """Use a loaded estimator; record in ``bad`` anything but a clear error or correct output."""
    import reference  # tests/reference.py: the plain NumPy forward pass

    def call(what, fn):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(), None
        except OK_ERRORS as exc:
            return None, exc
        except Exception as exc:  # noqa: BLE001  (any other exception is the finding)
            bad.append(f"{label}: {what} raised {type(exc).__name__}: {exc}")
            return None, exc

    def check_output(what):
        out, err = call(what, lambda: est._predict_raw(X, apply_out=True)[0])
        if err is not None:
            return
        want = reference.network_predict(est._spec, est._theta.astype(np.float64),
                                         X.astype(np.float64))
        if out.shape != want.shape or not np.allclose(out, want, rtol=2e-3, atol=1e-5,
                                                      equal_nan=True):
            bad.append(f"{label}: {what} differs from the reference forward pass")

    check_output("predict")
    call("predict", lambda: est.predict(X))
    call("predict 1 row", lambda: est.predict(X[:1]))
    if hasattr(est, "predict_proba"):
        call("predict_proba", lambda: est.predict_proba(X))
    call("score", lambda: est.score(X, y))
    if getattr(est, "solver", None) in ("sgd", "adam") and not getattr(est, "early_stopping", 1):
        _, err = call("partial_fit", lambda: est.partial_fit(X, y))
        if err is None:
            check_output("predict after partial_fit")


def run_child(names):
    """Corrupt and use every entry of every named model's stored state; print JSON."""
    bad, counts = [], {"cases": 0, "refused": 0, "used": 0}
    for name in names:
        est, X, y = fitted(name)
        cls = type(est)
        state = est.__getstate__()
        for path in list(entries(state)):
            for how, value in corruptions(get_path(state, path)):
                label = f"{name} {'/'.join(map(str, path))} {how}"
                print("CASE", label, flush=True)
                counts["cases"] += 1
                try:
                    loaded = load_state(cls, tampered(state, path, value))
                except OK_ERRORS:
                    counts["refused"] += 1
                    continue
                except Exception as exc:  # noqa: BLE001
                    bad.append(f"{label}: load raised {type(exc).__name__}: {exc}")
                    continue
                before = len(bad)
                _check_use(loaded, X, y, label, bad)
                counts["used"] += len(bad) == before
        for label, blob in skops_tamperings(est):
            print("CASE", f"{name} skops {label}", flush=True)
            counts["cases"] += 1
            import skops.io as sio
            try:
                loaded = sio.loads(blob, trusted=[f"{cls.__module__}.{cls.__qualname__}"])
            except OK_ERRORS:
                counts["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{name} skops {label}: load raised {type(exc).__name__}: {exc}")
                continue
            _check_use(loaded, X, y, f"{name} skops {label}", bad)
    print("RESULT", json.dumps({"bad": bad, "counts": counts}), flush=True)


def skops_tamperings(est):
    """(label, bytes) of skops files of est with one stored array or JSON value changed."""
    import skops.io as sio
    blob = sio.dumps(est)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(files["schema.json"])

    def rezip(changes):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n, data in {**files, **changes}.items():
                z.writestr(n, data)
        return buf.getvalue()

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        return buf.getvalue()

    out = []
    for n in sorted(files):
        if n.endswith(".npy"):
            a = np.load(io.BytesIO(files[n]), allow_pickle=False)
            for how, value in _array_corruptions(a):
                if isinstance(value, np.ndarray) and value.dtype != object:
                    out.append((f"{n} {how}", rezip({n: npy(value)})))
    top = schema["content"]["content"]
    for key in ("n_features_in_", "n_outputs_", "n_layers_", "t_", "out_activation_"):
        if key in top:
            for text in ('1', '0', '-5', '"softmax"', '"x"', '1e308', 'null', '[1]'):
                s = copy.deepcopy(schema)
                s["content"]["content"][key]["content"] = text
                out.append((f"{key}={text}", rezip({"schema.json": json.dumps(s)})))
    return out


def _run_in_child(names):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        import test_tampered
        test_tampered.run_child({list(names)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=900)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0:
        last = next((line for line in reversed(lines) if line.startswith("CASE")), "(none)")
        pytest.fail(f"the child process died (exit code {proc.returncode}) at {last}\n"
                    f"{proc.stderr[-3000:]}")
    result = json.loads(next(line for line in lines if line.startswith("RESULT"))[7:])
    return result


# two children (each imports fastmlp and loads its kernels once), three models each
GROUPS = [list(MODELS)[:3], list(MODELS)[3:]]


@pytest.mark.parametrize("names", GROUPS, ids=["+".join(g) for g in GROUPS])
def test_every_corrupted_entry_is_refused_or_harmless(names):
    result = _run_in_child(names)
    assert result["bad"] == [], "\n".join(result["bad"][:40])
    counts = result["counts"]
    # the suite has teeth: hundreds of cases per model, most refused at load, some used
    assert counts["cases"] >= 300 * len(names), counts
    assert counts["refused"] >= counts["cases"] // 2, counts
    assert counts["used"] > 0, counts


# ---------------------------------------------------------------- in-process checks
def test_the_stored_state_holds_plain_values_and_arrays_only():
    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic))

    for name in MODELS:
        est, _, _ = fitted(name)
        state = est.__getstate__()
        assert plain(state), name
        assert not {"_spec", "_theta", "_label_binarizer"} & set(state), name


@pytest.mark.parametrize("name", ["relu_adam_multiclass", "prelu_sgd_binary"])
def test_skops_trusts_the_estimator_class_only(name):
    sio = pytest.importorskip("skops.io")
    est, X, _ = fitted(name)
    blob = sio.dumps(est)
    cls = type(est)
    assert sio.get_untrusted_types(data=blob) == [f"{cls.__module__}.{cls.__qualname__}"]
    loaded = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def _snapshot(est):
    """Every attribute of est: the object itself and a copy of its value."""
    return {k: (v, copy.deepcopy(v)) for k, v in est.__dict__.items()}


def _assert_unchanged(est, snap):
    assert set(est.__dict__) == set(snap)
    for k, (obj, value) in snap.items():
        assert est.__dict__[k] is obj, k
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(est.__dict__[k], value)
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            for a, b in zip(est.__dict__[k], value):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["relu_adam_multiclass", "prelu_sgd_binary",
                                  "elu_lbfgs_regression_2"])
def test_saving_never_changes_the_live_estimator(name):
    sio = pytest.importorskip("skops.io")
    est, X, _ = fitted(name)
    est.predict(X[:1])
    snap = _snapshot(est)
    pickle.dumps(est)
    copy.deepcopy(est)
    copy.copy(est)
    sio.dumps(est)
    _assert_unchanged(est, snap)
    # the 1-row path is still taken (it needs the flat vector the fit published)
    assert _fastpath.small_input(est, est.__dict__, X[:1]) is not None


def test_a_round_trip_keeps_predictions_and_partial_fit_state():
    est, X, y = fitted("relu_adam_multiclass")
    copies = [pickle.loads(pickle.dumps(est)), copy.deepcopy(est)]
    for other in copies:
        np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
        assert _fastpath.small_input(other, other.__dict__, X[:1]) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in [est] + copies:
            e.partial_fit(X, y)
    for other in copies:  # the optimizer state travelled: the same step follows
        np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))


def test_a_file_of_the_previous_format_loads_through_the_same_checks():
    """fastmlp 0.1 pickled its layout object, optimizer object and label binarizer; such a
    file loads (its layout's offsets are rebuilt, never read), and a changed defining field
    of its layout is refused."""
    est, X, _ = fitted("prelu_sgd_binary")
    old = dict(est.__dict__)  # what 0.1's __getstate__ wrote: everything but the flat vector
    old.pop("_theta")
    loaded = load_state(MLPClassifier, copy.deepcopy(old))
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    # offsets from the file are not used: the layout is rebuilt
    evil = copy.deepcopy(old)
    evil["_spec"].layers[:, 6] += 10 ** 8
    evil["_spec"].ws_cols = 0
    loaded = load_state(MLPClassifier, evil)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    evil = copy.deepcopy(old)
    evil["_spec"].activation = "relu"  # coefs_ shapes no longer fit: no prelu slopes
    with pytest.raises(ValueError, match="prelu_alphas_"):
        load_state(MLPClassifier, evil)
    evil = copy.deepcopy(old)
    evil["_opt_state"].hyper = evil["_opt_state"].hyper[:1]
    with pytest.raises(ValueError, match=r"_opt_state\['hyper'\]"):
        load_state(MLPClassifier, evil)


@pytest.mark.parametrize("target", ["binary", "strings", "multilabel"])
def test_a_label_encoding_without_weights_round_trips(target):
    """The dask estimators ship an estimator whose label encoding is set before any weights
    exist; its binarizer is rebuilt from classes_ and the stored label type."""
    from sklearn.preprocessing import LabelBinarizer

    _, y = model_data(target)
    template = MLPClassifier()
    template._label_binarizer = LabelBinarizer().fit(y)
    template.classes_ = template._label_binarizer.classes_
    back = pickle.loads(pickle.dumps(template))
    assert back._label_binarizer.y_type_ == template._label_binarizer.y_type_
    np.testing.assert_array_equal(back._label_binarizer.transform(y),
                                  template._label_binarizer.transform(y))
    state = template.__getstate__()
    state["_label_type"] = "multiclass" if target == "binary" else "binary"
    with pytest.raises(ValueError, match="classes_"):
        load_state(MLPClassifier, state)


def test_a_file_of_an_unknown_format_is_refused_with_a_message():
    est, _, _ = fitted("relu_adam_multiclass")
    state = est.__getstate__()
    state["_fastmlp_format"] = 99
    with pytest.raises(ValueError, match="formats 1 and 2"):
        load_state(MLPClassifier, state)


def test_an_assigned_n_features_in_never_reaches_a_kernel():
    est, X, _ = fitted("relu_adam_multiclass")
    est.n_features_in_ = 1
    for rows in (X[:1, :1], X[:, :1]):  # the 1-row path and the full one
        with pytest.raises(ValueError, match="features"):
            est.predict_proba(rows)
    est.n_features_in_ = 3
    np.testing.assert_array_equal(est.predict(X), fitted("relu_adam_multiclass")[0].predict(X))


# ---------------------------------------------------------------- fork safety
FORK_SCRIPT = r"""
import multiprocessing as mp, os, sys, warnings
import numpy as np
from fastmlp import MLPClassifier, ops

warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
Z = rng.normal(size=(3000, 8))
X = rng.normal(size=(200, 5)); y = (X[:, 0] > 0).astype(int)
P, H, M = ops.softmax(Z), ops.activation("tanh", Z), ops.maxout(Z, 2)[0]
clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
proba = clf.predict_proba(X)

def work(_=None):
    ok = (np.array_equal(ops.softmax(Z), P) and np.array_equal(ops.activation("tanh", Z), H)
          and np.array_equal(ops.maxout(Z, 2)[0], M)
          and np.array_equal(clf.predict_proba(X), proba))
    again = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    return bool(ok and np.array_equal(again.predict_proba(X), proba))

pid = os.fork()
if pid == 0:
    os._exit(0 if work() else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
with mp.get_context("fork").Pool(2) as pool:
    assert all(pool.map(work, range(4)))
assert work()  # and the parent still runs on its threads
print("FORK OK")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_ops_and_estimators_work_in_a_forked_child():
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "FORK OK" in proc.stdout, proc.stderr[-3000:]
