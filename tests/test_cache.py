"""The CPU kernels' numba cache is cleared when any source they are built from changes.

Which sources those are is found by following the imports of the backend's
modules (``fastmlp.backends._cache.kernel_sources``), so a module the kernels
reach only through another one (``layout.py`` through ``train.py``) counts,
and a module they never import (the estimator) does not.
"""

from pathlib import Path

import fastmlp
from fastmlp.backends._cache import (
    _numba_cache_dir, is_source_tree, kernel_sources, refresh_numba_cache,
)


def _fake_package(tmp_path, source_tree=True):
    """fastmlp/ with a cpu backend importing, relatively and absolutely, down a chain;
    in a source tree (a pyproject.toml beside it) or as installed (none)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if source_tree:
        (tmp_path / "pyproject.toml").write_text("[project]\nname = 'fastmlp'\n")
    pkg = tmp_path / "fastmlp"
    backend = pkg / "backends" / "cpu"
    backend.mkdir(parents=True)
    files = {
        "__init__.py": "from . import _estimator\n",
        "_estimator.py": "from .backends import cpu\n",       # imports the kernels, not imported
        "_config.py": "FASTMATH = set()\n",
        "_registry.py": "RELU = 3\n",
        "unrelated.py": "X = 1\n",
        "backends/__init__.py": "",
        "backends/scalar.py": "from .._registry import RELU\n\ndef act(z):\n    return z\n",
        "backends/layout.py": "import fastmlp._registry\n",    # reached only through train.py
        "backends/cpu/__init__.py": "from ... import _config\nfrom .train import x\n",
        "backends/cpu/train.py": "import numpy as np\nfrom ..layout import *\nfrom .. import scalar\n"
                                 "x = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    return pkg, backend


def _cached(backend):
    """The cached kernel files where numba keeps them for ``backend`` (``__pycache__``,
    or below NUMBA_CACHE_DIR when that is set)."""
    return sorted(p.name for p in _numba_cache_dir(backend).glob("*.nb[ic]"))


def _plant_cache(backend):
    folder = _numba_cache_dir(backend)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.kernel-1.py311.nbi").write_text("index")
    (folder / "train.kernel-1.py311.1.nbc").write_text("code")


def test_sources_are_found_from_the_imports(tmp_path):
    pkg, backend = _fake_package(tmp_path)
    got = {f.relative_to(pkg).as_posix() for f in kernel_sources(backend)}
    assert got == {
        "_config.py", "_registry.py", "backends/scalar.py", "backends/layout.py",
        "backends/cpu/__init__.py", "backends/cpu/train.py",
    }


def test_cache_survives_until_a_source_changes(tmp_path):
    pkg, backend = _fake_package(tmp_path)
    assert refresh_numba_cache(backend)  # first time: stamped
    _plant_cache(backend)
    assert not refresh_numba_cache(backend)  # nothing changed: kept
    assert len(_cached(backend)) == 2
    # an edit in a module the kernels never import: kept
    (pkg / "_estimator.py").write_text("from .backends import cpu  # edited\n")
    (pkg / "unrelated.py").write_text("X = 2\n")
    assert not refresh_numba_cache(backend)
    assert len(_cached(backend)) == 2
    # an edit in a module reached only through another module's import (numba alone would
    # not notice, and a hand-kept list had left layout.py out)
    for edited in ("backends/layout.py", "backends/scalar.py", "_registry.py"):
        _plant_cache(backend)
        (pkg / edited).write_text((pkg / edited).read_text() + "# edited\n")
        assert refresh_numba_cache(backend), edited
        assert _cached(backend) == []
        assert not refresh_numba_cache(backend)


def test_the_real_package_is_stamped_over_its_imports():
    import fastmlp.backends.cpu as cpu

    backend = Path(cpu.__file__).parent
    stamp = _numba_cache_dir(backend) / "fastmlp-kernel-sources.sha256"
    assert stamp.exists() and len(stamp.read_text()) == 64
    pkg = Path(fastmlp.__file__).parent
    got = {f.relative_to(pkg).as_posix() for f in kernel_sources(backend)}
    for needed in ("_config.py", "_registry.py", "backends/scalar.py", "backends/layout.py",
                   "backends/cpu/train.py", "backends/cpu/losses.py"):
        assert needed in got
    # the estimators and the other backend are not what the CPU kernels are built from
    assert not {"_estimator.py", "__init__.py", "ops.py"} & got
    assert not any(f.startswith("backends/cuda/") for f in got)


def test_a_user_cache_dir_is_refreshed_too(tmp_path, monkeypatch):
    """With NUMBA_CACHE_DIR set, numba caches below it, not in __pycache__: the
    stale kernels there are what must go."""
    import numba

    pkg, backend = _fake_package(tmp_path / "src")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "numba-cache"))
    where = _numba_cache_dir(backend)
    assert where.parent == tmp_path / "numba-cache" and where.name.startswith("cpu_")
    assert refresh_numba_cache(backend)
    assert (where / "fastmlp-kernel-sources.sha256").exists()
    (where / "train.kernel-1.py311.nbi").write_text("index")
    assert not refresh_numba_cache(backend)
    (pkg / "_registry.py").write_text("RELU = 4\n")
    assert refresh_numba_cache(backend)
    assert not list(where.glob("*.nb[ic]"))
    assert not (backend / "__pycache__").exists()  # the in-tree folder was not used


def test_an_installed_package_is_cleared_only_when_the_extensions_change(tmp_path):
    """In site-packages (no pyproject.toml beside the package) the sources are not hashed:
    an upgrade rewrites every file and numba's own check drops what is stale.  The numba
    extensions' state still separates kernels compiled with and without them."""
    pkg, backend = _fake_package(tmp_path, source_tree=False)
    assert not is_source_tree(backend)
    assert refresh_numba_cache(backend, "blas=on")
    _plant_cache(backend)
    (pkg / "backends" / "scalar.py").write_text("# edited\n")
    assert not refresh_numba_cache(backend, "blas=on")  # sources are not read: kept
    assert len(_cached(backend)) == 2
    assert refresh_numba_cache(backend, "blas=off: FASTMLP_NUMBA_EXT=0")  # cleared
    assert _cached(backend) == []


def test_a_source_tree_is_cleared_when_the_extensions_change(tmp_path):
    pkg, backend = _fake_package(tmp_path)
    assert is_source_tree(backend)
    refresh_numba_cache(backend, "views=on")
    _plant_cache(backend)
    assert not refresh_numba_cache(backend, "views=on")
    assert refresh_numba_cache(backend, "views=off: probe failed")
    assert _cached(backend) == []


def test_an_unchanged_tree_is_not_parsed_again(tmp_path, monkeypatch):
    """Start-up (issue 28): the walk's files are kept beside the stamp, and while they
    hash to it the imports are not parsed again."""
    from fastmlp.backends import _cache

    pkg, backend = _fake_package(tmp_path)
    assert refresh_numba_cache(backend, "views=on")
    _plant_cache(backend)

    def no_walk(*args, **kwargs):
        raise AssertionError("the imports were walked again")

    with monkeypatch.context() as m:
        m.setattr(_cache, "kernel_sources", no_walk)
        assert not refresh_numba_cache(backend, "views=on")
        (pkg / "unrelated.py").write_text("X = 3\n")  # not a kernel source: still no walk
        assert not refresh_numba_cache(backend, "views=on")
    assert len(_cached(backend)) == 2
    # a stamp kept without the walk's record (an older fastmlp wrote it): walked once,
    # kept, and the record written
    (_numba_cache_dir(backend) / _cache.WALK_RECORD).unlink()
    assert not refresh_numba_cache(backend, "views=on")
    assert len(_cached(backend)) == 2
    assert (_numba_cache_dir(backend) / _cache.WALK_RECORD).exists()


def test_the_kept_walk_notices_new_modules(tmp_path):
    """What changes the walk without changing a walked file's bytes: a module file
    appearing where an import had found none (``from .. import helpers`` fell back to
    ``backends/__init__.py``), a new module in the backend folder."""
    pkg, backend = _fake_package(tmp_path)
    train = pkg / "backends/cpu/train.py"
    train.write_text(train.read_text() + "from .. import helpers\n")
    assert refresh_numba_cache(backend)
    assert "backends/helpers.py" not in {f.relative_to(pkg).as_posix()
                                         for f in kernel_sources(backend)}
    _plant_cache(backend)
    (pkg / "backends/helpers.py").write_text("Y = 1\n")
    assert refresh_numba_cache(backend)
    assert _cached(backend) == []
    assert not refresh_numba_cache(backend)
    _plant_cache(backend)
    (pkg / "backends/helpers.py").write_text("Y = 2\n")  # now a kernel source
    assert refresh_numba_cache(backend)
    _plant_cache(backend)
    (backend / "extra.py").write_text("from .. import scalar\n")
    assert refresh_numba_cache(backend)
    assert _cached(backend) == []
    assert not refresh_numba_cache(backend)


_FIT = """
import hashlib, warnings
import numpy as np
from fastmlp import MLPClassifier
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.normal(size=(600, 6))
y = rng.integers(0, 100, 600)
m = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, tol=0, random_state=0,
                  batch_size=100).fit(X, y)
assert m.coefs_[0].dtype == np.float32
print(hashlib.sha256(b"".join(a.tobytes() for a in m.coefs_ + m.intercepts_)).hexdigest())
"""


def test_cold_and_warm_processes_fit_the_same_model(tmp_path):
    """A process that compiles the kernels and one that loads them from numba's cache fit
    the same model, bit for bit (``backends/cpu/calls.py``, ``CALLEE_MATH``: a callee's
    code was resolved to its own compilation in the first and to the copy inside
    ``train_epoch``'s cached code in the second, and with "reassoc" the two rounded
    softmax_row's sum differently: a float32 fit's weights differed)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    root = Path(fastmlp.__file__).parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])

    def fit():
        done = subprocess.run([sys.executable, "-c", _FIT], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[-1]

    cold = fit()
    cached = list((tmp_path / "numba-cache").rglob("train.train_epoch-*.nbi"))
    assert cached, "the first process cached no train_epoch"
    warm = fit()
    assert cold == warm
