"""fastmlp.dask: the cluster as an engine of the training loops (``fastmlp._solvers``).

``ClusterEngine`` runs what the loops ask for as rounds over one fit's blocks
(``_cluster._Cluster``): an lbfgs evaluation is one round of per-block
(loss, gradient) sums; early stopping's validation is one round of per-block
validation sums.  A stochastic epoch (``sync``) is

* ``"step"``: one round per minibatch.  The minibatches are the local fit's
  (the same shuffle from the same generator, the same boundaries over the
  training rows); each block returns its share of the batch's (loss, weight,
  gradient) sums, the shares are added along the block tree, and the client
  takes the step exactly as the local compiled epoch does (``_SyncStep``);
* ``"epoch"``: one round in which every block trains its own copy of the
  network for an epoch from the same weights and optimizer state, and the
  copies are averaged weighted by rows;
* an integer K: the same averaging after every K local steps of each block.

The loops themselves (stopping rule, schedule, divergence, history, verbose)
are the local estimators'.
"""

import contextlib
import time

import numpy as np

from .. import _fastpath
from .._registry import ADAM, SGD
from ..backends.cpu.optimizers import adam_step, sgd_step
from ..backends.layout import ADAM_T, BETA1, BETA2, EPS, FAN_IN, MOMENTUM, NESTEROV, W_OFF, ZCOLS
from ._blocks import (_Shared, _Step, _block_epoch, _block_step, _block_sums, _block_validation,
                      _val_target_sums)


class _LbfgsSums:
    """``LbfgsObjective``'s ``sums`` over the cluster: one round per evaluation."""

    def __init__(self, cluster, spec):
        self.cluster, self.spec = cluster, spec
        self.evaluations = 0

    def __call__(self, theta, grad):
        loss, g = self.cluster.round(_block_sums, theta.copy(), self.spec)
        grad[...] = g
        self.evaluations += 1
        return loss


def _r2(ss_res, ss_tot):
    """scikit-learn's r2_score from per-output sums (uniform average, force_finite)."""
    with np.errstate(all="ignore"):
        per = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                       np.where(ss_res == 0, 1.0, 0.0))
    per = np.where(np.isnan(ss_res), np.nan, per)
    return float(np.mean(per))


class _SyncStep:
    """The client's half of a synchronous step: the local compiled epoch's arithmetic
    on the blocks' summed shares of one minibatch.

    With W the batch's weight sum: grad = sum_i w_i dl_i / W + (alpha / W) w on the
    weights (not biases or prelu slopes); the SGD (momentum, Nesterov) or Adam step
    of the CPU backend's compiled kernels (``backends/cpu/optimizers.py``, the ones
    the local epoch calls) on theta in place; the batch loss
    sum_i w_i l_i / (W k) + alpha / (2 W) |w|^2 (k the outputs of the identity
    output, else 1; |w| before the step).  Returns that loss (inf or NaN where it
    overflowed: the step is taken all the same, as ``train_epoch`` takes it and as
    scikit-learn does; ``fit_stochastic`` decides what a non-finite epoch means).
    """

    def __init__(self, spec, alpha, out_activation):
        self.spec, self.alpha = spec, float(alpha)
        self.weights = np.concatenate([
            np.arange(r[W_OFF], r[W_OFF] + r[FAN_IN] * r[ZCOLS]) for r in spec.layers])
        self.k = float(spec.n_outputs) if out_activation == "identity" else 1.0
        self.grad = np.empty(spec.n_params, dtype=spec.dtype)

    def __call__(self, theta, opt, data, wsum, gsum):
        scale = 1.0 / wsum if wsum > 0 else 0.0
        lam = self.alpha * scale
        g = self.grad
        np.multiply(gsum, scale, out=g, casting="unsafe")
        w = theta[self.weights].astype(np.float64, copy=False)  # (float64 sums, as the kernel)
        sq = float(np.dot(w, w))
        g[self.weights] += lam * w
        h = opt.hyper
        if opt.solver == SGD:
            sgd_step(theta, g, opt.state1, opt.learning_rate, h[MOMENTUM],
                     h[NESTEROV] != 0.0)
        elif opt.solver == ADAM:
            t = h[ADAM_T] + 1.0
            adam_step(theta, g, opt.state1, opt.state2, opt.learning_rate, h[BETA1], h[BETA2],
                      h[EPS], t)
            h[ADAM_T] = t
        return data * scale / self.k + 0.5 * lam * sq


class ClusterEngine:
    """The engine of a dask fit (see the module docstring and ``fastmlp._solvers``).

    summaries: the blocks' ``_part_summary`` rows; weight_sum: the training
    rows' weight sum; seed: the fit's seed for the blocks' shuffles (drawn
    from (seed, epoch, block), so a retried round repeats it; averaging
    only); params: the local estimator (alpha, shuffle, early_stopping); net:
    its output (``_Net``); sync: "step", "epoch" or K (see the module
    docstring).  Step-synchronous only: rng, the generator of the epochs'
    shuffles (the local fit's, after its initial weights and split);
    train_rows: (block, position in the block's training rows) of each
    training row, in the order of the local fit's training rows (``_row_map``).
    Errors that no round can fix (no training rows, too few validation rows)
    are raised here, before training.
    """

    def __init__(self, cluster, spec, summaries, weight_sum, seed, params, net, sync="epoch",
                 rng=None, train_rows=None, dropout=None):
        self.cluster, self.spec, self.weight_sum, self.seed = cluster, spec, weight_sum, seed
        self.dropout = dropout  # (step-synchronous only: the estimators check)
        self.alpha, self.shuffle = params.alpha, params.shuffle
        self.sync, self.rng, self.train_rows = sync, rng, train_rows
        self.rows = [int(s[0]) for s in summaries]  # training rows of each part
        self.early_stopping = params.early_stopping and params.solver != "lbfgs"
        self.out_activation = net.out_activation
        self.n_train = int(sum(s[0] for s in summaries))
        if self.n_train == 0:
            raise ValueError("No training rows are left after the validation split; lower "
                             "validation_fraction or use larger blocks.")
        self.y_mean = None
        if self.early_stopping:
            if sum(s[2] for s in summaries) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self.out_activation in ("identity", "exp"):
                sums = cluster.gather_small(_val_target_sums)
                y_mean = sum(s[1] for s in sums) / sum(s[0] for s in sums)
                self.y_mean = np.atleast_1d(np.asarray(y_mean, dtype=np.float64))
        self.theta = self.opt = self.batch_size = None

    # ------------------------------------------------------------------ lbfgs
    def full_batch(self):
        return _LbfgsSums(self.cluster, self.spec)

    def threads(self):
        return contextlib.nullcontext()  # the client's BLAS is serial for the whole fit

    # ------------------------------------------------------------------ sgd / adam
    def start(self, theta, opt, batch_size):
        self.theta, self.opt, self.batch_size = theta, opt, batch_size
        self.order = np.arange(self.n_train)
        self.stepper = _SyncStep(self.spec, self.alpha, self.out_activation)
        # where a step's time goes (benchmarks/dask_scaleout.py reads these)
        self.steps = 0
        self.round_seconds = self.client_seconds = 0.0

    def epoch(self, index):
        """One epoch; the summed batch losses x rows (inf or NaN where a loss overflowed)."""
        if self.sync == "step":
            return self._step_epoch(index)
        return self._averaged_epoch(index)

    def _step_epoch(self, index):
        """The local fit's epoch, one round per minibatch (see ``_SyncStep``)."""
        if self.shuffle:
            self.order = _fastpath.shuffled(self.order, self.rng)  # the local fit's draw
        blocks, pos = self.train_rows
        seq_block, seq_pos = blocks[self.order], pos[self.order]
        total = 0.0
        for start in range(0, self.n_train, self.batch_size):
            tic = time.perf_counter()
            b = seq_block[start:start + self.batch_size]
            p = seq_pos[start:start + self.batch_size]
            rows = {int(i): p[b == i] for i in np.unique(b)}
            gids = None
            if self.dropout is not None:  # the rows' indices in the training rows: the masks'
                seq = self.order[start:start + self.batch_size]
                gids = {i: seq[b == i] for i in rows}
            step = _Step(self.theta.copy(), rows, self.dropout, gids, index)
            data, wsum, gsum = self.cluster.round(_block_step, step, self.spec)
            toc = time.perf_counter()
            loss = self.stepper(self.theta, self.opt, data, wsum, gsum)
            self.client_seconds += time.perf_counter() - toc
            self.round_seconds += toc - tic
            self.steps += 1
            total += loss * b.shape[0]
        return total

    def _averaged_epoch(self, index):
        """Rounds in which every block trains a copy, for the whole epoch ("epoch") or K
        of its minibatches (the epoch's rounds take the next K); after each round the
        copies' weights, optimizer moments and Adam step counts are averaged weighted by
        the rows they trained on (into opt, in place)."""
        opt, spec = self.opt, self.spec
        if self.sync == "epoch":
            spans = [None]
        else:
            k = int(self.sync)
            batches = max(-(-n // min(self.batch_size, n)) for n in self.rows if n)
            spans = [(lo, lo + k) for lo in range(0, batches, k)]
        total = 0.0
        for span in spans:
            rows, loss_sum, s_theta, s1, s2, s_t = self.cluster.round(
                _block_epoch, _Shared(self.theta.copy(), opt.copy()), spec, self.seed, index,
                self.batch_size, self.alpha, self.shuffle, opt.learning_rate, span)
            with np.errstate(all="ignore"):
                self.theta = (s_theta / rows).astype(spec.dtype)
                opt.state1[...] = s1 / rows
                opt.state2[...] = s2 / rows
            opt.hyper[ADAM_T] = s_t / rows
            total += loss_sum
            self.steps += 1
        return total

    def snapshot(self):
        return self.theta.copy()

    def finish(self):
        return self.theta

    def validation(self, theta):
        """(score, loss) of the held-out rows of every block, from one round of sums."""
        val = self.cluster.round(_block_validation, _Shared(theta.copy(), self.opt.copy()),
                                 self.spec, self.y_mean)
        if self.y_mean is None:
            return float(val[1] / val[0]), float(val[2] / val[0])
        return float(_r2(val[2], val[3])), float(val[1] / val[0])
