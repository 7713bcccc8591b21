"""Data-parallel training on a dask.distributed cluster, where the data lives.

The package: ``_estimators.py`` (the two estimators: input checks, fit, predict,
to_local), ``_cluster.py`` (the client side of a fit: block placement, the
actors, retried rounds, the fixed-order tree sums) and ``_blocks.py`` (the
worker-side functions of one block: preparing it, its sums, its epoch, its
validation sums).

``DaskMLPClassifier`` and ``DaskMLPRegressor`` take the local estimators'
parameters plus ``client``, fit on dask arrays (or dask DataFrames / Series)
chunked along rows, and end up with the same fitted attributes as a local
estimator; ``to_local()`` returns that plain estimator.

How a fit runs:

* Every block of rows is prepared once, on the worker that holds it (X in
  the model's dtype, targets encoded with the label encoding fixed on the
  client from the unique labels, weights combined with class weights), and
  kept there as a future whose graph goes back to the source arrays: a lost
  worker costs a recomputation of its blocks, not the fit.  The blocks are
  spread in contiguous runs, rows in proportion to each worker's threads (a
  block moves once where that is needed).  Only small per-block summaries
  (row counts, weight sums) and any input error come back to the client,
  before training starts.
* Every worker gets one dask actor (``_BlockHost``) holding its blocks.  A
  round (an L-BFGS evaluation, an epoch) is one call per worker, from the
  client straight to the worker and back: the parameters go in the call,
  the worker runs the compiled function on each of its blocks one after the
  other and adds the results along a tree fixed by block index, and one
  partial sum per worker (a few where its blocks are not neighbours) comes
  back; the client adds the partials along the same tree.  The sum is the
  same bit for bit wherever the blocks live.  A round the actors fail (a
  worker lost) is run as dask tasks instead, which recompute lost blocks,
  and the actors are placed anew.
* ``solver="lbfgs"`` is exact: each round returns the (loss, gradient) sums
  over all rows to scipy's L-BFGS-B on the client.
* ``solver="sgd"`` / ``"adam"`` with ``sync="step"`` (the default) train
  the local fit's model: each minibatch (the local fit's shuffle and
  boundaries) is one round in which every block returns its share of the
  batch's loss and gradient sums, and the client takes the local epoch's
  step on their tree sum.  ``sync="epoch"`` averages parameters instead:
  each epoch every block trains its own copy of the network for one epoch
  over its rows, starting from the same parameters and optimizer state, and
  the copies (parameters, optimizer moments, Adam's step count) are averaged
  weighted by rows; ``sync=K`` averages after every K minibatches.
* The client process's BLAS runs on one thread during a fit: its work is
  small vector work, and woken OpenBLAS threads spin on the cores the
  workers need (a LocalCluster on the same machine).
"""

try:
    import dask  # noqa: F401  (only the check)
    import distributed  # noqa: F401
except ImportError as exc:  # pragma: no cover - the [dask] extra is missing
    raise ImportError(
        'fastmlp.dask needs dask and distributed: pip install "fastmlp[dask]"') from exc

from ._estimators import DaskMLPClassifier, DaskMLPRegressor

# the public names live here (pickles, the API pages), whichever file defines them
DaskMLPClassifier.__module__ = DaskMLPRegressor.__module__ = __name__

__all__ = ["DaskMLPClassifier", "DaskMLPRegressor"]
