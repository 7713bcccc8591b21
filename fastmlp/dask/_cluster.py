"""fastmlp.dask, client side of a fit: where the blocks go and how a round runs.

``_Cluster`` holds one fit's prepared blocks and runs rounds over them through
one actor per worker (``_BlockHost``), falling back to retried task rounds;
``_contiguous_homes`` places the blocks; ``_tree_sum`` adds per-block results
along a tree fixed by block index, so a sum is the same bit for bit wherever
the blocks live.
"""

import collections
import contextlib
import uuid
from concurrent.futures import CancelledError as _FuturesCancelled

import dask
import distributed
import numpy as np

from ._blocks import _part_summary

# a round that loses a worker, a replica or a connection is sent again, this often
_ROUND_ATTEMPTS = 4
# a round's payload (parameters, optimizer state) up to this size travels inside
# the round's tasks (one message per worker, no scatter); a larger one is
# scattered once and fetched by each worker
_INLINE_PAYLOAD_BYTES = 4 * 2**20
_TRANSIENT = (
    _FuturesCancelled, OSError,
    getattr(distributed.client, "FutureCancelledError", _FuturesCancelled),
    getattr(distributed.client, "FuturesCancelledError", _FuturesCancelled),
)


def _add(*items):
    """Elementwise sum, left to right, of equal-length tuples of numbers / arrays.

    Returns new objects (the inputs are stored results a retry may read again).
    """
    total = list(items[0])
    for item in items[1:]:
        total = [x + y for x, y in zip(total, item)]
    return tuple(total)


def _tree_nodes(lo, hi, held):
    """The largest nodes of the fixed halving tree over blocks [lo, hi) whose blocks are
    all in ``held``, in block order.  (lo, hi) splits at (lo + hi) // 2, down to single
    blocks; the tree depends on the number of blocks only, never on their placement."""
    if all(i in held for i in range(lo, hi)):
        return [(lo, hi)]
    if hi - lo == 1:
        return []
    mid = (lo + hi) // 2
    return _tree_nodes(lo, mid, held) + _tree_nodes(mid, hi, held)


def _tree_sum(lo, hi, known):
    """The sum over blocks [lo, hi), added along the fixed halving tree.

    known: {(lo, hi): sum} for whole nodes of the tree (single blocks included);
    every node is added the same way whichever process adds it, so the result is
    the same bit for bit however the blocks are spread over the workers.
    """
    if (lo, hi) in known:
        return known[(lo, hi)]
    mid = (lo + hi) // 2
    return _add(_tree_sum(lo, mid, known), _tree_sum(mid, hi, known))


def _group_round(func, n_blocks, nodes, payload, args, parts):
    """A round on the blocks one worker holds: {node: sum of func over its blocks}.

    nodes: whole nodes of the tree over n_blocks blocks (from ``_tree_nodes``);
    parts: their blocks' parts, in node order.  One task per worker and round:
    the blocks run one after the other here, and only one partial sum per node
    (usually one per worker) leaves the worker.
    """
    it = iter(parts)
    leaves = {}
    with _one_kernel_thread():
        for lo, hi in nodes:
            for i in range(lo, hi):
                leaves[(i, i + 1)] = func(next(it), payload, *args)
    return {node: _tree_sum(*node, leaves) for node in nodes}


@contextlib.contextmanager
def _one_kernel_thread():
    """numba's parallel kernels on one thread in this (a worker's task) thread.

    A worker runs as many tasks at once as it has threads, and the workers of a
    machine share its cores: the parallelism is the cluster's, so a kernel
    that would split its rows over numba's threads (one per core) would
    oversubscribe the cores.  numba's thread count is per calling thread.
    """
    import numba

    before = numba.get_num_threads()
    if before == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


class _BlockHost:
    """A dask actor holding the prepared blocks of one worker: a round's fast path.

    A call goes from the client straight to the worker and its answer straight
    back (one message each way); a task round also passes through the
    scheduler twice and then fetches the result (see ``_Cluster.round``).
    The parts are the same objects as the worker's stored blocks.
    """

    def __init__(self, nodes, parts):
        self.nodes, self.parts = nodes, parts

    def run(self, func, n_blocks, payload, args):
        return _group_round(func, n_blocks, self.nodes, payload, args, self.parts)


def _nbytes(obj):
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    if hasattr(obj, "__dict__"):
        return _nbytes(vars(obj))
    return 8


def _client_blas_serial():
    """This (the client's) process's BLAS libraries on one thread while a fit runs.

    The client only does vector work (scipy's L-BFGS-B step, averaging) between
    rounds, too small for a second BLAS thread; but OpenBLAS wakes its pool
    for 14,000-element vectors, and the woken threads spin for a while after
    each call, on the cores the workers compute on (a LocalCluster on the same
    machine).  Held through the process-wide, reference-counted limiter of the
    CPU backend, so that local fits in other threads restore correctly.
    """
    from ..backends.cpu import serial_blas

    return serial_blas()


def _contiguous_homes(threads, held, rows):
    """A worker for each block: contiguous runs of blocks, rows in proportion to threads.

    threads: {worker: threads}; held: {block: workers holding it now};
    rows: {block: rows}.  The runs go to the workers in the order in which
    they hold the blocks now (by the mean index of the blocks each holds;
    those holding none last), so that few blocks move.  Each round then keeps
    every worker equally busy (an idle worker has no reason to steal another's
    block), and a worker holding a run of neighbouring blocks adds them up
    itself and sends one partial sum, or a few (see ``_tree_nodes``).
    """
    mine = {a: [] for a in threads}
    for i, addrs in held.items():
        for a in addrs:
            if a in mine:
                mine[a].append(i)
    order = sorted(threads, key=lambda a: (np.mean(mine[a]) if mine[a] else np.inf, a))
    bounds = np.cumsum([threads[a] for a in order]) / sum(threads.values())
    blocks = sorted(rows)
    r = np.array([rows[i] for i in blocks], dtype=np.float64)
    middle = (np.cumsum(r) - r / 2) / max(r.sum(), 1.0)
    run = np.minimum(np.searchsorted(bounds, middle, side="right"), len(order) - 1)
    return {i: order[k] for i, k in zip(blocks, run)}


def _worker_threads(client):
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {a: max(1, int(w.get("nthreads", 1))) for a, w in workers.items()}


def _balanced_homes(client, X, blocks):
    """{block: [worker]} for preparing the blocks (``_contiguous_homes``), from where a
    persisted X's blocks are; {} with fewer than two workers."""
    threads = _worker_threads(client)
    if len(threads) < 2:
        return {}
    keys = {X.__dask_keys__()[i][0]: i for i in blocks}
    try:
        holders = client.who_has(X)  # X's blocks held on the cluster (a persisted X)
    except Exception:  # pragma: no cover - placement is only a preference
        holders = {}
    held = {keys[k]: addrs for k, addrs in holders.items() if k in keys}
    home = _contiguous_homes(threads, held, {i: X.chunks[0][i] for i in blocks})
    return {i: [a] for i, a in home.items()}


class _Cluster:
    """One fit's prepared blocks on the cluster, and the rounds run over them.

    A round sends its payload (parameters, optimizer state) in one call per
    worker, to the worker's ``_BlockHost`` actor, which runs a function on
    every prepared block that worker holds and adds the results along a tree
    fixed by block index (``_tree_sum``); the client adds the workers'
    partial sums along the same tree, so the result does not depend on which
    worker holds which block.  A round the actors fail runs as one task per
    worker instead (``_task_round``: the same functions and sums, with dask's
    recomputation of lost blocks; sent again, with fresh keys and the blocks'
    current places, when it loses a worker or a connection).

    Per round, with actors: one message each way per worker, the scheduler
    not involved.  As tasks: the client sends the tasks to the scheduler, the
    scheduler to the workers, the workers report back, the scheduler tells
    the client, and the client fetches the results: ~15-30 ms more per round
    on a 2-core machine, and ~20 ms of the scheduler's CPU.
    """

    def __init__(self, client, parts, rows, homes):
        self.client, self.parts = client, parts
        self.rows = dict(enumerate(rows))  # rows of each part, in block order
        self.homes = homes  # {part: worker} the parts were sent to ({} with one worker)
        self.tag = uuid.uuid4().hex[:12]
        self.rounds = 0
        self.bytes_received = 0
        self._groups = None
        self._held = None
        self.use_actors = True
        self._hosts = None  # [(actor future, actor)] of the current groups
        self.fallbacks = 0  # rounds the actors failed (then run as tasks)

    def start(self):
        """The parts' summaries (``_part_summary``), in block order.

        The actors are started in the same breath (on the workers the parts
        were sent to, once the parts are ready), so that preparing the blocks,
        summarising them and starting the actors cost one wait.  An input error
        found while preparing a block is raised here.
        """
        if self.homes:
            groups = {}
            for i in range(len(self.parts)):
                groups.setdefault(self.homes.get(i), []).append(i)
            self._groups = sorted(groups.items(), key=lambda item: item[1][0])
        else:
            self._groups = [(None, list(range(len(self.parts))))]
        hosts = None
        try:
            hosts = self._submit_hosts() if self.use_actors else None
        except Exception:
            self._fail_hosts()
        summaries = self.gather_small(_part_summary)
        if hosts is not None:
            try:
                self._hosts = [(f, f.result()) for f in hosts]
            except Exception:
                self._fail_hosts()
        return summaries

    def gather_small(self, func, *args):
        """Per-block results of a cheap function, in block order (summaries)."""
        futures = self.client.map(func, self.parts, *[[a] * len(self.parts) for a in args],
                                  key=[f"fastmlp-{func.__name__}-{self.tag}-{i}"
                                       for i in range(len(self.parts))])
        out = self.client.gather(futures)
        self.bytes_received += _nbytes(out)
        return out

    def _place(self):
        """[(worker, block positions)]: contiguous runs of blocks for the live workers.

        From where the prepared blocks are now (``_contiguous_homes``); a block
        held elsewhere moves to its run's worker once, in the first round that
        needs it there (the worker keeps the copy), and a block being
        recomputed after a worker loss goes wherever its run's task runs.
        """
        threads = _worker_threads(self.client)
        if len(threads) < 2:
            return [(None, list(range(len(self.parts))))]
        who = self.client.who_has(self.parts)
        held = {i: who.get(f.key, ()) for i, f in enumerate(self.parts)}
        home = _contiguous_homes(threads, held, self.rows)
        groups = {}
        for i in range(len(self.parts)):
            groups.setdefault(home[i], []).append(i)
        return sorted(groups.items(), key=lambda item: item[1][0])

    def close(self):
        """Release the actors and the round results still held."""
        self._hosts = self._held = None

    def _submit_hosts(self):
        """Futures of one ``_BlockHost`` actor per group, on the group's worker."""
        n = len(self.parts)
        futures = []
        for j, (worker, blocks) in enumerate(self._groups):
            nodes = _tree_nodes(0, n, set(blocks))
            parts = [self.parts[i] for lo, hi in nodes for i in range(lo, hi)]
            futures.append(self.client.submit(
                _BlockHost, nodes, parts, actor=True,
                key=f"fastmlp-host-{self.tag}-{self.fallbacks}-{j}",
                workers=None if worker is None else [worker],
                allow_other_workers=worker is not None))
        return futures

    def _start_hosts(self):
        """Actors for the blocks' current places (after a failed round)."""
        self._groups = self._place()
        self._hosts = [(f, f.result()) for f in self._submit_hosts()]

    def _fail_hosts(self):
        self._hosts = self._groups = None  # placed anew
        self.fallbacks += 1
        if self.fallbacks > _ROUND_ATTEMPTS:
            self.use_actors = False  # e.g. the client cannot reach the workers

    def round(self, func, payload, *args):
        """The sum over blocks of func(part, payload, *args), added along the block tree.

        Through the actors (``_BlockHost``) where they work; a round they fail
        (a worker lost, a connection refused, an error) runs as tasks, which
        recompute lost blocks, retry and raise the error, and the actors are
        placed anew for the next round.
        """
        n = len(self.parts)
        if self.use_actors:
            try:
                if self._hosts is None:
                    self._start_hosts()
                calls = [host.run(func, n, payload, args) for _, host in self._hosts]
                partials = [c.result() for c in calls]
            except Exception:
                self._fail_hosts()
            else:
                self.rounds += 1
                return self._total(n, partials)
        return self._task_round(func, payload, args)

    def _total(self, n, partials):
        self.bytes_received += _nbytes(partials)
        known = {}
        for p in partials:
            known.update(p)
        return _tree_sum(0, n, known)

    def _task_round(self, func, payload, args):
        n = len(self.parts)
        last = None
        for attempt in range(_ROUND_ATTEMPTS):
            self.rounds += 1
            prefix = f"fastmlp-{func.__name__}-{self.tag}-{self.rounds}"
            try:
                if self._groups is None or attempt:
                    self._groups = self._place()
                sent = payload
                if _nbytes(payload) > _INLINE_PAYLOAD_BYTES:
                    # one copy to one worker; the others fetch it from there once
                    sent = self.client.scatter(payload, hash=False)
                keys = [f"{prefix}-{j}" for j in range(len(self._groups))]
                nodes = [_tree_nodes(0, n, set(blocks)) for _, blocks in self._groups]
                parts = [[self.parts[i] for lo, hi in nd for i in range(lo, hi)] for nd in nodes]
                # each group's task on the worker holding its blocks, as a loose
                # restriction (after a worker loss it runs anywhere); one map call, so
                # that all tasks reach the scheduler in one message and start together
                homes = collections.defaultdict(list, {
                    k: [w] for k, (w, _) in zip(keys, self._groups) if w is not None})
                g = len(keys)
                with dask.annotate(workers=homes.__getitem__, allow_other_workers=True):
                    futures = self.client.map(_group_round, [func] * g, [n] * g, nodes,
                                              [sent] * g, [args] * g, parts, key=keys,
                                              pure=False)
                # the previous round's results are released after this round was sent:
                # a release sent first would hold the next message back (the client
                # batches its messages to the scheduler, 10 ms apart)
                self._held = futures
                partials = self.client.gather(futures)
            except _TRANSIENT as exc:  # a worker (or a connection) was lost
                last = exc
                continue
            return self._total(n, partials)
        raise RuntimeError(f"A cluster round failed {_ROUND_ATTEMPTS} times; the last "
                           f"error: {last!r}") from last

