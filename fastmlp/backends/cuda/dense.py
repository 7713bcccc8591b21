"""Dense layers on NVIDIA GPUs: tiled shared-memory GEMM phases with fused epilogues.

``gemm_phases(T, R)`` builds, for a tile edge T (``_config.CUDA_TILE``) and a
register block R (``_config.CUDA_REGISTER_BLOCK``), the two device functions
every driver of ``train.py`` runs for a dense layer.  Each is a *phase*: the
calling block works on tiles ``first, first + step, ...`` of the layer's
output (``first`` = blockIdx.x, ``step`` = gridDim.x), so one grid of any size
covers the whole output, whether the phase is its own kernel launch or one
step of the persistent epoch kernel.  Blocks are T x T threads.

``forward_tiles``   Z = A @ W (+ b, H = act(Z) fused into the store).
    A: (m, K) 2-D view (the batch, or the previous layer's H); W: (K, M) and b,
    slopes read from the flat ``theta`` at their offsets.  Register-blocked:
    each thread computes R x R outputs (rows ty + a T, columns tx + c T), so a
    block covers a (T R)^2 tile, each shared value loaded reused R times.
    For maxout it stores the bare product; the bias and the max follow in
    ``activations.maxout_forward_phase``, because a unit's pieces may straddle
    two tiles.
``backward_tiles``  one tile range over two independent products of layer l
    (both read dZ(l) and W(l), neither writes what the other reads):
    dW = Hprev^T dZ + lam W (the bias gradient db = column sums of dZ fused in
    by the first row of tiles, and sum(W^2) returned for the L2 loss term), and,
    unless l is the first layer, dH(l-1) = dZ W^T (times act' fused in:
    every activation but prelu and maxout, whose backward follows in
    ``activations.hidden_backward_phase``).  The split of the tile range is
    ``_common.backward_tile``.

The thread's (tx, ty) in its block come from the caller (``train.run_phase``: the
thread indices plus a zero read from memory, so that the tile addresses derived from
them are not computed once before the persistent kernel's loop and held in registers).
Shared memory comes from the kernel (``sA`` (T R, T + 1), ``sB`` (T, T R + 1);
the backward tiles use their (T, T + 1) corners), as do the register arrays.
Every load is bounds-checked (zero outside), so no size needs to be a multiple
of the tile; the padding column avoids shared-memory bank conflicts.  Sums
accumulate in the arrays' type (float32 or float64), like BLAS on the CPU.
"""

import functools

from numba import cuda

from ._common import (
    F_DFL, F_PARAM, META_COLS, META_ROWS, M_CODE, M_DKEY, M_DTHR, M_GID, M_L, d_backward_tile,
    d_tile_origin, d_tiles_along,
)
from ..layout import A_OFF, B_OFF, DH_OFF, DZ_OFF, H_OFF, Z_OFF
from ..._registry import MAXOUT, PRELU
from ..scalar import of
from .activations import act, act_grad, dropout_dh, dropout_h


@functools.lru_cache(maxsize=None)
def gemm_phases(T, R):
    """(forward_tiles, backward_tiles): device functions for T x T blocks, R x R register blocks."""
    TR = T * R

    @cuda.jit(device=True)
    def forward_tiles(A, theta, w_off, M, first, step, tx, ty, sA, sB, acc, a_reg, b_reg,
                      ws, meta, fx, start, l, hidden):
        """Layer l's Z = A @ W (+ b; H = act(Z) when ``hidden``, but for maxout, whose
        bias and max follow in its own phase).  Tiles of (T R)^2 over (m, M).

        A: (m, K) the layer's input; W (K, M) from theta at w_off.  The epilogue reads the
        layer's offsets (Z, H in ``ws``, b, prelu slopes in theta), the activation and
        the dropout from meta and fx where it stores (``_common.META_ROWS``), so nothing
        of it is held through the tile loop.  ``hidden`` False: the logits, bias only.
        Dropout (layer l's threshold below ``scalar.DROP_ALL_KEPT``): H = act(Z) * scale
        where unit col of the batch's row ``row`` is kept, else 0 (``activations.dropout_h``;
        the batch's data rows are ix's gid segment from ``start`` on, ``meta`` being ix).
        """
        n, K = A.shape
        tiles_x = d_tiles_along(M, TR)
        n_tiles = tiles_x * d_tiles_along(n, TR)
        t = first
        while t < n_tiles:  # tiles first, first + step, ... (no range: _common.quot)
            row0, col0 = d_tile_origin(t, tiles_x, TR)
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
                        sB[ty, tx + a * T] = theta[w_off + kb * M + col]
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
                        lr = (META_ROWS + l) * META_COLS
                        zo = meta[lr + Z_OFF]
                        code = meta[M_CODE]
                        if hidden and code == MAXOUT:  # the bare product; MAXOUT_FWD follows
                            ws[row, zo + col] = acc[a, c]
                        else:
                            z = acc[a, c] + theta[meta[lr + B_OFF] + col]
                            ws[row, zo + col] = z
                            if hidden:
                                param = fx[F_PARAM]
                                a_off = meta[lr + A_OFF]
                                slope = theta[a_off + col] if a_off >= 0 else of(z, 0.0)
                                drows = meta[meta[M_GID] + start:]  # ix's gid segment
                                ws[row, meta[lr + H_OFF] + col] = dropout_h(
                                    act(code, z, param, slope), drows, meta[M_DKEY], l, row,
                                    col, meta[lr + M_DTHR], fx[F_DFL + l])
            t += step

    @cuda.jit(device=True)
    def backward_tiles(Hp, dZ, theta, grad, w_off, b_off, lam, with_inputs, ws, first, step,
                       tx, ty, sA, sB, acc, meta, fx, start, p):
        """dW, db (and dH(l-1) when ``with_inputs``) of one layer; returns this thread's
        share of sum(W^2) (0 when lam == 0).

        Hp: (m, K) layer input; dZ: (m, M); theta, grad with W at w_off, b at b_off.
        ``start``: the batch's first row in the order (dropout's keys, as in
        ``forward_tiles``).  dH goes to layer p = l - 1's dZ columns of
        ``ws`` times act' (every activation but maxout and prelu), else to its dH columns;
        like ``forward_tiles``, the epilogue reads p's offsets, activation and dropout
        from meta and fx where it stores.  With dropout in layer p: dH * 1 / (1 - rate)
        where kept, 0 where dropped, and act' reads H * (1 - rate) (the activation before
        its dropout scale), as the CPU's ``dropout_backward`` (``activations.dropout_dh``).
        """
        n, K = Hp.shape
        M = dZ.shape[1]
        wx = d_tiles_along(M, T)
        n_w = wx * d_tiles_along(K, T)
        ix = d_tiles_along(K, T)
        n_in = ix * d_tiles_along(n, T) if with_inputs else 0
        sq = of(lam, 0.0)  # in theta's dtype, like lam
        t = first
        while t < n_w + n_in:
            kind, r0, c0 = d_backward_tile(t, n_w, wx, ix, T)
            acc[0, 0] = 0
            if kind == 0:
                # dW tile: rows r0.. are input units, columns c0.. output units
                i = r0 + ty
                j = c0 + tx
                ia = r0 + tx  # the input unit this thread loads
                do_bias = r0 == 0 and ty == 0  # the first row of tiles also sums dZ for db
                s1 = acc[0, 0]
                for k0 in range(0, n, T):
                    r = k0 + ty
                    if r < n and ia < K:
                        sA[ty, tx] = Hp[r, ia]
                    else:
                        sA[ty, tx] = 0
                    if r < n and j < M:
                        sB[ty, tx] = dZ[r, j]
                    else:
                        sB[ty, tx] = 0
                    cuda.syncthreads()
                    s = acc[0, 0]
                    for k in range(T):
                        s += sA[k, ty] * sB[k, tx]
                    acc[0, 0] = s
                    if do_bias:
                        for k in range(T):
                            s1 += sB[k, tx]
                    cuda.syncthreads()
                if i < K and j < M:
                    g = acc[0, 0]
                    if lam != of(lam, 0.0):
                        w = theta[w_off + i * M + j]
                        sq += w * w
                        grad[w_off + i * M + j] = g + lam * w
                    else:
                        grad[w_off + i * M + j] = g
                if do_bias and j < M:
                    grad[b_off + j] = s1
            else:
                # dH tile: rows r0.. of the batch, columns c0.. input units
                r = r0 + ty
                i = c0 + tx
                iw = c0 + ty  # the input unit whose weights this thread loads
                for j0 in range(0, M, T):
                    jj = j0 + tx
                    if r < n and jj < M:
                        sA[ty, tx] = dZ[r, jj]
                    else:
                        sA[ty, tx] = 0
                    if iw < K and jj < M:
                        sB[ty, tx] = theta[w_off + iw * M + jj]
                    else:
                        sB[ty, tx] = 0
                    cuda.syncthreads()
                    s = acc[0, 0]
                    for k in range(T):
                        s += sA[ty, k] * sB[tx, k]
                    acc[0, 0] = s
                    cuda.syncthreads()
                if r < n and i < K:
                    lp = (META_ROWS + p) * META_COLS
                    code = meta[M_CODE]
                    fuse = code != MAXOUT and code != PRELU
                    oo = meta[lp + DZ_OFF] if fuse else meta[lp + DH_OFF]
                    L = meta[M_L]
                    drows = meta[meta[M_GID] + start:]  # ix's gid segment
                    dh, h = dropout_dh(acc[0, 0], ws[r, meta[lp + H_OFF] + i], drows,
                                       meta[M_DKEY], p, r, i, meta[lp + M_DTHR],
                                       fx[F_DFL + p], fx[F_DFL + L + p])
                    if fuse:
                        param = fx[F_PARAM]
                        sl_off = meta[lp + A_OFF]
                        slope = theta[sl_off + i] if sl_off >= 0 else of(param, 0.0)
                        ws[r, oo + i] = dh * act_grad(code, ws[r, meta[lp + Z_OFF] + i], h,
                                                      param, slope)
                    else:
                        ws[r, oo + i] = dh
            t += step
        return sq

    return forward_tiles, backward_tiles
