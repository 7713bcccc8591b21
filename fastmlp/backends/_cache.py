"""Keep numba's on-disk cache honest across modules.

numba's ``cache=True`` keys a compiled kernel on its own source file only:
after an edit to a function it *calls* in another module (a scalar activation,
a dense-layer helper), the stale machine code would be loaded again.  The CPU
backend therefore stamps its cache with a hash of every source file the
kernels are built from, and clears the cache when the hash changes.

Which files those are is read from the code, not kept by hand: starting from
the backend folder's modules, the ``import`` statements are followed
(parsed, not executed) to every module of the package they reach, however
deep.  ``from pkg import name`` reaches ``pkg/name.py`` when that is a
module, else ``pkg/__init__.py``; imports of other packages (numba, NumPy)
are not followed.  Parsing and hashing a dozen small files costs a few
milliseconds at import.
"""

import ast
import hashlib
import os
from pathlib import Path


def _module_file(pkg_root, parts):
    """The file of module ``parts`` (a list of names below the package root), or None."""
    base = pkg_root.parent.joinpath(*parts) if parts else pkg_root
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imported_files(path, pkg_root):
    """The package's own module files that ``path`` imports (relative or absolute)."""
    here = list(path.relative_to(pkg_root.parent).with_suffix("").parts)
    package = here[:-1]  # the package a module (or an __init__.py) lives in
    if here[-1] == "__init__":
        here = package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [(a.name.split("."), None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            else:
                base = []
            mod = base + (node.module.split(".") if node.module else [])
            targets = [(mod, [a.name for a in node.names])]
        else:
            continue
        for mod, names in targets:
            if not mod or mod[0] != pkg_root.name:
                continue  # another package
            sub = [_module_file(pkg_root, mod + [n]) for n in names or []]
            found += [f for f in sub if f is not None]
            if names is None or None in sub:
                found.append(_module_file(pkg_root, mod))
    return [f for f in found if f is not None]


def kernel_sources(backend_dir):
    """Every module file of the package that the backend folder's modules import, recursively.

    Sorted; includes the backend's own modules.
    """
    backend_dir = Path(backend_dir).resolve()
    pkg_root = backend_dir
    while (pkg_root.parent / "__init__.py").is_file():
        pkg_root = pkg_root.parent  # the top package (fastmlp/)
    todo = sorted(backend_dir.glob("*.py"))
    seen = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [g for g in _imported_files(f, pkg_root) if g not in seen]
    return sorted(seen)


def refresh_numba_cache(backend_dir):
    """Delete ``backend_dir/__pycache__/*.nbi|*.nbc`` when the kernels' sources changed.

    Best effort: a read-only installation (where numba caches elsewhere or not
    at all) is left alone.
    """
    backend_dir = Path(backend_dir)
    digest = hashlib.sha256()
    files = kernel_sources(backend_dir)
    top = Path(os.path.commonpath(files))
    for f in files:
        digest.update(f.relative_to(top).as_posix().encode())
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
