"""`python -m fastlstm.bench.dask_scaling`: fastlstm.dask on a local cluster of worker
processes against one process (issue 19's targets).

Inference. A SequenceClassifier (fastlstm.sklearn; LSTM, H = 64, float64 as its default; a
float32 ManyToOne beside it) predicts probabilities for N = 16,000 sequences of T = 100 steps
of I = 3 features, in chunks of 2,000 rows:
    one process   one thread (fastlstm.threads(1)) working through the same chunks in turn
    dask          fastlstm.dask.predict_proba(model, X), computed on `workers` worker
                  processes of one thread each, X's chunks scattered to the workers in
                  turn beforehand (the model is
                  shipped, the chunks computed and the results gathered in each timed call);
                  "from client" sends X's chunks from this process as part of the call
the two alternating (timing.measure_pair), each result checked bit for bit against the
in-process call first. The target: speedup (one process / dask) >= 1.6 on 2 workers.
Per-chunk overhead: what the cluster costs each chunk beyond its computing,
    (dask time * workers - one-process time) / chunks      (worker-seconds per chunk)
and, measured apart, the time per chunk of a predict_proba whose chunks hold 2 rows of 1
step (nothing to compute): the scheduler's round trip per task.

Training. A ManyToOne(LSTM(3, 64), Linear(64, 4)), cross-entropy, Adam, on N sequences of
T steps: the time per step (one epoch / its steps) of fastlstm.fit in one process (1 thread,
and as many threads as workers) and of fastlstm.dask.fit on the cluster (a synchronous step:
the shards' gradients summed; and average_every=8), for several batch sizes; the break-even
batch size is the smallest at which the data-parallel step is faster.

Options: --workers (2), --repeats (5), --only inference|training, --quick (small sizes
and short timings: a smoke run, whose figures mean little).
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

import fastlstm

from .machine import OtherLoad, git_commit, load_average, machine_info
from .timing import measure, measure_pair


def _cluster(workers):
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    client = Client(cluster)
    client.wait_for_workers(workers)
    return cluster, client, time.perf_counter() - t


def _cpu_seconds():
    t = os.times()
    return t.user + t.system


class _OutsideLoad:
    """CPUs kept busy by processes other than this one and the cluster's (the scheduler and
    the workers, whose CPU time each reports): machine.OtherLoad less the cluster."""

    def __init__(self, client):
        self.client = client
        self.load = OtherLoad()
        self.start = self._cluster_cpu()
        self.t0 = time.monotonic()

    def _cluster_cpu(self):
        workers = sum(self.client.run(_cpu_seconds).values())
        if self.client.run_on_scheduler(os.getpid) == os.getpid():
            return workers     # a LocalCluster's scheduler runs in this process
        return workers + self.client.run_on_scheduler(_cpu_seconds)

    def cpus(self):
        cluster = (self._cluster_cpu() - self.start) / max(1e-9, time.monotonic() - self.t0)
        other = self.load.cpus()
        return None if other is None else round(max(0.0, other - cluster), 2)


def _quiet_large_graphs():
    """The bench sends X from this process on purpose (the "from client" column, and the
    persist of X): distributed's warning about a large graph says nothing new here."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    return ctx


def _classifier(x, H, seed=0):
    """A SequenceClassifier fitted for one epoch on a few rows (its speed, not its skill,
    is measured), or None without scikit-learn."""
    try:
        from fastlstm.sklearn import SequenceClassifier
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    rows = rng.choice(x.shape[0], 256, replace=False)
    y = (x[rows, 0, 0] > 0).astype(int) + (x[rows, -1, 1] > 0).astype(int)
    return SequenceClassifier(hidden_size=H, epochs=1, random_state=seed).fit(x[rows], y)


def _structure(I, H, C=4, seed=0):
    from fastlstm import LSTM, Linear, ManyToOne

    return ManyToOne(LSTM(I, H, batch_first=True, seed=seed), Linear(H, C, seed=seed)).eval()


def _proba_in_process(model):
    from fastlstm.dask._inference import _softmax

    if hasattr(model, "predict_proba"):
        return model.predict_proba
    return lambda x: _softmax(model(x))


def inference(client, workers, N, T, I, H, chunk, repeats, min_time=2.0):
    import dask.array as da

    import fastlstm.dask as fdask

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, I), dtype=np.float32)
    # X's chunks already on the workers, spread over them (scatter deals them out in turn),
    # as a job that reads its data there would have them (a persisted da.from_array of a
    # NumPy array may stay one key on one worker)
    parts = client.scatter([x[i:i + chunk] for i in range(0, N, chunk)])
    X = da.concatenate([da.from_delayed(part, shape=(min(chunk, N - i), T, I), dtype=x.dtype)
                        for part, i in zip(parts, range(0, N, chunk))])
    rows = []
    models = [("SequenceClassifier float64", _classifier(x, H)),
              ("ManyToOne float32", _structure(I, H))]
    X_client = da.from_array(x, chunks=(chunk, T, I))
    n_chunks = len(X.chunks[0])
    for label, model in models:
        if model is None:
            rows.append({"model": label, "skipped": "scikit-learn not installed"})
            continue
        in_process = _proba_in_process(model)

        def one_process():
            with fastlstm.threads(1):
                return np.concatenate([in_process(x[i:i + chunk]) for i in range(0, N, chunk)])

        def on_cluster():
            return client.compute(fdask.predict_proba(model, X), sync=True)

        expected = one_process()
        if not np.array_equal(on_cluster(), expected):
            raise AssertionError(f"{label}: fastlstm.dask.predict_proba differs from the "
                                 f"in-process call")
        load = _OutsideLoad(client)
        t_one, t_dask = measure_pair(one_process, on_cluster, min_time=min_time,
                                      repeats=repeats)
        t_client = measure(lambda: client.compute(fdask.predict_proba(model, X_client),
                                                  sync=True),
                           min_time=min_time / 2, repeats=max(2, repeats // 2))
        rows.append({"model": label, "one_process_s": t_one.median, "dask_s": t_dask.median,
                     "one_process_best_s": t_one.best, "dask_best_s": t_dask.best,
                     "dask_from_client_s": t_client.median,
                     "speedup": t_one.median / t_dask.median,
                     "speedup_best": t_one.best / t_dask.best,
                     "overhead_per_chunk_ms": 1e3 * (t_dask.median * workers - t_one.median)
                     / n_chunks, "outside_load_cpus": load.cpus()})
    # the round trip per task: chunks with nothing to compute
    tiny = _structure(I, 8)
    xt = rng.standard_normal((2 * 64, 1, I), dtype=np.float32)
    Xt = client.persist(da.from_array(xt, chunks=(2, 1, I)))
    t_tiny = measure(lambda: client.compute(fdask.predict_proba(tiny, Xt), sync=True),
                     min_time=min_time / 4, repeats=repeats)
    return {"N": N, "T": T, "I": I, "H": H, "chunk": chunk, "chunks": n_chunks,
            "rows": rows, "empty_task_ms": 1e3 * t_tiny.median / 64 * workers}


def training(client, workers, N, T, I, H, batch_sizes, repeats):
    import dask.array as da

    import fastlstm.dask as fdask
    from fastlstm import LSTM, Adam, Linear, ManyToOne

    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, T, I), dtype=np.float32)
    y = rng.integers(0, 4, N)
    X = client.persist(da.from_array(x, chunks=(max(1, N // (4 * workers)), T, I)))
    Y = client.persist(da.from_array(y, chunks=X.chunks[0]))

    def make():
        return ManyToOne(LSTM(I, H, batch_first=True, seed=0), Linear(H, 4, seed=0))

    def local(bs, threads):
        m = make()
        with fastlstm.threads(threads):
            h = fastlstm.fit(m, x, y, loss="cross_entropy", optimizer=Adam(m.modules),
                             epochs=1, batch_size=bs, seed=0, progress=False)
        return h.history["epoch_time"][0]

    setup = []

    def on_cluster(bs, average_every=None):
        m = make()
        t = time.perf_counter()
        h = fdask.fit(m, X, Y, client=client, loss="cross_entropy",
                      optimizer=Adam(m.modules), epochs=1, batch_size=bs, seed=0,
                      progress=False, average_every=average_every)
        setup.append(time.perf_counter() - t - h.history["epoch_time"][0])
        return h.history["epoch_time"][0]

    rows = []
    for bs in batch_sizes:
        steps = -(-N // bs)
        load = _OutsideLoad(client)
        row = {"batch_size": bs, "steps": steps}
        for key, fn in (("fit_1_thread", lambda: local(bs, 1)),
                        (f"fit_{workers}_threads", lambda: local(bs, workers)),
                        ("dask_sync", lambda: on_cluster(bs)),
                        ("dask_average_every_8", lambda: on_cluster(bs, 8))):
            times = [fn() for _ in range(repeats)]
            row[key + "_ms_per_step"] = 1e3 * float(np.median(times)) / steps
        row["outside_load_cpus"] = load.cpus()
        rows.append(row)
    return {"N": N, "T": T, "I": I, "H": H, "rows": rows, "setup_s": float(np.median(setup))}


def _break_even(rows, baseline, contender):
    for row in rows:
        if row[contender + "_ms_per_step"] < row[baseline + "_ms_per_step"]:
            return row["batch_size"]
    return None


def report(facts, inf, train, workers, out=sys.stdout):
    def p(*args):
        print(*args, file=out)

    p("fastlstm.dask scaling (python -m fastlstm.bench.dask_scaling)")
    p(f"machine: {facts['cpu']}, {facts['logical_cpus']} logical CPUs, "
      f"{facts['usable_cpus']} usable; {facts['platform']}; cython kernels "
      f"{facts['cython_isa']}; commit {facts['commit']}; load average {facts['load']}")
    p(f"versions: fastlstm {fastlstm.__version__}, numpy {np.__version__}, dask "
      f"{facts['dask']}, distributed {facts['distributed']}; cluster: {workers} worker "
      f"processes x 1 thread, started in {facts['cluster_start_s']:.1f} s")
    p("outside load: CPUs kept busy by other processes than this one and the cluster's")
    if inf is not None:
        p("")
        p(f"Inference: predict_proba, N={inf['N']}, T={inf['T']}, I={inf['I']}, "
          f"H={inf['H']}, chunks of {inf['chunk']} ({inf['chunks']} chunks); medians (best)")
        p(f"{'model':<28} {'1 process':>16} {'dask':>16} {'speedup':>14} "
          f"{'from client':>12} {'overhead/chunk':>15} {'outside load':>13}")
        for r in inf["rows"]:
            if "skipped" in r:
                p(f"{r['model']:<28} skipped: {r['skipped']}")
                continue
            p(f"{r['model']:<28} {r['one_process_s'] * 1e3:>7.0f} "
              f"({r['one_process_best_s'] * 1e3:>4.0f}) ms"
              f" {r['dask_s'] * 1e3:>7.0f} ({r['dask_best_s'] * 1e3:>4.0f}) ms"
              f" {r['speedup']:>6.2f}x ({r['speedup_best']:.2f}x)"
              f" {r['dask_from_client_s'] * 1e3:>10.0f}ms"
              f" {r['overhead_per_chunk_ms']:>13.1f}ms {r['outside_load_cpus']!s:>13}")
        p(f"a task with nothing to compute: {inf['empty_task_ms']:.1f} worker-ms per chunk "
          f"(64 chunks of 2 rows x 1 step)")
    if train is not None:
        p("")
        p(f"Training: ManyToOne(LSTM({train['I']}, {train['H']}), Linear({train['H']}, 4)), "
          f"cross-entropy, Adam, N={train['N']}, T={train['T']}, one epoch; ms per step "
          f"(medians)")
        p(f"{'batch':>6} {'steps':>6} {'fit 1 thr':>10} {f'fit {workers} thr':>10} "
          f"{'dask sync':>10} {'vs 1 thr':>9} {f'vs {workers} thr':>9} {'dask avg/8':>11} "
          f"{'outside load':>13}")
        for r in train["rows"]:
            one = r["fit_1_thread_ms_per_step"]
            many = r[f"fit_{workers}_threads_ms_per_step"]
            sync, avg = r["dask_sync_ms_per_step"], r["dask_average_every_8_ms_per_step"]
            p(f"{r['batch_size']:>6} {r['steps']:>6} {one:>10.1f} {many:>10.1f} {sync:>10.1f} "
              f"{one / sync:>8.2f}x {many / sync:>8.2f}x {avg:>11.1f} "
              f"{r['outside_load_cpus']!s:>13}")
        p(f"dask.fit's setup before the first step (the shards made on the workers): "
          f"{train['setup_s'] * 1e3:.0f} ms (median)")
        for base in ("fit_1_thread", f"fit_{workers}_threads"):
            for contender in ("dask_sync", "dask_average_every_8"):
                be = _break_even(train["rows"], base, contender)
                p(f"break-even ({contender} faster than {base}): "
                  + (f"batch size {be}" if be else "not reached at these batch sizes"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastlstm.bench.dask_scaling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("inference", "training"), default=None,
                        help="run one of the two parts")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a smoke run; the figures mean little)")
    args = parser.parse_args(argv)
    try:
        import dask
        import distributed
    except ImportError:
        print('fastlstm.bench.dask_scaling needs dask and distributed: '
              'pip install "fastlstm[dask]"', file=sys.stderr)
        return 2
    if args.quick:
        inf_sizes = dict(N=2000, T=20, I=3, H=16, chunk=250, min_time=0.05)
        train_sizes = dict(N=512, T=10, I=3, H=16, batch_sizes=(32, 256))
    else:
        inf_sizes = dict(N=16000, T=100, I=3, H=64, chunk=2000)
        train_sizes = dict(N=8192, T=100, I=3, H=64, batch_sizes=(32, 128, 512, 2048))
    quiet = _quiet_large_graphs()
    cluster, client, t_start = _cluster(args.workers)
    try:
        facts = dict(machine_info(), commit=git_commit(), load=load_average(),
                     dask=dask.__version__, distributed=distributed.__version__,
                     cluster_start_s=t_start)
        inf = None if args.only == "training" else inference(
            client, args.workers, repeats=args.repeats, **inf_sizes)
        train = None if args.only == "inference" else training(
            client, args.workers, repeats=max(1, args.repeats // 2), **train_sizes)
    finally:
        client.close()
        cluster.close()
        quiet.__exit__(None, None, None)
    report(facts, inf, train, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
