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

``STATUS`` says, per extension, "on" or why it is off; ``state()`` is that as
one string, which ``_cache.refresh_numba_cache`` keeps in its stamp: kernels
compiled with an extension are never loaded from the cache by a process
running without it.
"""

import os
import warnings

from numba import config

ENV = "FASTMLP_NUMBA_EXT"
_SWITCHED_OFF = os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no")

#: extension name -> "on", or "off: <why>"
STATUS = {}


def use(name, probe, off_reason=None):
    """Whether extension ``name`` is used in this process (and record why in STATUS).

    ``probe()`` checks the extension on a tiny kernel and raises when it does not
    behave; ``off_reason`` (a string) turns this one extension off before probing.
    """
    if config.DISABLE_JIT:
        reason = "NUMBA_DISABLE_JIT=1"
    elif _SWITCHED_OFF:
        reason = f"{ENV}={os.environ[ENV]}"
    else:
        reason = off_reason
    if reason is None:
        try:
            probe()
        except Exception as exc:  # any failure of an internal: use plain numba
            reason = f"probe failed: {type(exc).__name__}: {exc}"
            warnings.warn(f"fastmlp: the numba extension {name!r} is off ({reason}); "
                          "the kernels use plain numba instead", RuntimeWarning, stacklevel=2)
    STATUS[name] = "on" if reason is None else f"off: {reason}"
    return reason is None


def state():
    """The extensions' STATUS as one string (part of the kernel cache's stamp)."""
    return "; ".join(f"{name}={how}" for name, how in sorted(STATUS.items()))
