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

#: The fast-math flags of every kernel that another kernel calls (all of ``activations``,
#: ``dense``, ``losses``, ``optimizers`` and ``train``'s ``forward_batch`` /
#: ``rows_forward_backward``): none.  Only the entry points that Python calls
#: (``train_epoch``, ``loss_grad_sum``, ``loss_grad_batch``, ``predict_forward``,
#: ``predict_csr``) are compiled with ``_config.FASTMATH``.
#:
#: Why (issue: a cold process and a warm one fitted different models): numba links a
#: copy of each callee into its caller's code as a ``linkonce_odr`` function, optimised
#: again with the caller, and a process resolves each such name to the *first* copy it
#: loaded.  In a process that compiles the kernels, that is the callee compiled on its
#: own (for ``softmax_row``, the ``register_jitable`` helper's own compilation); in one
#: that loads ``train_epoch`` from numba's cache, it is the copy inside
#: ``train_epoch``'s cached code.  With "reassoc" the two copies need not round alike:
#: LLVM regrouped ``softmax_row``'s sum of exponentials differently when it optimised
#: the copy again inside ``output_loss``, and a float32 fit's loss moved in the 10th
#: digit (5.319196032975222 compiled, ...450699 cached).  Without fast-math flags
#: every copy of a callee computes the IEEE result of its source, whichever module
#: optimised it, so which copy runs does not matter.  (``register_jitable`` helpers
#: take the flags of the kernel that compiles them, so they follow this too.)
#: ``tests/test_cache.py::test_cold_and_warm_processes_fit_the_same_model``.
CALLEE_MATH = set()

#: How the CPU compiles the per-element and per-row math of ``backends/scalar.py`` and
#: its own small helpers: inlined into the calling kernel by numba, with CALLEE_MATH.
shared_math = njit(inline="always", fastmath=CALLEE_MATH)


@njit(inline="always")
def call(kernel, args):
    """kernel(*args), compiled as a direct call of the kernel."""
    return kernel(*args)
