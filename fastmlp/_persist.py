"""What a saved model holds, and how loading rebuilds everything else.

A fitted estimator keeps derived state beside its definition: the ``NetSpec``
layout whose offsets the compiled kernels index raw buffers with, the flat
parameter vector, the label binarizer.  None of it is written to a file
(pickle, joblib, skops, ``copy.deepcopy``).  A file holds plain values and
NumPy arrays only:

- the estimator's parameters (checked, as always, when a fit starts);
- the fitted attributes a user sees (``coefs_``, ``intercepts_``,
  ``prelu_alphas_``, ``classes_``, ``n_features_in_``, ``n_outputs_``,
  ``out_activation_``, the loss and score histories, ...);
- ``_network``: what the layout is built from (activation, its parameter,
  maxout pieces, hidden widths, dtype), a dict of plain values;
- ``_opt_state``: the optimizer state ``partial_fit`` continues from, a dict
  of arrays;
- ``_dropout_seed``: the seed of a fit with dropout (an int in [0, 2^31 - 1)),
  which ``partial_fit`` and ``warm_start`` go on drawing masks from.

Loading (``restore``) rebuilds the layout with ``make_layout``, the code ``fit``
uses, and then checks every loaded array's type, shape, dtype and finiteness
against it; the first inconsistency raises a ``ValueError`` naming the
attribute.  So no value from a file ever reaches a compiled kernel as an
offset, a size or a code: a tampered file is refused, or it is a model that
``fit`` could have produced.

Files written before this format (``format`` 1: the layout object, the
optimizer object and the label binarizer pickled as they were) load through the
same checks: their layout object is read for its defining fields only and
rebuilt.
"""

import math
import numbers

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from ._registry import ACTIVATIONS, ADAM, MAXOUT, OUTPUTS, PRELU, SGD
from .backends.layout import (
    ADAM_T, BETA1, BETA2, EPS, LR, MOMENTUM, N_HYPER, NESTEROV, OptimizerState, make_layout,
    pack,
)

FORMAT = 2  # version of what __getstate__ writes; format 1 = fastmlp 0.1's pickled objects

# derived from the definition: never written, rebuilt on load
_DERIVED = ("_spec", "_theta", "_label_binarizer")

# fitted attributes that exist only together with coefs_ (a classifier's label encoding,
# classes_ and _label_type, may come first: the dask estimators ship such a template)
_FITTED = ("intercepts_", "prelu_alphas_", "n_outputs_", "out_activation_",
           "n_layers_", "_network", "_opt_state", "loss_curve_", "loss_", "best_loss_",
           "n_iter_", "t_", "validation_scores_", "validation_loss_curve_",
           "best_validation_score_", "_no_improvement_count", "_dropout_seed")

_CLASSIFIER_OUTPUTS = ("softmax", "logistic")
_REGRESSOR_OUTPUTS = ("identity", "exp")
_DTYPE_NAMES = ("float32", "float64")
_ARRAY_TYPES = (np.ndarray, np.memmap)
_MAX_SIZE = 2 ** 40  # a width beyond this is not a network anyone fitted


class _Refused(ValueError):
    """A model file (or state) that is inconsistent: it names the attribute."""


def _bad(name, what):
    raise _Refused(f"Cannot load this model: {name} {what}. The file was not written by "
                   "fastmlp, or it was changed since; it is refused before any of it is used.")


# ---------------------------------------------------------------- writing
def saved_state(state, est_dict):
    """The dict a file stores, from ``state`` (a copy of the estimator's dict that
    this function may change; the live estimator's dict ``est_dict`` is only read)."""
    for key in _DERIVED:
        state.pop(key, None)
    spec = est_dict.get("_spec")
    if spec is not None:
        state["_network"] = {"activation": spec.activation, "param": float(spec.param),
                             "pieces": int(spec.pieces), "hidden": [int(h) for h in spec.hidden],
                             "dtype": spec.dtype.name}
    lb = est_dict.get("_label_binarizer")
    if lb is not None:  # what the binarizer is rebuilt from, beside classes_
        state["_label_type"] = str(lb.y_type_)
    opt = state.get("_opt_state")
    if isinstance(opt, OptimizerState):
        state["_opt_state"] = {"solver": int(opt.solver), "state1": opt.state1,
                               "state2": opt.state2, "hyper": opt.hyper}
    state["_fastmlp_format"] = FORMAT
    return state


# ---------------------------------------------------------------- reading
def _int(name, value, low, high=_MAX_SIZE):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        _bad(name, f"must be an integer, got {type(value).__name__}")
    value = int(value)
    if not low <= value <= high:
        _bad(name, f"must be in [{low}, {high}], got {value}")
    return value


def _real(name, value, finite=True, none=False):
    if value is None and none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        _bad(name, f"must be a number, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        _bad(name, f"must be finite, got {value}")
    return value


def _choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        _bad(name, f"must be one of {list(options)}, got {value!r}")
    return value


def _array(name, value, shape, dtype, exact=False):
    """value as the ndarray the layout expects: a finite, owned copy in ``dtype``.

    A float array of another precision is cast (a user may have assigned one to
    ``coefs_`` before saving, which predict accepts too) unless ``exact``.
    """
    # np.memmap: joblib.load(..., mmap_mode=...) maps the arrays of a pickle (the copy
    # below leaves the file)
    if type(value) not in _ARRAY_TYPES:
        _bad(name, f"must be a NumPy array, got {type(value).__name__}")
    if value.dtype != dtype and (exact or value.dtype.kind != "f"):
        _bad(name, f"must have dtype {np.dtype(dtype).name}, got {value.dtype}")
    if value.shape != tuple(shape):
        _bad(name, f"must have shape {tuple(shape)} for this network, got {value.shape}")
    with np.errstate(over="ignore"):
        value = np.array(value, dtype=dtype, copy=True, order="C")
    if not np.all(np.isfinite(value)):
        _bad(name, "holds NaN or infinite values (or values beyond the model's dtype); a "
             "fitted model never does")
    return value


def _list(name, value, none=False):
    if value is None and none:
        return None
    if not isinstance(value, (list, tuple)) or len(value) > _MAX_SIZE:
        _bad(name, f"must be a list, got {type(value).__name__}")
    return [_real(f"{name}[{i}]", v, finite=False) for i, v in enumerate(value)]


def _legacy_network(spec):
    """The defining fields of a format-1 file's pickled layout object (nothing else of
    it is read: its offsets and sizes are rebuilt)."""
    try:
        fields = {"activation": spec.activation, "param": spec.param, "pieces": spec.pieces,
                  "hidden": list(spec.hidden), "dtype": np.dtype(spec.dtype).name}
    except (AttributeError, TypeError, ValueError):
        _bad("_spec", "is not a network layout of fastmlp 0.1")
    return fields


def _legacy_optimizer(opt):
    try:
        return {"solver": opt.solver, "state1": opt.state1, "state2": opt.state2,
                "hyper": opt.hyper}
    except AttributeError:
        _bad("_opt_state", "is not an optimizer state of fastmlp 0.1")


def loaded_state(state):
    """The state dict with format-1 objects turned into format 2's plain values; the
    derived entries dropped.  (Checked by ``restore`` once set on the estimator.)"""
    state = dict(state)
    fmt = state.pop("_fastmlp_format", 1)
    if fmt not in (1, FORMAT):
        _bad("_fastmlp_format", f"is {fmt!r}; this fastmlp reads formats 1 and {FORMAT}. "
             "Load it with the fastmlp version that wrote it")
    if fmt == 1 and "_label_binarizer" in state:
        state["_label_type"] = getattr(state["_label_binarizer"], "y_type_", None)
    if fmt == 1 and "coefs_" in state:
        if "_spec" not in state:
            _bad("_spec", "is missing")
        state["_network"] = _legacy_network(state["_spec"])
        if state.get("_opt_state") is not None and not isinstance(state["_opt_state"], dict):
            state["_opt_state"] = _legacy_optimizer(state["_opt_state"])
    for key in _DERIVED:
        state.pop(key, None)
    return state


def restore(est, classifier):
    """Rebuild the derived state of ``est`` (whose dict holds a loaded state) from its
    definition, checking every loaded attribute against the rebuilt layout."""
    d = est.__dict__
    for name in est._get_param_names():  # their values are checked when a fit starts
        if name not in d:
            _bad(name, "(a parameter) is missing")
    if "coefs_" not in d:
        extra = [k for k in _FITTED if k in d]
        if extra:
            _bad(extra[0], "is present without coefs_")
        if "classes_" in d or "_label_type" in d:
            if not classifier:
                _bad("classes_", "is present on a regressor")
            d["_label_binarizer"] = _label_binarizer(d.get("classes_"), d.pop("_label_type", None))
        return
    net = d.get("_network")
    if not isinstance(net, dict):
        _bad("_network", "is missing or not a dict")
    activation = _choice("_network['activation']", net.get("activation"), list(ACTIVATIONS))
    code = ACTIVATIONS[activation].code
    param = _real("_network['param']", net.get("param"))
    pieces = _int("_network['pieces']", net.get("pieces"), 2 if code == MAXOUT else 1,
                  2 ** 16 if code == MAXOUT else 1)
    dtype = np.dtype(_choice("_network['dtype']", net.get("dtype"), _DTYPE_NAMES))
    if abs(param) > np.finfo(dtype).max:
        _bad("_network['param']", f"({param}) is beyond the range of the model's {dtype.name}")
    hidden = net.get("hidden")
    if not isinstance(hidden, (list, tuple)) or len(hidden) > 10_000:
        _bad("_network['hidden']", "must be a list of layer widths")
    hidden = [_int(f"_network['hidden'][{i}]", h, 1) for i, h in enumerate(hidden)]

    n_features = _int("n_features_in_", d.get("n_features_in_"), 1)
    n_outputs = _int("n_outputs_", d.get("n_outputs_"), 1)
    out = _choice("out_activation_", d.get("out_activation_"),
                  _CLASSIFIER_OUTPUTS if classifier else _REGRESSOR_OUTPUTS)
    _int("n_layers_", d.get("n_layers_"), len(hidden) + 2, len(hidden) + 2)
    names = d.get("feature_names_in_")
    if names is not None and (type(names) is not np.ndarray or names.shape != (n_features,)
                              or not all(isinstance(v, str) for v in names.tolist())):
        _bad("feature_names_in_", f"must be an array of {n_features} column names")

    spec = make_layout(n_features, hidden, n_outputs, activation, param, pieces, OUTPUTS[out],
                       dtype)
    shapes = spec.coef_shapes()
    for attr in ("coefs_", "intercepts_"):
        if not isinstance(d.get(attr), list) or len(d[attr]) != len(shapes):
            _bad(attr, f"must be a list of {len(shapes)} arrays for this network")
    coefs = [_array(f"coefs_[{l}]", c, s, dtype) for l, (c, s) in enumerate(zip(d["coefs_"], shapes))]
    intercepts = [_array(f"intercepts_[{l}]", b, (s[1],), dtype)
                  for l, (b, s) in enumerate(zip(d["intercepts_"], shapes))]
    slopes = None
    if code == PRELU:
        got = d.get("prelu_alphas_")
        if not isinstance(got, list) or len(got) != len(hidden):
            _bad("prelu_alphas_", f"must be a list of {len(hidden)} arrays for this network")
        slopes = [_array(f"prelu_alphas_[{l}]", a, (h,), dtype)
                  for l, (a, h) in enumerate(zip(got, hidden))] + [None]
    elif "prelu_alphas_" in d:
        _bad("prelu_alphas_", f"is present for activation {activation!r}")
    theta = pack(spec, coefs, intercepts, slopes)

    if classifier:
        # the label type the outputs imply: softmax <=> multiclass, one logistic output
        # <=> binary (or a single class), several <=> multilabel
        kind = ("multiclass" if out == "softmax" else "binary" if n_outputs == 1
                else "multilabel-indicator")
        if d.pop("_label_type", kind) != kind:
            _bad("_label_type", f"does not match {n_outputs} {out} output(s)")
        lb = d["_label_binarizer"] = _label_binarizer(d.get("classes_"), kind)
        if kind != "binary" and len(lb.classes_) != n_outputs:
            _bad("classes_", f"({len(lb.classes_)} labels) does not match {n_outputs} outputs")
    elif "classes_" in d or "_label_type" in d:
        _bad("classes_", "is present on a regressor")

    opt = d.get("_opt_state")
    if opt is not None:
        d["_opt_state"] = _optimizer(opt, spec)
    _history(d)
    d["_spec"] = spec
    est._expose(spec, theta)


def _label_binarizer(classes, kind):
    """The label binarizer fit makes for these classes and this label type."""
    if type(classes) not in _ARRAY_TYPES or classes.ndim != 1 or not 1 <= len(classes) <= _MAX_SIZE:
        _bad("classes_", "must be a 1-D array of class labels")
    k = len(classes)
    if kind == "multilabel-indicator":  # classes_ are the column indices
        if k < 2 or classes.dtype.kind not in "iu" or not np.array_equal(classes, np.arange(k)):
            _bad("classes_", "of a multilabel classifier must be 0, 1, ..., n_outputs - 1")
        y = np.eye(k, dtype=int)
    elif kind in ("binary", "multiclass"):
        y = classes
    else:
        _bad("_label_type", f"must be 'binary', 'multiclass' or 'multilabel-indicator', "
             f"got {kind!r}")
    lb = LabelBinarizer()
    try:
        lb.fit(y)
    except (TypeError, ValueError) as exc:
        _bad("classes_", f"is not a set of class labels ({exc})")
    if lb.y_type_ != kind:
        _bad("classes_", f"({k} labels) are not {kind} labels")
    if len(lb.classes_) != k or not np.array_equal(lb.classes_, classes):
        _bad("classes_", "must hold distinct labels in sorted order")
    return lb


def _optimizer(opt, spec):
    if not isinstance(opt, dict):
        _bad("_opt_state", "must be a dict of the optimizer's arrays")
    solver = _int("_opt_state['solver']", opt.get("solver"), min(SGD, ADAM), max(SGD, ADAM))
    n = spec.n_params
    state1 = _array("_opt_state['state1']", opt.get("state1"), (n,), spec.dtype, exact=True)
    state2 = _array("_opt_state['state2']", opt.get("state2"), (n if solver == ADAM else 0,),
                    spec.dtype, exact=True)
    hyper = _array("_opt_state['hyper']", opt.get("hyper"), (N_HYPER,), np.float64, exact=True)
    if not (hyper[LR] > 0 and 0 <= hyper[MOMENTUM] <= 1 and hyper[NESTEROV] in (0, 1)
            and 0 <= hyper[BETA1] < 1 and 0 <= hyper[BETA2] < 1 and hyper[EPS] > 0
            and 0 <= hyper[ADAM_T] <= 2 ** 53 and hyper[ADAM_T] == int(hyper[ADAM_T])):
        _bad("_opt_state['hyper']", "holds an out-of-range learning rate, momentum, beta, "
             "epsilon or step count")
    return OptimizerState(solver, state1, state2, hyper)


def _history(d):
    """The per-epoch record partial_fit and warm_start continue from."""
    for name in ("n_iter_", "t_", "loss_"):  # every fit sets them
        if name not in d:
            _bad(name, "is missing")
    if "loss_curve_" in d:
        d["loss_curve_"] = _list("loss_curve_", d["loss_curve_"])
    for name in ("validation_scores_", "validation_loss_curve_"):
        if name in d:
            d[name] = _list(name, d[name], none=True)
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        if name in d:
            d[name] = _real(name, d[name], finite=False, none=True)
    for name in ("n_iter_", "t_", "_no_improvement_count"):
        if name in d:
            d[name] = _int(name, d[name], 0, 2 ** 62)
    if "_dropout_seed" in d:
        d["_dropout_seed"] = _int("_dropout_seed", d["_dropout_seed"], 0, 2 ** 31 - 2)
