"""The switch and the import-time checks of the CPU kernels' numba extensions.

Three modules reach below numba's public decorators, each for a measured
gain (``docs/user_guide/numba_internals.rst`` lists them with the figures):

=========  ===============================================================
``blas``   the GEMMs call NumPy's own OpenBLAS (``cblas_?gemm``) by address
``views``  views of the flat buffers without reference counting
``sync``   the atomic spin barrier of split epochs (the threads of a batch's parts)
=========  ===============================================================

Each module defines its plain-numba version first (``np.dot``, a slice and
a reshape, no split epochs) and uses its extension only when ``use`` says so:
the environment variable ``FASTMLP_NUMBA_EXT`` is not ``0``, numba runs
compiled code (not ``NUMBA_DISABLE_JIT``), and the module's probe passes.  A
probe imports the numba and llvmlite names the extension needs and runs the
extension on a tiny kernel against NumPy; a probe that raises turns that
extension off with a ``RuntimeWarning``, so a numba release that changes an
internal costs speed, not a fit.

A probe that passed is remembered (issue 28, start-up): its key, a hash of
what its outcome depends on (the extension's name, the probe and its
module's source, this module's source, the Python, NumPy, numba and llvmlite
versions, the machine and the CPU numba compiles for, and what the caller
adds: ``blas`` the BLAS library it calls), is kept in
``fastmlp-numba-ext.json`` beside the cached kernels, and a process that
finds its key there uses the extension without running the probe's tiny
kernel again (each is a cached kernel to load: ~20 ms of a fresh import for
the four here).  A probe that fails is never remembered: it runs, and warns,
in every process.  Only the three extensions above are remembered.

``STATUS`` says, per extension, "on" or why it is off; ``state()`` is that as
one string, which ``_cache.refresh_numba_cache`` keeps in its stamp: kernels
compiled with an extension are never loaded from the cache by a process
running without it.
"""

import hashlib
import json
import os
import platform
import sys
import warnings
from pathlib import Path

from numba import config

ENV = "FASTMLP_NUMBA_EXT"
_SWITCHED_OFF = os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no")

#: extension name -> "on", or "off: <why>"
STATUS = {}

#: the extensions whose passed probes are remembered, and where
REMEMBERED = ("blas", "sync", "views")
MEMO = "fastmlp-numba-ext.json"
_MEMO_KEEP = 32  # the most keys kept (other versions, CPUs sharing a NUMBA_CACHE_DIR)


def use(name, probe, off_reason=None, key=""):
    """Whether extension ``name`` is used in this process (and record why in STATUS).

    ``probe()`` checks the extension on a tiny kernel and raises when it does not
    behave; ``off_reason`` (a string) turns this one extension off before probing.
    A probe of an extension in ``REMEMBERED`` that passed before with the same
    memo key (see the module's docstring; ``key``: a string of what else its
    outcome depends on) is not run again.
    """
    if config.DISABLE_JIT:
        reason = "NUMBA_DISABLE_JIT=1"
    elif _SWITCHED_OFF:
        reason = f"{ENV}={os.environ[ENV]}"
    else:
        reason = off_reason
    if reason is None:
        memo = _memo_key(name, probe, key) if name in REMEMBERED else None
        if memo is None or not _remembered(probe, memo):
            try:
                probe()
            except Exception as exc:  # any failure of an internal: use plain numba
                reason = f"probe failed: {type(exc).__name__}: {exc}"
                warnings.warn(f"fastmlp: the numba extension {name!r} is off ({reason}); "
                              "the kernels use plain numba instead", RuntimeWarning,
                              stacklevel=2)
            else:
                if memo is not None:
                    _remember(probe, memo)
    STATUS[name] = "on" if reason is None else f"off: {reason}"
    return reason is None


_ENVIRONMENT = []  # the part of every memo key that is the process's (computed once)


def _environment():
    if not _ENVIRONMENT:
        import llvmlite
        import numba
        import numpy
        from llvmlite import binding as ll

        _ENVIRONMENT.extend([
            hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            sys.version, platform.machine(),
            numpy.__version__, numba.__version__, llvmlite.__version__,
            config.CPU_NAME or ll.get_host_cpu_name(),
            config.CPU_FEATURES or ll.get_host_cpu_features().flatten(),
        ])
    return _ENVIRONMENT


def prepare_numba():
    """Do numba's set-up for its first compiled call now: its extensions' entry points
    and the CPU target's typing and lowering registries (~0.15 s here).

    Called at import (below), where ``fastmlp/__init__.py`` has the cyclic garbage
    collector paused: the set-up allocates ~100,000 lasting objects, and at a
    first fit's first kernel call, the collector running, it cost ~30 ms more.
    Before the probes' passes were remembered, the first probe did this at
    import.  Best effort: a numba whose internals moved does it at its first call.
    """
    if config.DISABLE_JIT:
        return
    try:
        from numba.core import entrypoints
        from numba.core.registry import cpu_target

        entrypoints.init_all()
        cpu_target.target_context.refresh()
    except Exception:  # pragma: no cover - numba moved them: its first call does it
        pass


def _memo_key(name, probe, key):
    """The hash of what the outcome of ``probe`` depends on, or None if it cannot be told."""
    try:
        parts = [name, key, probe.__qualname__,
                 hashlib.sha256(Path(probe.__code__.co_filename).read_bytes()).hexdigest(),
                 *_environment()]
    except Exception:  # a file that cannot be read, an llvmlite without the calls: probe
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _memo_file(probe):
    """The memo beside the cached kernels of the probe's module (numba's folder for them)."""
    from .._cache import _numba_cache_dir

    return _numba_cache_dir(Path(probe.__code__.co_filename).parent) / MEMO


def _remembered_keys(path):
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _remembered(probe, memo):
    """Whether a probe with key ``memo`` passed before."""
    try:
        return memo in _remembered_keys(_memo_file(probe))
    except Exception:
        return False


def _remember(probe, memo):
    """Keep ``memo`` (best effort: a folder that cannot be written is left alone)."""
    try:
        path = _memo_file(probe)
        keys = [k for k in _remembered_keys(path) if k != memo] + [memo]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keys[-_MEMO_KEEP:]))
        os.replace(tmp, path)
    except Exception:
        pass


def state():
    """The extensions' STATUS as one string (part of the kernel cache's stamp)."""
    return "; ".join(f"{name}={how}" for name, how in sorted(STATUS.items()))


prepare_numba()
