"""A sparse (CSR) first layer on NVIDIA GPUs: the two phases that stand in for the dense
FORWARD 0 and BACKWARD 0 of ``dense.py`` when X is a CSR matrix.

The matrix lives on the device as its three arrays (``data`` in the model's dtype,
``indices`` and ``indptr`` int64, see ``cuda.csr_rows``); nothing dense is made of it,
not even a batch: the batch's row i is row ``order[start + i]`` of the matrix, its
non-zeros ``data[p]``, column ``indices[p]`` for p in ``indptr[r] .. indptr[r + 1]``
(any column order; duplicates add up, though the estimators sum them first).  A
training epoch's ``order`` is its shuffle; the full-batch sums and predict pass
``0, 1, 2, ...``.  Each phase is a grid-stride loop over the calling thread's global
index ``g`` (``stride`` threads in the grid), like the other elementwise phases, so one
grid of any size covers it, as its own launch or one step of the persistent kernel.

``csr_forward_phase``   Z[i, j] = sum_p data[p] W[indices[p], j] (+ b[j], H = act(Z)
    fused as ``dense.forward_tiles`` fuses them; maxout's bias and max follow in its
    MAXOUT_FWD phase).  A thread per output element (i, j), the row's non-zeros
    summed in their stored order from zero, then the bias: the CPU's ``csr_matmul``
    and ``bias_act_forward`` in the same order.  The threads of a warp share a row:
    its non-zeros are read once per warp, the rows of W they select are read
    coalesced.  O(nnz x zcols) per batch.
``csr_backward_phase``  dW = X_b^T dZ + lam W, db = column sums of dZ, and sum(W^2) for
    the L2 part of the loss (what ``dense.backward_tiles`` returns for a first layer,
    which has no dH).  Deterministic without atomics: every entry of dW and db is
    written by one thread, which adds its terms in one fixed order, whatever the
    grid.  Work item (q, j) of ``groups x zcols`` owns column j of the feature rows
    c = q, q + groups, q + 2 groups, ...: it zeroes them, walks the batch's rows in
    batch order and their non-zeros in stored order and adds data[p] dZ[i, j] into
    row indices[p] where that row is its own, then adds lam W (and W^2 into its sq).
    The group q = 0 also sums dZ[:, j] into db[j], in row order.  These are the
    CPU's ``csr_grads`` + ``finish_gradient`` sums in the same order, so a float64
    gradient equals the CPU's (to FMA contraction) and is bitwise the same on any
    number of blocks.  ``groups`` is the largest power of two within
    ``CSR_GROUPS_MAX``, fan_in and what the grid's threads allow (a power of two,
    so that "row c is mine" is ``c & (groups - 1) == q``, no integer division per
    non-zero): the scatter is O(nnz x zcols) per batch in all, but each thread
    reads all of the batch's indices (O(nnz) each, from cache, one read per warp),
    while zeroing and the L2 term are O(fan_in x zcols) spread over all the threads.
    (A thread per column alone, groups = 1, would leave a GPU with zcols threads
    busy; float atomics would make the gradient depend on the threads' timing.)
"""

from numba import cuda

from ..scalar import of
from ._common import d_cells, d_next_cell, d_quot
from .activations import act, dropout_h

# The most feature groups of ``csr_backward_phase`` (work items: groups x zcols; a power
# of two): more would make more threads each read all of the batch's indices for fewer
# rows of dW.
CSR_GROUPS_MAX = 256


@cuda.jit(device=True)
def csr_forward_phase(data, indices, indptr, order, start, theta, w_off, b_off, a_off, code,
                      param, fuse, Z, H, g, stride, drows, dkey, dl, dthr, dscale):
    """Z = X_b @ W for the m = Z.shape[0] CSR rows ``order[start:start + m]``; with ``fuse``:
    Z += b and H = act(Z) (prelu slopes at ``a_off`` when >= 0), through layer dl's
    dropout (``activations.dropout_h``: drows, dkey, dthr, dscale as ``dense.forward_tiles``
    takes them; dthr ``scalar.DROP_ALL_KEPT`` for none).

    data, indices, indptr: the CSR arrays of X (n, fan_in); W (fan_in, zcols) and b read
    from the flat ``theta`` at w_off, b_off.  Z: (m, zcols) written; H: (m, units) written
    when ``fuse`` (may be Z).  An empty row gives the bias.
    """
    n, zc = Z.shape
    i, j, di, dj = d_cells(g, stride, zc)
    while i < n:  # (while, not range: see _common.quot)
        r = order[start + i]
        s = of(param, 0.0)
        for p in range(indptr[r], indptr[r + 1]):
            s += data[p] * theta[w_off + indices[p] * zc + j]
        if fuse:
            z = s + theta[b_off + j]
            Z[i, j] = z
            slope = theta[a_off + j] if a_off >= 0 else of(z, 0.0)
            H[i, j] = dropout_h(act(code, z, param, slope), drows, dkey, dl, i, j, dthr,
                                dscale)
        else:
            Z[i, j] = s
        i, j = d_next_cell(i, j, di, dj, zc)


@cuda.jit(device=True)
def csr_backward_phase(data, indices, indptr, order, start, dZ, theta, grad, w_off, b_off,
                       fan_in, lam, g, stride):
    """grad[W] = X_b^T dZ + lam W, grad[b] = sum_rows dZ for the CSR rows
    ``order[start:start + m]`` (m = dZ.shape[0]); returns this thread's share of sum(W^2)
    (0 when lam == 0).  See the module docstring for who writes what, in which order.

    dZ: (m, zcols) read; theta: W (fan_in, zcols) at w_off read; grad written at w_off
    (every entry of dW) and b_off (zcols).  lam in theta's dtype.
    """
    m, zc = dZ.shape
    zero = of(lam, 0.0)
    most = min(fan_in, CSR_GROUPS_MAX, d_quot(stride, zc))
    groups = 1
    while groups * 2 <= most:
        groups *= 2
    mask = groups - 1
    sq = zero
    q, j, dq, dj = d_cells(g, stride, zc)
    while q < groups:
        c = q
        while c < fan_in:
            grad[w_off + c * zc + j] = zero
            c += groups
        db = zero
        for i in range(m):
            r = order[start + i]
            dz = dZ[i, j]
            db += dz
            for p in range(indptr[r], indptr[r + 1]):
                c = indices[p]
                if (c & mask) == q:
                    grad[w_off + c * zc + j] += data[p] * dz
        if q == 0:
            grad[b_off + j] = db
        if lam != zero:
            c = q
            while c < fan_in:
                k = w_off + c * zc + j
                w = theta[k]
                sq += w * w
                grad[k] += lam * w
                c += groups
        q, j = d_next_cell(q, j, dq, dj, zc)
    return sq
