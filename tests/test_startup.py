"""Start-up (issue 28 item 3): what a fresh ``import fastmlp`` does and does not do.

A worker process that imports fastmlp and fits a tiny model should take at most
0.5 s more than one fitting scikit-learn's MLPClassifier (the benchmark's
start-up row measures that; no timing is asserted here).  These tests catch
the regressions that would bring the time back: optional parts imported
eagerly, and the cyclic garbage collector left in another state than found
(``fastmlp/__init__.py`` pauses it while numba and fastmlp's modules load).
"""

import json
import subprocess
import sys
import textwrap

import pytest

_IMPORT = textwrap.dedent("""
    import gc, json, sys
    {before}
    import fastmlp
    print(json.dumps({{
        "modules": sorted(sys.modules),
        "gc_enabled": gc.isenabled(),
        "freeze_count": gc.get_freeze_count(),
    }}))
""")


def _fresh_import(before=""):
    run = subprocess.run([sys.executable, "-c", _IMPORT.format(before=before)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# packages a fit does not need: imported where they are used, never by ``import fastmlp``
OPTIONAL = ("dask", "distributed", "onnx", "onnxruntime", "skl2onnx", "skops", "torch",
            "matplotlib", "cupy", "numba.cuda", "fastmlp.dask", "fastmlp.onnx",
            "fastmlp.plotting", "fastmlp.ops", "fastmlp._persist", "fastmlp.backends.cuda")


def test_import_leaves_the_optional_parts_alone():
    got = _fresh_import()
    loaded = [m for m in got["modules"] if m.startswith(OPTIONAL)
              and any(m == p or m.startswith(p + ".") for p in OPTIONAL)]
    assert loaded == []
    assert "fastmlp.backends.cpu" in got["modules"]  # what a fit needs is there


@pytest.mark.parametrize("before, enabled, frozen", [
    ("", True, 0),
    ("gc.disable()", False, 0),
    ("x = [[] for _ in range(100)]; gc.freeze(); n = gc.get_freeze_count()", True, None),
])
def test_import_leaves_the_garbage_collector_as_found(before, enabled, frozen):
    got = _fresh_import(before)
    assert got["gc_enabled"] is enabled
    if frozen is not None:
        assert got["freeze_count"] == frozen
    else:  # a process that froze objects itself: they stay frozen (not thawed by fastmlp)
        assert got["freeze_count"] > 0


def test_ops_is_still_an_attribute():
    import fastmlp

    assert "ops" in dir(fastmlp) and "ops" in fastmlp.__all__
    assert fastmlp.ops.softmax is not None
    from fastmlp import ops

    assert ops is fastmlp.ops
    with pytest.raises(AttributeError):
        fastmlp.not_there


def test_the_bench_times_this_tree_from_any_working_folder(tmp_path, monkeypatch):
    """The start-up row's fresh processes import the fastmlp beside the bench, even when
    the bench runs from a folder holding another fastmlp (``-c`` puts the working
    folder first on sys.path)."""
    from fastmlp import _bench

    other = tmp_path / "fastmlp"
    other.mkdir()
    (other / "__init__.py").write_text("raise ImportError('the wrong fastmlp')\n")
    monkeypatch.chdir(tmp_path)
    assert _bench.startup_seconds() > 0
