"""Every public class and function carries a docstring with a runnable example.

The examples themselves run as doctests (``--doctest-modules`` in pyproject.toml).
"""

import inspect

import pytest

import fastmlp
import fastmlp.dask as fdask
import fastmlp.onnx as fonnx
import fastmlp.ops as ops
import fastmlp.plotting as plotting

PUBLIC = (
    [(f"ops.{n}", getattr(ops, n)) for n in ops.__all__]
    + [(n, getattr(fastmlp, n)) for n in fastmlp.__all__ if n not in ("ops", "__version__")]
    + [(f"plotting.{n}", getattr(plotting, n)) for n in plotting.__all__]
    + [(f"dask.{n}", getattr(fdask, n)) for n in fdask.__all__]
    + [(f"onnx.{n}", getattr(fonnx, n)) for n in fonnx.__all__]
)


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_api_has_an_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{name} has no example in its docstring"


@pytest.mark.parametrize("cls", [fastmlp.MLPClassifier, fastmlp.MLPRegressor])
def test_estimator_methods_are_documented(cls):
    for meth in ("fit", "partial_fit", "predict", "score"):
        doc = inspect.getdoc(getattr(cls, meth)) or ""
        assert "Parameters" in doc and "Returns" in doc, f"{cls.__name__}.{meth}"
