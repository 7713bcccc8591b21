"""fastmlp.dask: the cluster as an engine of the training loops (``fastmlp._solvers``).

``ClusterEngine`` runs what the loops ask for as rounds over one fit's blocks
(``_cluster._Cluster``): an lbfgs evaluation is one round of per-block
(loss, gradient) sums; a stochastic epoch is one round in which every block
trains its own copy of the network from the same weights and optimizer state,
and the copies are averaged weighted by rows; early stopping's validation is
one round of per-block validation sums.  The loops themselves (stopping rule,
schedule, divergence, history, verbose) are the local estimators'.
"""

import contextlib

import numpy as np

from ..backends.layout import ADAM_T
from ._blocks import _Shared, _block_epoch, _block_sums, _block_validation, _val_target_sums


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


class ClusterEngine:
    """The engine of a dask fit (see the module docstring and ``fastmlp._solvers``).

    summaries: the blocks' ``_part_summary`` rows; weight_sum: the training
    rows' weight sum; seed: the fit's seed for the blocks' shuffles (drawn
    from (seed, epoch, block), so a retried round repeats it); params: the
    local estimator (alpha, shuffle, early_stopping); net: its output
    (``_Net``).  Errors that no round can fix (no training rows, too few
    validation rows) are raised here, before training.
    """

    def __init__(self, cluster, spec, summaries, weight_sum, seed, params, net):
        self.cluster, self.spec, self.weight_sum, self.seed = cluster, spec, weight_sum, seed
        self.alpha, self.shuffle = params.alpha, params.shuffle
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

    def epoch(self, index):
        """One round: every block trains a copy for an epoch; the copies' weights, optimizer
        moments and Adam step counts averaged weighted by rows (into opt, in place)."""
        opt, spec = self.opt, self.spec
        rows, loss_sum, s_theta, s1, s2, s_t = self.cluster.round(
            _block_epoch, _Shared(self.theta.copy(), opt.copy()), spec, self.seed, index,
            self.batch_size, self.alpha, self.shuffle, opt.learning_rate)
        with np.errstate(all="ignore"):
            self.theta = (s_theta / rows).astype(spec.dtype)
            opt.state1[...] = s1 / rows
            opt.state2[...] = s2 / rows
        opt.hyper[ADAM_T] = s_t / rows
        return loss_sum

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
