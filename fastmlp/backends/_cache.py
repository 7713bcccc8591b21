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
    digest = hashlib.sha256(f"numba extensions: {ext_state}\n".encode())
    if is_source_tree(backend_dir):
        files = kernel_sources(backend_dir)
        top = Path(os.path.commonpath(files))
        for f in files:
            digest.update(f.relative_to(top).as_posix().encode())
            digest.update(f.read_bytes())
    stamp_text = digest.hexdigest()
    cache_dir = _numba_cache_dir(backend_dir)
    stamp = cache_dir / "fastmlp-kernel-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == stamp_text:
            return False
        if cache_dir.is_dir():
            for f in cache_dir.iterdir():
                if f.suffix in (".nbi", ".nbc"):
                    f.unlink()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(stamp_text)
        os.replace(tmp, stamp)
        return True
    except OSError:
        return False
