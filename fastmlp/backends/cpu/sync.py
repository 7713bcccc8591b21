"""A spin barrier for compiled code running in several Python threads (split epochs).

A split epoch runs ``train.train_epoch`` in several threads at once, each on
whole parts of every batch's rows (``nogil`` kernels, started by ``Trainer``;
lbfgs's ``train.loss_grad_sum`` likewise); the threads meet twice per batch:
once when every part's gradient is written, once when every slice of the
parameter vector is stepped.  The barrier is a
counter and a generation number in a small int64 array, changed with atomic
instructions; a waiting thread spins (with the CPU's pause hint) and gives
its core away (``sched_yield``) every ``_SPINS_PER_YIELD`` spins, so that
fits in more threads than cores still make progress.

Why not numba's ``prange``: a parallel loop is compiled into a separate
function that the epoch links in and optimises again (about 4.5 s of a
first fit's compilation), and its launch per batch costs as much as a
barrier.  Here both threads run the one epoch kernel the one-thread path
runs.

``sync`` layout: [arrivals, generation, abort].  ``abort`` is set (by the
host) when one thread failed, so the other one returns instead of waiting.

Contained (``_ext``): the atomics are llvmlite IR emitted from ``@intrinsic``
(numba's extension API, as pynndescent's popcount).  They are used when
``FASTMLP_NUMBA_EXT`` is not 0 and the import-time probe passes (a tiny
kernel's atomic add, load, store, pause / yield and a one-part barrier give
the expected values).  Otherwise plain numba has no atomics, so ``SPLIT`` is
False and ``Trainer`` runs every epoch in one thread; ``barrier`` is then
only ever called with one part.  Under ``NUMBA_DISABLE_JIT=1`` the barrier is
Python with a lock.
"""

import platform
import sys

import numpy as np
from numba import config, njit, types

from . import _ext

ARRIVALS, GENERATION, ABORT = 0, 1, 2
SYNC_SIZE = 3
_SPINS_PER_YIELD = 256
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_YIELD = None if sys.platform == "win32" else "sched_yield"


@njit(nogil=True, cache=True)
def barrier(sync, parts):
    """One part (plain numba, no atomics: ``SPLIT`` is False): False if aborted."""
    return sync[ABORT] == 0


@njit(nogil=True, cache=True)
def wait_change(arr, idx, old, spins):
    """Whether arr[idx] != old (plain numba: only with ``SPLIT`` on is it waited for)."""
    return arr[idx] != old


@njit(nogil=True, cache=True)
def publish(arr, idx, val):
    """arr[idx] = val (plain numba)."""
    arr[idx] = val


try:  # the extension API the atomics are written in
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError as exc:  # pragma: no cover - a numba / llvmlite that moved them
    _MISSING = exc
else:
    _MISSING = None

    def _slot(context, builder, sig, args):
        """(pointer to arr[idx], val as an int64 or None) for the arguments (arr, idx[, val])."""
        arrty = sig.args[0]
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        ary = context.make_array(arrty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [idx])
        val = context.cast(builder, args[2], sig.args[2], types.int64) if len(args) > 2 else None
        return ptr, val

    @intrinsic
    def _atomic_add(typingctx, arr, idx, val):
        """Atomically arr[idx] += val (int64, sequentially consistent); returns the old value."""
        def codegen(context, builder, sig, args):
            ptr, v = _slot(context, builder, sig, args)
            return builder.atomic_rmw("add", ptr, v, "seq_cst")
        return types.int64(arr, idx, val), codegen

    @intrinsic
    def _atomic_load(typingctx, arr, idx):
        """arr[idx], read with acquire ordering (never hoisted out of a spin loop)."""
        def codegen(context, builder, sig, args):
            ptr, _ = _slot(context, builder, sig, args)
            return builder.load_atomic(ptr, "acquire", 8)
        return types.int64(arr, idx), codegen

    @intrinsic
    def _atomic_store(typingctx, arr, idx, val):
        """arr[idx] = val with release ordering."""
        def codegen(context, builder, sig, args):
            ptr, v = _slot(context, builder, sig, args)
            builder.store_atomic(v, ptr, "release", 8)
            return context.get_dummy_value()
        return types.void(arr, idx, val), codegen

    @intrinsic
    def _relax(typingctx, spins):
        """One spin-wait step: the pause hint (x86); every _SPINS_PER_YIELD-th step also
        sched_yield(), so a descheduled partner gets the core."""
        sig = types.void(spins)

        def codegen(context, builder, sig, args):
            mod = builder.module
            if _X86:
                pause = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
                builder.call(pause, [])
            if _YIELD is not None:
                n = context.cast(builder, args[0], sig.args[0], types.int64)
                mask = ir.Constant(n.type, _SPINS_PER_YIELD - 1)
                due = builder.icmp_unsigned("==", builder.and_(n, mask), mask)
                with builder.if_then(due, likely=False):
                    fn = cgutils.get_or_insert_function(
                        mod, ir.FunctionType(ir.IntType(32), []), _YIELD)
                    builder.call(fn, [])
            return context.get_dummy_value()
        return sig, codegen

    @njit(nogil=True, cache=True)
    def _atomic_barrier(sync, parts):
        """Wait until all ``parts`` threads have arrived; False if one of them aborted."""
        gen = _atomic_load(sync, GENERATION)
        if _atomic_add(sync, ARRIVALS, 1) == parts - 1:
            _atomic_store(sync, ARRIVALS, 0)      # the last one in resets the count ...
            _atomic_add(sync, GENERATION, 1)      # ... and lets the others go
        else:
            spins = 0
            while _atomic_load(sync, GENERATION) == gen:
                if _atomic_load(sync, ABORT) != 0:
                    return False
                _relax(spins)
                spins += 1
        return _atomic_load(sync, ABORT) == 0

    @njit(nogil=True, cache=True)
    def _atomic_wait_change(arr, idx, old, spins):
        """Spin until arr[idx] != old, at most ``spins`` times; whether it changed."""
        for k in range(spins):
            if _atomic_load(arr, idx) != old:
                return True
            _relax(k)
        return _atomic_load(arr, idx) != old

    @njit(nogil=True, cache=True)
    def _atomic_publish(arr, idx, val):
        """arr[idx] = val, visible to a thread spinning in ``wait_change``."""
        _atomic_store(arr, idx, val)

    @njit(cache=True)
    def _probe_kernel(arr):
        """The atomics on a tiny array (the probe): add returns the old value, load and
        store see the array, a yield step runs, a one-part barrier passes."""
        old = _atomic_add(arr, 0, 5)
        _atomic_store(arr, 1, old + 1)
        _relax(_SPINS_PER_YIELD - 1)
        sync = np.zeros(SYNC_SIZE, np.int64)
        return old, _atomic_load(arr, 0), _atomic_barrier(sync, 1), sync[GENERATION]


def _probe():
    """Raise unless the atomics behave on a tiny kernel."""
    if _MISSING is not None:
        raise _MISSING
    arr = np.array([2, 0], np.int64)
    got = _probe_kernel(arr)
    if tuple(got) != (2, 7, True, 1) or arr[1] != 3:
        raise AssertionError(f"atomics gave {tuple(got)}, {arr.tolist()}")


#: whether the atomic barrier replaces the plain functions (see ``_ext``)
ATOMIC = _ext.use("sync", _probe)
if ATOMIC:
    barrier, wait_change, publish = _atomic_barrier, _atomic_wait_change, _atomic_publish

if config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: Python threads under the GIL, a lock
    import threading
    import time

    _lock = threading.Lock()

    def barrier(sync, parts):  # noqa: F811
        """Python version of ``barrier`` (NUMBA_DISABLE_JIT is set)."""
        with _lock:
            gen = int(sync[GENERATION])
            sync[ARRIVALS] += 1
            last = sync[ARRIVALS] == parts
            if last:
                sync[ARRIVALS] = 0
                sync[GENERATION] += 1
        if not last:
            while sync[GENERATION] == gen:
                if sync[ABORT]:
                    return False
                time.sleep(0)
        return sync[ABORT] == 0

    def wait_change(arr, idx, old, spins):  # noqa: F811
        time.sleep(0)
        return arr[idx] != old

    def publish(arr, idx, val):  # noqa: F811
        arr[idx] = val

#: whether an epoch may be split between threads (``Trainer``): the atomic
#: barrier, or the Python one under NUMBA_DISABLE_JIT
SPLIT = ATOMIC or bool(config.DISABLE_JIT)
