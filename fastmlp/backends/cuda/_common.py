"""Launch geometry and the block reduction shared by the CUDA kernels.

The launch sizes are read from ``fastmlp._config`` at call time, not at
import, so the tests can shrink them (tiny blocks make the multi-block and
edge paths run on tiny inputs in the simulator).
"""

from numba import cuda

from ... import _config

# Largest block any kernel here is launched with; also the length of the
# float64 shared buffer of ``block_sum_add``.
MAX_THREADS = 1024
# No kernel launches more blocks than this: grid-stride loops (and the GEMMs'
# loops over tiles) cover the rest.  Read at call time; the simulator tests
# lower it so that few Python threads do all the work.
MAX_BLOCKS = 4096


def threads_per_block():
    """Threads per block of the 1-D kernels (``_config.CUDA_THREADS_PER_BLOCK``)."""
    return max(1, min(int(_config.CUDA_THREADS_PER_BLOCK), MAX_THREADS))


def tile():
    """Edge of the square GEMM tile (``_config.CUDA_TILE``); a block is tile x tile threads."""
    t = int(_config.CUDA_TILE)
    if t < 1 or t * t > MAX_THREADS:
        raise ValueError(f"CUDA_TILE must be in [1, 32], got {t}.")
    return t


def reg_block():
    """Outputs per thread along each axis of the forward GEMM (``_config.CUDA_REGISTER_BLOCK``)."""
    r = int(_config.CUDA_REGISTER_BLOCK)
    if r < 1 or r > 8:
        raise ValueError(f"CUDA_REGISTER_BLOCK must be in [1, 8], got {r}.")
    return r


def grid_1d(n):
    """(blocks, threads) for n work items of a grid-stride loop (at most MAX_BLOCKS blocks)."""
    tpb = threads_per_block()
    blocks = max(1, min((int(n) + tpb - 1) // tpb, MAX_BLOCKS))
    return blocks, tpb


def grid_tiles(rows, cols, t, r=1):
    """(blocks, (t, t)) for a rows x cols GEMM output in (t r) x (t r) tiles of t x t
    threads, each thread computing r x r outputs (blocks loop over tiles)."""
    e = t * r
    n_tiles = ((int(rows) + e - 1) // e) * ((int(cols) + e - 1) // e)
    return max(1, min(n_tiles, MAX_BLOCKS)), (t, t)


@cuda.jit(device=True)
def block_sum_add(buf, val, factor, out):
    """out[0] += factor * (sum of ``val`` over the threads of this block), atomically.

    buf: float64 shared array of at least blockDim.x * blockDim.y entries.
    Every thread of the block must call this (it synchronises); any block
    size works (a tree over the next power of two, no warp shuffles).
    """
    tid = cuda.threadIdx.x + cuda.threadIdx.y * cuda.blockDim.x
    nt = cuda.blockDim.x * cuda.blockDim.y
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
