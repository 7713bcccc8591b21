"""Dense layers on NVIDIA GPUs: tiled shared-memory GEMMs with fused epilogues.

The twins of ``fastmlp/backends/cpu/dense.py``.  ``dense_forward``,
``dense_backward`` and ``hidden_backward`` are host functions with the CPU
contracts (device arrays in, device arrays written); they launch the three
tiled products below, built by ``gemm_kernels(T)`` for a tile edge ``T``
(``_config.CUDA_TILE``; one kernel set per tile size, built on first use and
kept for the process; a block is T x T threads and loops over output tiles,
so the grid may be smaller than the tile count):

``forward``  Z = A @ B            A: (n, K), B: (K, M); register-blocked, each
    thread computing R x R outputs (``_config.CUDA_REGISTER_BLOCK``), each
    shared-memory value it loads reused R times from a register
    epilogue (``fuse`` true): Z += b and H = act(Z) while the sum is in a
    register (Z and H may be one buffer).  Without ``fuse`` it stores the
    bare product (maxout applies bias and max in a second kernel, because a
    unit's pieces may straddle two tiles).
``weights``  dW = A^T @ B (+ lam * W)   A: (n, K) layer input, B: (n, M) dZ
    epilogue: + lam * W and the block's share of sum(W^2) reduced in shared
    memory and added atomically (times ``l2_scale``) into ``loss_acc[0]``.
    The bias gradient db = column sums of B is fused in too: the blocks of
    the first row of tiles sum the dZ tiles they load anyway.
``inputs``   dH = B @ W^T         B: (n, M) dZ, W: (K, M)
    epilogue (``fuse`` true): dZ_prev = dH * act'(cache) for activations
    whose derivative needs nothing else (all but prelu and maxout).

Every load is bounds-checked (zero outside), so no size needs to be a
multiple of the tile.  Tiles are padded to T x (T + 1) against shared-memory
bank conflicts.  The element type follows the arrays (float32 or float64);
sums accumulate in that type, like BLAS on the CPU.
"""

import functools

from numba import cuda, float64

from ._common import MAX_THREADS, block_sum_add, grid_1d, grid_tiles, reg_block, tile
from .activations import act, act_backward, act_grad, maxout_backward, maxout_forward, prelu_slope_grad

_PRELU = 5
_MAXOUT = 7


@functools.lru_cache(maxsize=None)
def gemm_kernels(T, R=1):
    """The three tiled GEMM kernels for tile edge T: (forward, weights, inputs).

    ``forward`` is register-blocked: each of the T x T threads of a block
    computes R x R outputs (rows ty + a T, columns tx + c T, so neighbouring
    threads store neighbouring columns), and a block covers a (T R)^2 output
    tile; launch it with ``grid_tiles(rows, cols, T, R)``.  ``weights`` and
    ``inputs`` compute one output per thread: launch with ``grid_tiles(rows, cols, T)``.
    Blocks loop over output tiles (tile id = blockIdx.x, then + gridDim.x), so
    any number of blocks covers any output.
    """
    T1 = T + 1
    TR = T * R
    TR1 = TR + 1

    @cuda.jit
    def forward(A, B, b, code, param, slopes, fuse, Z, H):
        """Z = A @ B; with ``fuse``: Z += b, H = act(Z).  Output tiles of (T R)^2 over (n, M)."""
        sA = cuda.shared.array((TR, T1), dtype=A.dtype)  # TR rows of A x T of K
        sB = cuda.shared.array((T, TR1), dtype=A.dtype)  # T of K x TR columns of B
        acc = cuda.local.array((R, R), dtype=A.dtype)
        a_reg = cuda.local.array(R, dtype=A.dtype)
        b_reg = cuda.local.array(R, dtype=A.dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n, K = A.shape
        M = B.shape[1]
        tiles_x = (M + TR - 1) // TR
        n_tiles = tiles_x * ((n + TR - 1) // TR)
        for tile_id in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            by = tile_id // tiles_x
            row0 = by * TR
            col0 = (tile_id - by * tiles_x) * TR
            for a in range(R):
                for c in range(R):
                    acc[a, c] = 0
            for k0 in range(0, K, T):
                ka = k0 + tx
                kb = k0 + ty
                for a in range(R):
                    row = row0 + ty + a * T
                    if row < n and ka < K:
                        sA[ty + a * T, tx] = A[row, ka]
                    else:
                        sA[ty + a * T, tx] = 0
                    col = col0 + tx + a * T
                    if kb < K and col < M:
                        sB[ty, tx + a * T] = B[kb, col]
                    else:
                        sB[ty, tx + a * T] = 0
                cuda.syncthreads()
                for k in range(T):
                    for a in range(R):
                        a_reg[a] = sA[ty + a * T, k]
                        b_reg[a] = sB[k, tx + a * T]
                    for a in range(R):
                        for c in range(R):
                            acc[a, c] += a_reg[a] * b_reg[c]
                cuda.syncthreads()
            for a in range(R):
                row = row0 + ty + a * T
                for c in range(R):
                    col = col0 + tx + c * T
                    if row < n and col < M:
                        if fuse:
                            z = acc[a, c] + b[col]
                            Z[row, col] = z
                            H[row, col] = act(code, z, param, slopes[col])
                        else:
                            Z[row, col] = acc[a, c]

    @cuda.jit
    def weights(A, B, W, lam, dW, db, l2_scale, loss_acc):
        """dW = A^T @ B + lam W; db = column sums of B; loss_acc[0] += l2_scale sum(W^2).

        Output tiles over (K, M); the sum over the n rows is the tiled loop.
        """
        sA = cuda.shared.array((T, T1), dtype=A.dtype)
        sB = cuda.shared.array((T, T1), dtype=A.dtype)
        red = cuda.shared.array(MAX_THREADS, float64)
        acc = cuda.local.array(2, dtype=A.dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n, K = A.shape
        M = B.shape[1]
        tiles_x = (M + T - 1) // T
        n_tiles = tiles_x * ((K + T - 1) // T)
        sq = 0.0
        for tile_id in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            by = tile_id // tiles_x
            i = by * T + ty  # row of dW: input unit
            j = (tile_id - by * tiles_x) * T + tx  # column of dW: output unit
            ia = by * T + tx  # input unit this thread loads
            do_bias = by == 0 and ty == 0  # the first row of tiles also sums dZ for db
            acc[0] = 0
            acc[1] = 0
            for r0 in range(0, n, T):
                r = r0 + ty
                if r < n and ia < K:
                    sA[ty, tx] = A[r, ia]  # sA[row, input unit]
                else:
                    sA[ty, tx] = 0
                if r < n and j < M:
                    sB[ty, tx] = B[r, j]  # sB[row, output unit]
                else:
                    sB[ty, tx] = 0
                cuda.syncthreads()
                s = acc[0]
                for k in range(T):
                    s += sA[k, ty] * sB[k, tx]
                acc[0] = s
                if do_bias:
                    s = acc[1]
                    for k in range(T):
                        s += sB[k, tx]
                    acc[1] = s
                cuda.syncthreads()
            if i < K and j < M:
                g = acc[0]
                if lam != 0.0:
                    w = W[i, j]
                    sq += w * w
                    dW[i, j] = g + lam * w
                else:
                    dW[i, j] = g
            if do_bias and j < M:
                db[j] = acc[1]
        if lam != 0.0:
            block_sum_add(red, sq, l2_scale, loss_acc)

    @cuda.jit
    def inputs(B, W, code, param, Zc, Hc, slopes, fuse, out):
        """out = B @ W^T; with ``fuse``: out *= act'(Zc, Hc).  Output tiles over (n, K)."""
        sA = cuda.shared.array((T, T1), dtype=B.dtype)
        sB = cuda.shared.array((T, T1), dtype=B.dtype)
        acc = cuda.local.array(1, dtype=B.dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n, M = B.shape
        K = W.shape[0]
        tiles_x = (K + T - 1) // T
        n_tiles = tiles_x * ((n + T - 1) // T)
        for tile_id in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            by = tile_id // tiles_x
            bx = tile_id - by * tiles_x
            r = by * T + ty  # row of the batch
            i = bx * T + tx  # input unit
            iw = bx * T + ty  # input unit whose weights this thread loads
            acc[0] = 0
            for j0 in range(0, M, T):
                jj = j0 + tx
                if r < n and jj < M:
                    sA[ty, tx] = B[r, jj]  # sA[row, output unit]
                else:
                    sA[ty, tx] = 0
                if iw < K and jj < M:
                    sB[ty, tx] = W[iw, jj]  # sB[input unit, output unit]
                else:
                    sB[ty, tx] = 0
                cuda.syncthreads()
                s = acc[0]
                for k in range(T):
                    s += sA[ty, k] * sB[tx, k]
                acc[0] = s
                cuda.syncthreads()
            if r < n and i < K:
                if fuse:
                    out[r, i] = acc[0] * act_grad(code, Zc[r, i], Hc[r, i], param, slopes[i])
                else:
                    out[r, i] = acc[0]

    return forward, weights, inputs


def dense_forward(Hprev, W, b, code, param, slopes, pieces, Z, H, argmax):
    """Z = Hprev @ W + b;  H = act(Z), on device arrays.

    Hprev: (n, fan_in); W: (fan_in, zcols); b: (zcols,); Z: (n, zcols) written.
    H: (n, units) written; for codes that cache H it may be Z itself.
    For maxout zcols = units * pieces and argmax (n, units) receives the winners.
    One tiled GEMM with bias + activation fused into its store (maxout: GEMM,
    then ``maxout_forward``).
    """
    T = tile()
    R = reg_block()
    fwd = gemm_kernels(T, R)[0]
    n, zc = Z.shape
    grid, block = grid_tiles(n, zc, T, R)
    if code == _MAXOUT:
        fwd[grid, block](Hprev, W, b, 0, 0.0, b, False, Z, Z)
        blocks, tpb = grid_1d(n * H.shape[1])
        maxout_forward[blocks, tpb](Z, b, int(pieces), H, argmax)
    else:
        fwd[grid, block](Hprev, W, b, int(code), float(param), slopes, True, Z, H)


def dense_backward(Hprev, W, dZ, lam, dW, db, dHprev, l2_scale, loss_acc):
    """Gradients of one dense layer from dZ = dL/dZ, on device arrays.

    dW = Hprev^T @ dZ + lam * W;  db = sum_rows dZ;  dHprev = dZ @ W^T
    (skipped when dHprev has zero rows, as for the first layer).
    Where the CPU twin returns sum(W^2), this adds ``l2_scale * sum(W^2)``
    into the float64 device array ``loss_acc[0]`` (nothing when lam == 0).
    """
    T = tile()
    _, wk, ik = gemm_kernels(T)
    fi, zc = W.shape
    grid, block = grid_tiles(fi, zc, T)
    wk[grid, block](Hprev, dZ, W, float(lam), dW, db, float(l2_scale), loss_acc)
    if dHprev.shape[0] > 0:
        n = dZ.shape[0]
        grid, block = grid_tiles(n, fi, T)
        ik[grid, block](dZ, W, 0, 0.0, dHprev, dHprev, db, False, dHprev)


def hidden_backward(dH, Z, H, argmax, code, param, slopes, pieces, dZ, dslopes):
    """dZ from dH through the activation; prelu also writes its slope gradient.

    dH: (n, units); Z, H: the forward cache; dZ: (n, zcols), may be dH unless maxout.
    dslopes: (units,) written for prelu (code 5), untouched otherwise.
    The slope gradient is taken before dZ overwrites a shared dH (same stream: in order).
    """
    n, units = dH.shape
    if code == _MAXOUT:
        blocks, tpb = grid_1d(n * units)
        maxout_backward[blocks, tpb](dH, argmax, int(pieces), dZ)
        return
    if code == _PRELU:
        blocks, tpb = grid_1d(units)
        prelu_slope_grad[blocks, tpb](dH, Z, dslopes)
    blocks, tpb = grid_1d(n * units)
    act_backward[blocks, tpb](dH, Z, H, int(code), float(param), slopes, dZ)
