"""Launch geometry, the tile schedule and the block reduction shared by the CUDA kernels.

The sizes are read from ``fastmlp._config`` at call time, not at import, so
the tests can shrink them (tiny blocks make the multi-block and edge paths
run on tiny inputs in the simulator).

The tile schedule is written as plain Python functions (``tiles_along``,
``tile_origin``, ``backward_tile``) and compiled as device functions, like
``backends/scalar.py``: the kernels call the compiled ones, and the tests
check the plain ones on the CPU (every output element of every phase covered
exactly once for any number of blocks).  A phase is a loop

    for t in range(block, n_tiles, n_blocks): work on tile t

so block ``b`` of a grid of ``g`` blocks takes tiles b, b + g, b + 2g, ...
"""

import numpy as np
from numba import cuda
from numba.extending import register_jitable

from ... import _config
from ..layout import N_COLS

# The slots of the kernels' small ``meta`` (int64) and ``fx`` (theta's dtype) arrays,
# described in ``train.py`` (where the host fills them); here, so that ``dense.py``'s
# GEMM epilogues read the layer's offsets, activation and dropout from them too.
META_ROWS = 1  # the scalar rows before the layers
(M_L, M_NTAB, M_NB, M_CODE, M_PIECES, M_OUT, M_APPLY, M_NROWS, M_SOLVER, M_NEST, M_DKEY,
 M_XDIRECT, M_GRAD, M_S1, M_S2, M_XB, M_YB, M_SWB, M_YLB, M_DCOLS, M_HASY, M_HASYL,
 M_HASSW, M_NF, M_ORD, M_GID, M_YO, M_IP, M_IND, M_ZERO, M_ARG) = range(31)
M_DTHR = N_COLS  # the layers' rows: the dropout keep threshold after layout's columns
META_COLS = max(31, N_COLS + 1)
(F_PARAM, F_MOM, F_B1, F_C1, F_B2, F_C2, F_EPS, F_ALPHA) = range(8)
F_DFL = 8  # fx: the dropout scales after the eight hyper-parameters

# No grid has more blocks than this.  Read at call time; the simulator tests
# lower it so that few Python threads do all the work.
MAX_BLOCKS = 4096

# Resident blocks per SM each kernel is compiled for (its launch bounds, with blocks
# of CUDA_TILE^2 threads): ptxas keeps a thread to 65536 / (blocks x threads)
# registers.  Both kernels ask for two 256-thread blocks an SM (<= 128 registers), which
# they meet without spilling in float32 and float64, for sm_80 and sm_90: the per-phase
# kernel always did; the persistent kernel (every phase inlined in one loop) since its
# arguments were packed, its grid-stride loops stopped dividing in 64 bits (``quot``
# below) and the softmax loop stopped being unrolled (benchmarks/RESULTS.md, issue 29).
# ``benchmarks/gpu_check.py --ptx-report`` prints what ptxas made of these;
# tests/test_ptx.py fails on any spill.
EPOCH_MIN_BLOCKS_PER_SM, PHASE_MIN_BLOCKS_PER_SM = 2, 2


def tile():
    """Edge T of the square tile of the backward GEMMs (``_config.CUDA_TILE``);
    every kernel runs blocks of T x T threads."""
    t = int(_config.CUDA_TILE)
    if t < 1 or t * t > 1024:
        raise ValueError(f"CUDA_TILE must be in [1, 32], got {t}.")
    return t


def reg_block():
    """Outputs per thread along each axis of the forward GEMM (``_config.CUDA_REGISTER_BLOCK``)."""
    r = int(_config.CUDA_REGISTER_BLOCK)
    if r < 1 or r > 8:
        raise ValueError(f"CUDA_REGISTER_BLOCK must be in [1, 8], got {r}.")
    return r


def driver():
    """``_config.CUDA_EPOCH_DRIVER``: "auto", "persistent" or "launches"."""
    d = str(_config.CUDA_EPOCH_DRIVER)
    if d not in ("auto", "persistent", "launches"):
        raise ValueError(f'CUDA_EPOCH_DRIVER must be "auto", "persistent" or "launches", got {d!r}.')
    return d


# --- integer division without a 64-bit divide ----------------------------------------------
#
# A 64-bit integer division is no GPU instruction: ptxas makes each ``div.s64`` a call of
# a subroutine, and every value live across the call must sit in registers the call
# leaves alone.  In the persistent kernel that cost registers at every grid-stride loop
# (numba's ``range(start, stop, step)`` divides to count its trips) and tile origin:
# 35 such calls made the float64 kernel 140 registers where the arithmetic needs fewer
# (benchmarks/RESULTS.md, issue 29).  So the kernels walk grid-stride loops with
# ``while`` and additions, and divide only what is known to be below 2**31 (tile numbers,
# thread counts, columns), in 32-bit unsigned arithmetic, which is inline code.


@register_jitable
def quot(a, b):
    """a // b for 0 <= a < 2**31 and 0 < b < 2**31, by a 32-bit unsigned division."""
    return np.int64(np.uint32(a) // np.uint32(b))


@register_jitable
def cells(g, stride, cols):
    """The walk of a grid-stride loop over a row-major grid ``cols`` wide, without a
    division per step: (i, j, di, dj), cell g = (i, j) and a step of ``stride`` cells =
    (di, dj).  g, stride and cols below 2**31 (g and stride: thread numbers), cols > 0.
    ``next_cell`` takes the step."""
    i = quot(g, cols)
    di = quot(stride, cols)
    return i, g - i * cols, di, stride - di * cols


@register_jitable
def next_cell(i, j, di, dj, cols):
    """(i, j) advanced by (di, dj) cells in a grid ``cols`` wide (j, dj < cols)."""
    j += dj
    i += di
    if j >= cols:
        return i + 1, j - cols
    return i, j


# --- the tile schedule (plain Python; compiled below) -----------------------------------


def tiles_along(n, edge):
    """Tiles of ``edge`` needed to cover ``n`` (0 for n = 0)."""
    return (n + edge - 1) // edge


def tile_origin(t, tiles_x, edge):
    """(row0, col0) of tile ``t`` in a row-major grid of tiles ``tiles_x`` wide."""
    ty = quot(t, tiles_x)
    return ty * edge, (t - ty * tiles_x) * edge


def backward_tile(t, n_weight_tiles, tiles_x_w, tiles_x_in, edge):
    """The backward phase of a layer runs two products over one tile range: tiles
    [0, n_weight_tiles) of dW (fan_in x zcols) and then the tiles of dH (rows x fan_in).

    Returns (kind, row0, col0): kind 0 for a dW tile, 1 for a dH tile.
    """
    # tile_origin spelled out: a device function may call only device functions
    if t < n_weight_tiles:
        ty = quot(t, tiles_x_w)
        return 0, ty * edge, (t - ty * tiles_x_w) * edge
    u = t - n_weight_tiles
    ty = quot(u, tiles_x_in)
    return 1, ty * edge, (u - ty * tiles_x_in) * edge


d_quot = cuda.jit(device=True)(quot)
d_cells = cuda.jit(device=True)(cells)
d_next_cell = cuda.jit(device=True)(next_cell)
d_tiles_along = cuda.jit(device=True)(tiles_along)
d_tile_origin = cuda.jit(device=True)(tile_origin)
d_backward_tile = cuda.jit(device=True)(backward_tile)


@cuda.jit(device=True)
def block_sum_add(buf, val, factor, out):
    """out[0] += factor * (sum of ``val`` over the threads of this block), atomically.

    buf: float64 shared array of at least blockDim.x * blockDim.y entries.
    Every thread of the block must call this (it synchronises); any block
    size works (a tree over the next power of two, no warp shuffles): a
    thread adds its partner ``tid + s`` only where that partner exists.
    """
    tid = cuda.threadIdx.x + cuda.threadIdx.y * cuda.blockDim.x
    nt = cuda.blockDim.x * cuda.blockDim.y
    cuda.syncthreads()  # buf may still be read from a previous use
    buf[tid] = val
    cuda.syncthreads()
    s = 1
    while s < nt:
        s *= 2
    s //= 2
    while s > 0:
        if tid < s and tid + s < nt:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        cuda.atomic.add(out, 0, buf[0] * factor)
