"""``call(kernel, args)``: a compiled kernel calls another one by address, not by copy.

numba compiles a call from one ``@njit`` function to another by linking the
callee's whole LLVM module into the caller's and optimising the result again:
``train_epoch``'s module grew from ~3,200 lines of its own IR to ~11,400 with
``forward_batch``, ``dense_backward``, ``output_loss``, ... copied in, and LLVM
spent ~1.2 s of a first fit re-optimising and re-emitting code that was already
compiled.  ``call`` compiles (or loads from numba's cache) the callee for the
argument types as usual, then calls its machine code through a symbol
registered with LLVM (``ll.add_symbol``, as ``blas`` does for BLAS): the
caller's module holds one declaration instead of the callee's code.

The symbol's name is derived from the callee and its argument types, not from
numba's per-process names, so a caller loaded from the on-disk cache finds
whatever the callee's code is in this process: the registration is stored
with the caller's cache entry (numba's ``reload_init``) and runs before the
caller's machine code is loaded, compiling or loading the callee first.  The
cache as a whole is cleared when any kernel source changes (``_cache``), so
caller and callee always agree on the signature.

The calls are the big ones made once per batch or chunk; small helpers are
still linked (and inlined by LLVM), where a call would cost more than it saves.
The callee must be a module-level dispatcher.  Under ``NUMBA_DISABLE_JIT=1``
``call`` is a plain Python call.

This leans on numba internals that its own extensions use (the call
convention's ``call_function``, the active code library and its
``_reload_init`` set, a compile result's library): ``tests/test_calls.py``
checks each part, the reload in a fresh process included, so that a numba
release that changes them fails the tests instead of a user's process.
"""

import functools
import hashlib
import importlib

from llvmlite import binding as ll
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

_registered = {}  # symbol name -> address registered in this process


def _symbol(module, name, argtys):
    key = f"{module}.{name}({', '.join(map(str, argtys))})"
    return "fastmlp_call_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def register(module, name, argtys):
    """Compile (or load from cache) ``module.name`` for ``argtys`` and register its
    machine code under its stable symbol; returns (symbol, compile result).

    Also what a cached caller runs on load (picklable: a module-level function of
    strings and numba types)."""
    dispatcher = getattr(importlib.import_module(module), name)
    argtys = tuple(argtys)
    dispatcher.compile(argtys)
    cres = dispatcher.overloads[argtys]
    symbol = _symbol(module, name, argtys)
    address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    if _registered.get(symbol) != address:
        ll.add_symbol(symbol, address)
        _registered[symbol] = address
    return symbol, cres


@intrinsic
def _call(typingctx, kernel, args):
    """kernel(*args) through the kernel's registered symbol (see the module docstring)."""
    if not isinstance(kernel, types.Dispatcher) or not isinstance(args, types.BaseTuple):
        return None
    module = kernel.dispatcher.py_func.__module__
    name = next((k for k, v in vars(importlib.import_module(module)).items()
                 if v is kernel.dispatcher), None)
    if name is None:
        return None  # not a module-level kernel
    argtys = tuple(types.unliteral(a) for a in args)
    symbol, cres = register(module, name, argtys)
    restype = cres.signature.return_type
    if isinstance(restype, types.Optional):
        return None

    def codegen(context, builder, sig, llargs):
        # (the callee was compiled and registered above, when the call was typed)
        # on a cache load of the caller, register the callee before its code is loaded
        context.active_code_library._reload_init.add(
            functools.partial(register, module, name, argtys))
        given = cgutils.unpack_tuple(builder, llargs[1], len(argtys))
        values = [context.cast(builder, v, t, u)
                  for v, t, u in zip(given, sig.args[1], argtys)]
        fnty = context.call_conv.get_function_type(restype, argtys)
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
        status, res = context.call_conv.call_function(builder, fn, restype, argtys, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res

    return restype(kernel, args), codegen


if config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: the kernels run as Python, intrinsics cannot
    def call(kernel, args):
        """kernel(*args) (Python: NUMBA_DISABLE_JIT is set)."""
        return kernel(*args)
else:
    call = _call
