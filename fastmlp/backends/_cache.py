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
are not followed.  Parsing a dozen small files costs 0.05-0.15 s of a fresh
process's import (measured here, issue 28), so the walk's result is kept beside
the stamp (``fastmlp-kernel-sources.list``: the files it reached and the
candidate module files it looked for and did not find): while every file of
that list still hashes to the stamp, no listed absent file has appeared and
the backend folder holds the same modules, the walk would find the same
files, and only their bytes are read (a few milliseconds).  Otherwise the
imports are walked again.

That applies where the sources can change under an installed copy: a source
tree (``pyproject.toml`` beside the package, as in an editable install or a
checkout).  In an installed package (a wheel in site-packages) every
upgrade rewrites every file, and numba's own check of each kernel's file
already drops what is stale; there the stamp holds only the state of the
numba extensions (``cpu._ext.state()``), so that kernels compiled with an
extension on are not loaded by a process that runs with it off (or the other
way round), and nothing is deleted unless that state changed.
"""

import ast
import hashlib
import json
import os
from pathlib import Path

STAMP = "fastmlp-kernel-sources.sha256"
WALK_RECORD = "fastmlp-kernel-sources.list"


def _module_file(pkg_root, parts, absent=None):
    """The file of module ``parts`` (a list of names below the package root), or None;
    the candidates looked for and not found before it are added to the set ``absent``."""
    base = pkg_root.parent.joinpath(*parts) if parts else pkg_root
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
        if absent is not None:
            absent.add(f)
    return None


def _imported_files(path, pkg_root, absent=None):
    """The package's own module files that ``path`` imports (relative or absolute);
    the candidate files looked for and not found are added to the set ``absent``."""
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
            sub = [_module_file(pkg_root, mod + [n], absent) for n in names or []]
            found += [f for f in sub if f is not None]
            if names is None or None in sub:
                found.append(_module_file(pkg_root, mod, absent))
    return [f for f in found if f is not None]


def _package_root(backend_dir):
    pkg_root = Path(backend_dir).resolve()
    while (pkg_root.parent / "__init__.py").is_file():
        pkg_root = pkg_root.parent  # the top package (fastmlp/)
    return pkg_root


def kernel_sources(backend_dir, absent=None):
    """Every module file of the package that the backend folder's modules import, recursively.

    Sorted; includes the backend's own modules.  The candidate module files the
    walk looked for and did not find are added to the set ``absent``.
    """
    backend_dir = Path(backend_dir).resolve()
    pkg_root = _package_root(backend_dir)
    todo = sorted(backend_dir.glob("*.py"))
    seen = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [g for g in _imported_files(f, pkg_root, absent) if g not in seen]
    return sorted(seen)


def _sources_digest(ext_state, files):
    """The stamp: the extensions' state, then each file's path (below the files'
    common folder) and bytes."""
    digest = hashlib.sha256(f"numba extensions: {ext_state}\n".encode())
    if files:
        top = Path(os.path.commonpath(files))
        for f in files:
            digest.update(f.relative_to(top).as_posix().encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def _recorded_walk(record, backend_dir):
    """The files of the walk kept in ``record`` if the walk would find them again as long
    as their bytes are unchanged (the caller checks those against the stamp), else None:
    every listed file is there, none of the listed absent candidates has appeared, and
    the backend folder holds the listed modules."""
    try:
        kept = json.loads(record.read_text())
        root = _package_root(backend_dir).parent
        files = [root / f for f in kept["files"]]
        absent = [root / f for f in kept["absent"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    backend = set(Path(backend_dir).resolve().glob("*.py"))
    if not backend <= set(files) or any(f.exists() for f in absent):
        return None
    if not all(f.is_file() for f in files):
        return None
    return files


def _keep_walk(record, files, absent, backend_dir):
    """Write the walk's files and absent candidates (paths below the package's folder)."""
    root = _package_root(backend_dir).parent
    text = json.dumps({"files": [f.relative_to(root).as_posix() for f in files],
                       "absent": sorted(f.relative_to(root).as_posix() for f in absent)})
    tmp = record.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, record)


def _numba_cache_dir(backend_dir):
    """Where numba caches the kernels of ``backend_dir``'s modules: its ``__pycache__``,
    or the folder under ``NUMBA_CACHE_DIR`` (or the user-wide cache) that numba's
    own locators pick for them."""
    backend_dir = Path(backend_dir)
    try:
        from numba.core import caching

        impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
        def probe():
            pass

        py_file = str(next(iter(sorted(backend_dir.glob("*.py")))))
        for cls in impl._locator_classes:
            locator = cls.from_function(probe, py_file)
            if locator is not None:
                return Path(locator.get_cache_path())
    except Exception:  # numba's private API changed: the in-tree folder
        pass
    return backend_dir / "__pycache__"


def is_source_tree(backend_dir):
    """Whether the package that holds ``backend_dir`` sits in a source tree (its parent
    folder has the project's ``pyproject.toml``), not in site-packages."""
    pkg_root = Path(backend_dir).resolve()
    while (pkg_root.parent / "__init__.py").is_file():
        pkg_root = pkg_root.parent
    return (pkg_root.parent / "pyproject.toml").is_file()


def refresh_numba_cache(backend_dir, ext_state=""):
    """Delete the kernels' cached ``*.nbi|*.nbc`` files when their sources (in a
    source tree) or the numba extensions' state ``ext_state`` changed; True when
    the stamp was (re)written.

    The cache folder is the one numba uses for the backend's modules
    (``__pycache__`` or below ``NUMBA_CACHE_DIR``).  Best effort: a folder
    that cannot be written is left alone.
    """
    backend_dir = Path(backend_dir)
    cache_dir = _numba_cache_dir(backend_dir)
    stamp, record = cache_dir / STAMP, cache_dir / WALK_RECORD
    try:
        old = stamp.read_text()
    except OSError:
        old = None
    walked = None
    if is_source_tree(backend_dir):
        files = _recorded_walk(record, backend_dir) if old is not None else None
        if files is not None and _sources_digest(ext_state, files) == old:
            return False  # the walk would find these files again: unchanged
        absent = set()
        files = kernel_sources(backend_dir, absent)
        walked = (files, absent)
        stamp_text = _sources_digest(ext_state, files)
    else:
        stamp_text = _sources_digest(ext_state, [])
    try:
        if old == stamp_text:
            if walked is not None:
                _keep_walk(record, *walked, backend_dir)  # a stamp without a kept walk
            return False
        if cache_dir.is_dir():
            for f in cache_dir.iterdir():
                if f.suffix in (".nbi", ".nbc"):
                    f.unlink()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(stamp_text)
        os.replace(tmp, stamp)
        if walked is not None:
            _keep_walk(record, *walked, backend_dir)
        return True
    except OSError:
        return False
