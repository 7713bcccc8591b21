"""The numba extensions are contained (``fastmlp.backends.cpu._ext``).

Each is probed at import and says whether it is on; a probe that fails turns
its extension off with a warning instead of failing a fit; ``FASTMLP_NUMBA_EXT=0``
turns them all off, and a fit with them off gives the same model (to the
rounding of another BLAS) in one thread.  CI also runs the kernels' tests with
them off (``.ci/run``).
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from fastmlp.backends import cpu
from fastmlp.backends.cpu import _ext, blas, sync, views

OFF = os.environ.get("FASTMLP_NUMBA_EXT", "1") == "0"


def test_every_extension_reports_its_state():
    assert set(_ext.STATUS) == {"blas", "sync", "views"}
    for name, how in _ext.STATUS.items():
        assert how == "on" or how.startswith("off: "), (name, how)
        if OFF:
            assert how == "off: FASTMLP_NUMBA_EXT=0", (name, how)
    assert views.BORROWED == (_ext.STATUS["views"] == "on")
    assert sync.ATOMIC == (_ext.STATUS["sync"] == "on")
    assert (blas.kernel_blas_path() is not None) == (_ext.STATUS["blas"] == "on")
    assert [part.split("=", 1)[0] for part in _ext.state().split("; ")] == sorted(_ext.STATUS)


def test_without_the_atomic_barrier_no_epoch_is_split(monkeypatch):
    monkeypatch.setattr(sync, "SPLIT", False)
    assert cpu._can_split() is False


def test_a_failing_probe_turns_its_extension_off_with_a_warning(monkeypatch):
    monkeypatch.setattr(_ext, "STATUS", dict(_ext.STATUS))
    monkeypatch.setattr(_ext, "_SWITCHED_OFF", False)

    def probe():
        raise AttributeError("'JITCodeLibrary' object has no attribute '_reload_init'")

    with pytest.warns(RuntimeWarning, match="'demo' is off .*_reload_init"):
        assert _ext.use("demo", probe) is False
    assert _ext.STATUS["demo"].startswith("off: probe failed: AttributeError")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.use("demo", lambda: None) is True
        assert _ext.use("demo", probe, "not here") is False  # an off reason: no probe
    assert _ext.STATUS["demo"] == "off: not here"


_FIT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from fastmlp import MLPClassifier
    from fastmlp.backends.cpu import _ext
    rng = np.random.default_rng(7)
    X = rng.standard_normal((150, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0)
    out = {}
    for act in ("relu", "maxout"):
        clf = MLPClassifier(hidden_layer_sizes=(9, 5), activation=act, max_iter=8,
                            batch_size=40, random_state=0).fit(X, y)
        out[act] = [clf.loss_curve_, clf.predict_proba(X[:3]).tolist()]
    out["status"] = _ext.STATUS
    print(json.dumps(out))
""")


def _fit(env):
    run = subprocess.run([sys.executable, "-c", _FIT], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(OFF, reason="the extensions are off in this process too: the comparison "
                                 "of off with on runs where they are on")
def test_the_fallbacks_fit_the_same_model(tmp_path):
    """A fresh process with FASTMLP_NUMBA_EXT=0 (its own numba cache: the kernels differ)
    fits the same models as this process's settings do."""
    off = _fit(dict(os.environ, FASTMLP_NUMBA_EXT="0", NUMBA_CACHE_DIR=str(tmp_path / "off")))
    assert set(off.pop("status").values()) == {"off: FASTMLP_NUMBA_EXT=0"}
    here = _fit(dict(os.environ))  # this process's settings and numba cache
    here.pop("status")
    for act in here:
        np.testing.assert_allclose(off[act][0], here[act][0], rtol=1e-7, err_msg=act)
        np.testing.assert_allclose(off[act][1], here[act][1], rtol=1e-7, atol=1e-12,
                                   err_msg=act)


@pytest.fixture
def memo_here(tmp_path, monkeypatch):
    """``_ext.use`` as in a process where the extensions are on, remembering in tmp_path."""
    from numba import config

    if config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: no probe runs")
    monkeypatch.setattr(_ext, "STATUS", dict(_ext.STATUS))
    monkeypatch.setattr(_ext, "_SWITCHED_OFF", False)
    monkeypatch.setattr(_ext, "_memo_file", lambda probe: tmp_path / _ext.MEMO)
    return tmp_path / _ext.MEMO


def test_a_passed_probe_is_remembered_a_failed_one_is_not(memo_here):
    """Start-up (issue 28): a process that finds its probe's key among the passes
    kept beside the cached kernels uses the extension without running the probe."""
    calls = []

    def probe():
        calls.append("probe")

    assert _ext.use("sync", probe) is True
    assert calls == ["probe"] and memo_here.exists()
    assert _ext.use("sync", probe) is True  # remembered: not run again
    assert calls == ["probe"] and _ext.STATUS["sync"] == "on"
    assert _ext.use("sync", probe, key="another library") is True  # another key: run
    assert len(calls) == 2
    assert _ext.use("demo", probe) and _ext.use("demo", probe)  # not in REMEMBERED: run
    assert len(calls) == 4

    def failing():
        calls.append("failing")
        raise AttributeError("moved")

    for _ in range(2):  # never remembered: run, and warn, each time
        with pytest.warns(RuntimeWarning, match="'views' is off"):
            assert _ext.use("views", failing) is False
    assert calls.count("failing") == 2
    assert _ext.STATUS["views"].startswith("off: probe failed")
    # an off reason or the switch: no probe and nothing remembered
    assert _ext.use("views", probe, "not here") is False
    assert len(calls) == 6


def test_the_memo_key_follows_the_probes_source(tmp_path):
    """An edit to the module that holds the probe (the extension's code) runs it again."""
    src = tmp_path / "ext_module.py"
    src.write_text("def probe():\n    pass\n")
    ns = {}
    exec(compile(src.read_text(), str(src), "exec"), ns)
    key = _ext._memo_key("sync", ns["probe"], "")
    assert key == _ext._memo_key("sync", ns["probe"], "")
    assert key != _ext._memo_key("sync", ns["probe"], "lib")
    assert key != _ext._memo_key("views", ns["probe"], "")
    src.write_text("def probe():\n    pass  # edited\n")
    assert key != _ext._memo_key("sync", ns["probe"], "")


@pytest.mark.skipif(OFF, reason="the extensions are off: no probe runs")
def test_a_fresh_import_runs_no_probe_kernel_when_the_passes_are_remembered():
    """This process's import probed (or found the passes); a fresh process with the same
    settings and numba cache uses the extensions without loading a probe's kernel."""
    from numba import config

    if config.DISABLE_JIT or set(_ext.STATUS.values()) != {"on"}:
        pytest.skip("an extension is off here")
    code = textwrap.dedent("""
        import json
        import fastmlp
        from fastmlp.backends.cpu import _ext, blas, sync, views
        print(json.dumps({"status": _ext.STATUS, "loaded": [
            len(m._probe_kernel.signatures) for m in (blas, sync, views)]}))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(got["status"].values()) == {"on"}
    assert got["loaded"] == [0, 0, 0]
