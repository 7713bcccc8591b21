"""Output layers fused with their losses, and one-hot, on NVIDIA GPUs.

The ``@cuda.jit`` twins of ``fastmlp/backends/cpu/losses.py``.  Each loss
kernel reads the logits O (n, k) and writes the prediction P and the
gradient dO = w_i (P - Y) * scale in one pass, exactly as on the CPU.  A
kernel cannot return a value, so instead of returning sum_i w_i loss_i the
GPU twins take two more arguments and do

    loss_out[0] += loss_scale * sum_i w_i loss_i

reducing on the device: per block through shared memory, then one atomic
add per block into ``loss_out`` (a float64 device array).  The trainer
passes ``loss_scale = scale * rows`` and one accumulator for a whole epoch,
so the epoch loss crosses to the host once per epoch, never per batch.

Parallel layout: one thread per row (grid-stride over rows), each thread
looping over the k outputs.  That is the right shape for the class counts an
MLP classifier sees (tens); thousands of classes would want a block per row
with a shared-memory max/sum instead.  ``one_hot`` and the pointwise output
functions are grid-stride over all n*k elements.

``output_loss`` and ``output_activation`` are host functions that launch
the kernel the output code selects, like their CPU twins dispatch.
"""

from numba import cuda, float64

from .. import scalar
from ._common import MAX_THREADS, block_sum_add, grid_1d

# the per-row math is shared with the other backend: fastmlp/backends/scalar.py
pointwise_output = cuda.jit(device=True)(scalar.pointwise_output)
softmax_row = cuda.jit(device=True)(scalar.softmax_row)
log_softmax_row = cuda.jit(device=True)(scalar.log_softmax_row)
softmax_xent_row = cuda.jit(device=True)(scalar.softmax_xent_row)
sigmoid_bce_row = cuda.jit(device=True)(scalar.sigmoid_bce_row)
squared_error_row = cuda.jit(device=True)(scalar.squared_error_row)
poisson_row = cuda.jit(device=True)(scalar.poisson_row)


@cuda.jit
def softmax_cross_entropy(O, y, sw, scale, P, dO, loss_scale, loss_out):
    """Stable row softmax fused with cross-entropy against integer labels.

    P = exp(O - max_row) / sum(...);  loss_i = log sum exp(O_i - max) - (O_i,y_i - max)
    dO = w_i (P - onehot(y)) * scale.  O: (n, k); y: (n,) int in [0, k);
    sw: (n,) or empty (all ones).  P may be dO (not O).
    loss_out[0] += loss_scale * sum_i w_i loss_i (float64, atomic per block).
    """
    buf = cuda.shared.array(MAX_THREADS, float64)
    has_w = sw.shape[0] > 0
    part = 0.0
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        w = sw[i] if has_w else 1.0
        part += w * softmax_xent_row(O, i, y[i], w * scale, P, dO)
    block_sum_add(buf, part, loss_scale, loss_out)


@cuda.jit
def sigmoid_binary_cross_entropy(O, Y, sw, scale, P, dO, loss_scale, loss_out):
    """Elementwise sigmoid fused with binary cross-entropy summed over outputs.

    loss_i = sum_j max(o, 0) - o y + log1p(exp(-|o|))   (stable for any o)
    P = sigmoid(O);  dO = w_i (P - Y) * scale.  O, Y, P, dO: (n, k).
    loss_out[0] += loss_scale * sum_i w_i loss_i.
    """
    buf = cuda.shared.array(MAX_THREADS, float64)
    has_w = sw.shape[0] > 0
    part = 0.0
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        w = sw[i] if has_w else 1.0
        part += w * sigmoid_bce_row(O, Y, i, w * scale, P, dO)
    block_sum_add(buf, part, loss_scale, loss_out)


@cuda.jit
def squared_error(O, Y, sw, scale, P, dO, loss_scale, loss_out):
    """Identity output with half squared error summed over outputs.

    loss_i = 0.5 sum_j (O_ij - Y_ij)^2;  P = O;  dO = w_i (O - Y) * scale.
    loss_out[0] += loss_scale * sum_i w_i loss_i.
    """
    buf = cuda.shared.array(MAX_THREADS, float64)
    has_w = sw.shape[0] > 0
    part = 0.0
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        w = sw[i] if has_w else 1.0
        part += w * squared_error_row(O, Y, i, w * scale, P, dO)
    block_sum_add(buf, part, loss_scale, loss_out)


@cuda.jit
def poisson_deviance(O, Y, sw, scale, P, dO, loss_scale, loss_out):
    """Exp output (log link) with half Poisson deviance, as scikit-learn's loss="poisson".

    loss_i = sum_j exp(o) - y o + y log y - y  (y log y = 0 at y = 0), the deviance
    scikit-learn reports, constant terms included;
    P = exp(O);  dO = w_i (P - Y) * scale.
    loss_out[0] += loss_scale * sum_i w_i loss_i.
    """
    buf = cuda.shared.array(MAX_THREADS, float64)
    has_w = sw.shape[0] > 0
    part = 0.0
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        w = sw[i] if has_w else 1.0
        part += w * poisson_row(O, Y, i, w * scale, P, dO)
    block_sum_add(buf, part, loss_scale, loss_out)


def output_loss(out_code, O, Y, y, sw, scale, P, dO, loss_scale, loss_out):
    """Launch the loss kernel of output code ``out_code`` (``fastmlp._registry.OUTPUTS``).

    Host function; arguments as the kernels above (device arrays).
    """
    blocks, tpb = grid_1d(O.shape[0])
    scale = float(scale)
    loss_scale = float(loss_scale)
    if out_code == 0:
        softmax_cross_entropy[blocks, tpb](O, y, sw, scale, P, dO, loss_scale, loss_out)
    elif out_code == 1:
        sigmoid_binary_cross_entropy[blocks, tpb](O, Y, sw, scale, P, dO, loss_scale, loss_out)
    elif out_code == 2:
        squared_error[blocks, tpb](O, Y, sw, scale, P, dO, loss_scale, loss_out)
    else:
        poisson_deviance[blocks, tpb](O, Y, sw, scale, P, dO, loss_scale, loss_out)


@cuda.jit
def softmax_rows(O, P):
    """Stable row softmax P = exp(O - max) / sum (P may be O); a thread per row."""
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        softmax_row(O, i, P)


@cuda.jit
def log_softmax_rows(O, out):
    """out = O - max - log sum exp(O - max), row-wise (never log of softmax); a thread per row."""
    for i in range(cuda.grid(1), O.shape[0], cuda.gridsize(1)):
        log_softmax_row(O, i, out)


@cuda.jit
def _pointwise_output(out_code, O, P):
    """P = sigmoid(O) (code 1), exp(O) (code 3) or O; grid-stride over n*k."""
    n, k = O.shape
    for t in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = t // k
        j = t - i * k
        P[i, j] = pointwise_output(out_code, O[i, j])


def output_activation(out_code, O, P):
    """Prediction from logits on the device, in place allowed: softmax, sigmoid, identity or exp.

    Host function: launches ``softmax_rows`` or the pointwise kernel.
    """
    n, k = O.shape
    if out_code == 0:
        blocks, tpb = grid_1d(n)
        softmax_rows[blocks, tpb](O, P)
    else:
        blocks, tpb = grid_1d(n * k)
        _pointwise_output[blocks, tpb](int(out_code), O, P)


@cuda.jit
def one_hot(labels, out):
    """out[i] = row labels[i] of the identity, all of out (n, k) written; grid-stride over n*k."""
    n, k = out.shape
    for t in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = t // k
        j = t - i * k
        out[i, j] = 1 if labels[i] == j else 0


# On the GPU every kernel is row-parallel already; the name mirrors the CPU's.
softmax_rows_parallel = softmax_rows
