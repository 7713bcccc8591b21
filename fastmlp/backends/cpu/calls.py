"""``call(kernel, args)``: a compiled kernel calls another one, ``kernel(*args)``.

This is numba's ordinary call: numba links the callee's code into the caller
and LLVM optimises the whole again.  The kernels write ``call(forward_batch,
(...))`` for the calls made once per batch or chunk (``forward_batch``,
``dense_grads``, ``output_loss``, the optimizer steps, the barrier, ...), so
that those calls are marked in one way and can be found.

Until issue #27 these calls went by address: an ``@intrinsic`` compiled the
callee, registered its machine code with LLVM under a name of its own and
stored that registration with the caller's cache entry.  It saved about 0.6 s
of a first fit's compilation (numba 0.68, ``benchmarks/RESULTS.md``, fifth
session) and nothing at run time, and it leaned on numba's linker, calling
convention and cache internals (``_reload_init`` first exists in numba 0.63):
a change there would crash a process that loads a cached kernel.  That was
too much risk for a one-time 0.6 s, so it was removed
(``docs/user_guide/numba_internals.rst``).
"""

from numba import njit


@njit(inline="always")
def call(kernel, args):
    """kernel(*args), compiled as a direct call of the kernel."""
    return kernel(*args)
