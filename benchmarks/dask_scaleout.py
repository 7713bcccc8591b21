"""Scale-out of fastmlp.dask: the same fits on 1 and on 2 worker processes, side by side.

    python benchmarks/dask_scaleout.py                    # 200000 x 100, hidden (128,)
    python benchmarks/dask_scaleout.py --rows 50000 --repeat 1   # a quick look

The data are drawn on the workers (dask.array.random) and persisted there
before the clock starts, so a timed fit covers preparing the blocks
(validation, encoding) and training, and the data never pass through the
client.  The scheduler and every worker run in processes of their own
(``SubprocessCluster``); every worker has one thread; dask's nanny starts
workers with OMP/OPENBLAS/MKL_NUM_THREADS=1, so BLAS runs on one thread per
worker (printed below) and two workers do not fight over the two cores.

The 1- and 2-worker clusters alternate (a fresh cluster each time, one at a
time, so an idle cluster never competes) until every kind of fit has been
measured ``--repeat`` times with little other load on the machine (or
``--max-pairs`` pairs have run); the table keeps each kind's best quiet time.
Every fit also records:

* per round: the fit's time after the blocks were prepared, divided by its
  rounds (one L-BFGS evaluation, or one epoch);
* other load: the CPU time that processes other than this benchmark's
  (client, scheduler, workers) used during the fit, in cores, from
  /proc/stat; on a shared machine a fit that ran beside other work shows it
  here;
* bytes the client received, two ways: what fastmlp.dask itself gathered
  (``_dask_fit_info["bytes_received"]``: the reduced loss/gradient or
  averaged parameters, one partial sum per worker and round, and per-block
  summaries), and every byte the client process read from TCP connections
  during the fit (frames counted in ``distributed.comm.tcp``, scheduler
  chatter included).

Two controls say what the machine offers two single-threaded processes at the
time: NumPy matrix products (before and after), and, before every pair of
clusters, the local lbfgs fit itself (the compiled loss and gradient, the
same number of evaluations) on all rows in one process against half the rows
in each of two processes at once, without dask: the ceiling of the lbfgs
speed-up at that moment.  On a shared virtual machine it moves by +-15 %
from minute to minute.
"""

import argparse
import os
import platform
import time
import warnings

import numpy as np


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class TcpBytes:
    """Counts the bytes of every message frame the client process reads over TCP."""

    def __init__(self):
        import distributed.comm.tcp as tcp

        self.total = 0
        original = tcp.from_frames

        async def counting(frames, *args, **kwargs):
            self.total += sum(memoryview(f).nbytes for f in frames)
            return await original(frames, *args, **kwargs)

        tcp.from_frames = counting


def busy_seconds():
    """CPU seconds all processes of the machine have used (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds():
    """CPU seconds used by this process and its children (scheduler, workers), or None."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = 0.0
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _one_thread():
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def _gemm_work(_):
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((25_000, 100), dtype=np.float32)
    w = np.ones((100, 128), dtype=np.float32)
    with threadpool_limits(1):
        for _ in range(30):
            a @ w


def gemm_ceiling():
    """Speed-up of 2 processes over 1 on the same NumPy GEMM work, measured now.

    What the machine offers two single-threaded workers at this moment (other
    load on a shared machine lowers it); the dask speed-ups read against it.
    """
    from multiprocessing import get_context

    times = {}
    for procs in (1, 2):
        with get_context("spawn").Pool(procs) as pool:
            pool.map(_gemm_work, range(procs))  # start-up, imports
            tic = time.perf_counter()
            pool.map(_gemm_work, range(4))
            times[procs] = time.perf_counter() - tic
    return times[1] / times[2]


def _lbfgs_work(rows, features, hidden, evals, barrier, out):
    """The local lbfgs fit on ``rows`` rows in this process, after a barrier; time to out."""
    _one_thread()
    import numba
    from threadpoolctl import threadpool_limits

    from fastmlp import MLPClassifier

    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    # max_fun: the same number of loss/gradient evaluations whatever the rows
    kw = dict(hidden_layer_sizes=(hidden,), solver="lbfgs", tol=0.0, max_iter=1000,
              random_state=0, backend="cpu")
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        MLPClassifier(**dict(kw, max_fun=2)).fit(X[:500], y[:500])  # load the kernels
        barrier.wait()
        tic = time.perf_counter()
        MLPClassifier(**dict(kw, max_fun=evals)).fit(X, y)
        out.put(time.perf_counter() - tic)


def lbfgs_control(rows, features, hidden, evals=10):
    """(seconds in 1 process, seconds in 2): the local lbfgs fit on all rows in one
    process, and on half the rows in each of two processes at once (no dask): the
    compiled loss and gradient split in two, the ceiling of the dask lbfgs speed-up."""
    from multiprocessing import get_context

    ctx = get_context("spawn")
    times = []
    for procs in (1, 2):
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        ps = [ctx.Process(target=_lbfgs_work,
                          args=(rows // procs, features, hidden, evals, barrier, out))
              for _ in range(procs)]
        for p in ps:
            p.start()
        times.append(max(out.get() for _ in ps))
        for p in ps:
            p.join()
    return tuple(times)


def blas_threads():
    """(BLAS library, threads) of each BLAS loaded in this process (runs on a worker)."""
    from threadpoolctl import threadpool_info

    return sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()
                   if p["user_api"] == "blas"})


def make_data(rows, features, classes, blocks, dtype):
    """X (rows, features) and labels from a fixed random teacher, computed on the workers."""
    import dask.array as da

    chunk = -(-rows // blocks)
    rng = da.random.default_rng(0)
    X = rng.standard_normal(size=(rows, features), chunks=(chunk, features), dtype=np.float64)
    X = X.astype(dtype)
    teacher = np.random.default_rng(1).normal(size=(features, classes)) / np.sqrt(features)
    noise = rng.standard_normal(size=(rows, classes), chunks=(chunk, classes))
    y = da.argmax(X.astype(np.float64) @ teacher + 0.5 * noise, axis=1)
    return X, y


def fit_once(est, X, y, tcp):
    before, busy0, own0 = tcp.total, busy_seconds(), own_seconds()
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    seconds = time.perf_counter() - tic
    busy1, own1 = busy_seconds(), own_seconds()
    other = None
    if None not in (busy0, busy1, own0, own1):
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds
    return dict(seconds=seconds, tcp=tcp.total - before, est=est, other=other)


def run_cluster(args, workers, cases, tcp):
    """One cluster of ``workers`` worker processes; one fit of each case."""
    from distributed import Client
    from distributed.deploy.subprocess import SubprocessCluster

    from fastmlp.dask import DaskMLPClassifier

    # the scheduler in a process of its own (LocalCluster would run it inside this
    # one, and the TCP count would include what workers send the scheduler)
    cluster = SubprocessCluster(n_workers=workers, threads_per_worker=1,
                                dashboard_address=None, worker_kwargs={"memory_limit": 0})
    client = Client(cluster)
    out = {}
    try:
        X, y = make_data(args.rows, args.features, args.classes, args.blocks, args.dtype)
        X, y = client.persist([X, y])
        client.wait_for_workers(workers)
        Xs, ys = X[: 4 * args.blocks * 50], y[: 4 * args.blocks * 50]
        for kw in cases.values():  # warm up: load the compiled kernels in every worker
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                DaskMLPClassifier(**dict(kw, max_iter=2)).fit(Xs.rechunk(200), ys.rechunk(200))
        out["blas"] = sorted(set(map(str, client.run(blas_threads).values())))
        for name, kw in cases.items():
            out[name] = fit_once(DaskMLPClassifier(**kw), X, y, tcp)
    finally:
        client.close()
        cluster.close()
    return out


def run(args):
    tcp = TcpBytes()
    common = dict(hidden_layer_sizes=(args.hidden,), random_state=0, backend="cpu",
                  dtype=args.dtype)
    cases = {
        "lbfgs": dict(common, solver="lbfgs", max_iter=args.lbfgs_iter),
        "adam": dict(common, solver="adam", max_iter=args.adam_epochs, n_iter_no_change=np.inf),
    }
    results, runs = {}, []
    clean = {}  # (case, workers) -> fits measured with little other load
    pair = 0
    while pair < args.max_pairs:
        pair += 1
        if not args.no_controls:
            c1, c2 = lbfgs_control(args.rows, args.features, args.hidden)
            print(f"pair {pair}, control: the local lbfgs fit, {args.rows} rows in 1 process "
                  f"{c1:.2f} s, half in each of 2 processes {c2:.2f} s: {c1 / c2:.2f}x",
                  flush=True)
            results.setdefault("control", []).append(c1 / c2)
        for workers in (1, 2):
            out = run_cluster(args, workers, cases, tcp)
            print(f"pair {pair}, {workers} worker(s): BLAS (library, threads) per worker "
                  f"{out['blas']}; " + "; ".join(
                      f"{name} {out[name]['seconds']:.2f} s (other load "
                      f"{fmt_load(out[name]['other'])})" for name in cases), flush=True)
            for name in cases:
                r = out[name]
                runs.append((name, workers, r))
                quiet = r["other"] is None or r["other"] <= args.max_other_load
                if quiet:
                    clean[(name, workers)] = clean.get((name, workers), 0) + 1
                key = (name, workers)
                best = results.get(key)
                # the best quiet fit; a disturbed one only while there is no quiet one
                if (best is None or (quiet and not best["quiet"])
                        or (quiet == best["quiet"] and r["seconds"] < best["seconds"])):
                    results[key] = dict(r, quiet=quiet)
        if pair >= args.repeat and all(clean.get((name, w), 0) >= args.repeat
                                       for name in cases for w in (1, 2)):
            break
    return results, runs


def fmt_load(x):
    return "n/a" if x is None else f"{x:.2f} cores"


def report(args, results, loads):
    data_mb = args.rows * args.features * np.dtype(args.dtype).itemsize / 2**20
    print(f"\nfastmlp.dask scale-out, {args.rows} x {args.features} {args.dtype}, "
          f"{args.classes} classes, hidden ({args.hidden},), {args.blocks} blocks; "
          f"X is {data_mb:.1f} MiB")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); load average before / after: "
          f"{loads[0]:.2f} / {loads[1]:.2f}; 1- and 2-worker clusters alternating, the best of "
          f"the fits with other load <= {args.max_other_load} cores (at least {args.repeat} of "
          f"each where --max-pairs allowed; * marks a fit with more); dask's worker profiler "
          f"{'off' if args.no_worker_profiler else 'on (the default)'}")
    print("| fit | workers | time | preparing | per round | speed-up | rounds | loss_ | "
          "other load | client received (fastmlp / all TCP) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("lbfgs", "adam"):
        base = results[(name, 1)]["seconds"]
        for workers in (1, 2):
            r = results[(name, workers)]
            est = r["est"]
            info = est._dask_fit_info
            rounds = info["rounds"]
            prep = info.get("prepare_seconds", 0.0)
            per_round = (info["seconds"] - prep) / rounds
            print(f"| {name} | {workers} | {r['seconds']:.2f} s | {prep:.2f} s | "
                  f"{1e3 * per_round:.0f} ms | {base / r['seconds']:.2f}x | {rounds} | "
                  f"{est.loss_:.6f} | {fmt_load(r['other'])}{'' if r['quiet'] else ' *'} | "
                  f"{info['bytes_received'] / 2**10:.0f} KiB / {r['tcp'] / 2**10:.0f} KiB |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--lbfgs-iter", type=int, default=15)
    p.add_argument("--adam-epochs", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3,
                   help="fits of each kind measured with little other load")
    p.add_argument("--max-other-load", type=float, default=0.15,
                   help="cores other processes may use during a fit that counts as quiet")
    p.add_argument("--max-pairs", type=int, default=8,
                   help="1-worker / 2-worker cluster pairs at most")
    p.add_argument("--no-worker-profiler", action="store_true",
                   help="start the workers with dask's statistical profiler off "
                        "(distributed.worker.profile.enabled: False; it samples every "
                        "thread every 10 ms)")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the GEMM and local-lbfgs 2-process controls")
    args = p.parse_args()
    if args.no_worker_profiler:  # the worker processes inherit this environment
        os.environ["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
    load0 = os.getloadavg()[0]
    if not args.no_controls:
        before = gemm_ceiling()
    results, _ = run(args)
    if not args.no_controls:
        after = gemm_ceiling()
    report(args, results, (load0, os.getloadavg()[0]))
    if not args.no_controls:
        control = results["control"]
        print(f"\n2 processes vs 1 on this machine: NumPy GEMM {before:.2f}x before / "
              f"{after:.2f}x after the fits; the local lbfgs fit ({args.rows} rows split in "
              f"two, no dask), one per pair: "
              + ", ".join(f"{c:.2f}x" for c in control) + f" (best {max(control):.2f}x)")


if __name__ == "__main__":
    main()
