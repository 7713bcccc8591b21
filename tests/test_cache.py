"""The CPU kernels' numba cache is cleared when any source they are built from changes."""

from pathlib import Path

from fastmlp.backends._cache import refresh_numba_cache


def _fake_package(tmp_path):
    pkg = tmp_path / "fastmlp"
    backend = pkg / "backends" / "cpu"
    backend.mkdir(parents=True)
    (pkg / "_config.py").write_text("FASTMATH = set()\n")
    (pkg / "_registry.py").write_text("RELU = 3\n")
    (pkg / "backends" / "scalar.py").write_text("def act(z):\n    return z\n")
    (backend / "train.py").write_text("x = 1\n")
    return pkg, backend


def _cached(backend):
    return sorted(p.name for p in (backend / "__pycache__").glob("*.nb[ic]"))


def test_cache_survives_until_a_source_changes(tmp_path):
    pkg, backend = _fake_package(tmp_path)
    assert refresh_numba_cache(backend)  # first time: stamped
    (backend / "__pycache__" / "train.kernel-1.py311.nbi").write_text("index")
    (backend / "__pycache__" / "train.kernel-1.py311.1.nbc").write_text("code")
    assert not refresh_numba_cache(backend)  # nothing changed: kept
    assert len(_cached(backend)) == 2
    # an edit in another module the kernels call (numba alone would not notice)
    (pkg / "backends" / "scalar.py").write_text("def act(z):\n    return 2 * z\n")
    assert refresh_numba_cache(backend)
    assert _cached(backend) == []
    assert not refresh_numba_cache(backend)


def test_the_real_package_is_stamped():
    import fastmlp.backends.cpu as cpu

    stamp = Path(cpu.__file__).parent / "__pycache__" / "fastmlp-kernel-sources.sha256"
    assert stamp.exists() and len(stamp.read_text()) == 64
