"""Keep numba's on-disk cache honest across modules.

numba's ``cache=True`` keys a compiled kernel on its own source file only:
after an edit to a function it *calls* in another module (a scalar activation,
a dense-layer helper), the stale machine code would be loaded again.  The CPU
backend therefore stamps its cache with a hash of every source file the
kernels are built from, and clears the cache when the hash changes.  Hashing a
dozen small files costs well under a millisecond at import.
"""

import hashlib
import os
from pathlib import Path


def _sources(backend_dir):
    pkg = backend_dir.parent.parent  # fastmlp/
    files = sorted(backend_dir.glob("*.py"))
    files += [backend_dir.parent / "scalar.py", pkg / "_config.py", pkg / "_registry.py"]
    return [f for f in files if f.exists()]


def refresh_numba_cache(backend_dir):
    """Delete ``backend_dir/__pycache__/*.nbi|*.nbc`` when the kernels' sources changed.

    Best effort: a read-only installation (where numba caches elsewhere or not
    at all) is left alone.
    """
    backend_dir = Path(backend_dir)
    digest = hashlib.sha256()
    for f in _sources(backend_dir):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    stamp_text = digest.hexdigest()
    cache_dir = backend_dir / "__pycache__"
    stamp = cache_dir / "fastmlp-kernel-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == stamp_text:
            return False
        if cache_dir.is_dir():
            for f in cache_dir.iterdir():
                if f.suffix in (".nbi", ".nbc"):
                    f.unlink()
        cache_dir.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(stamp_text)
        os.replace(tmp, stamp)
        return True
    except OSError:
        return False
