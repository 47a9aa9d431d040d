"""fastlstm.dask.fit: data-parallel training on a Dask cluster, fastlstm.fit's loop with the
mini-batches' work spread over the workers.

    history = fastlstm.dask.fit(model, X, y, client=client, loss="mse", optimizer=None,
                                epochs=10, batch_size=32, lengths=None, shuffle=True,
                                seed=None, validation_data=None, validation_split=0.0,
                                clip_norm=None, early_stopping=None, progress=None,
                                plot=None, average_every=None)

The arguments are fastlstm.fit's (fastlstm/training/fit.py: the model, the layouts of x and
y, loss, optimizer, the epochs, the mini-batches, validation, clipping, early stopping, the
progress bar, History), with X, y (and lengths) dask arrays chunked along their batch axes
only, y's (and lengths') chunks aligned with X's, and `client` a distributed.Client.

How it runs. X, y and lengths are persisted and cut into one shard per worker thread (S of
them: shard s holds the rows [s * n // S, (s + 1) * n // S), whatever X's chunks), each made
on its worker with a copy of the model; the chunks' memory is then freed. The client draws
the mini-batches exactly as fastlstm.fit does (np.random.default_rng(seed): a permutation
per epoch), and at each step
    - sends the current weights to every shard holding rows of the batch, in the step's task;
    - each such task computes the gradient of its rows (forward, the loss, backward), scaled
      by its share of the batch (its rows, or valid steps for per-step losses with lengths),
      so that the sum over the shards is the gradient of the batch's mean loss;
    - the client sums them (in shard order), clips the sum (clip_norm) and makes the one
      optimizer step on `model`.
So the trained weights equal fastlstm.fit's on the same batches and seed (and initial
weights) to float rounding (the batch's sums are cut in S parts), History holds the same
curves, and two runs on clusters with as many worker threads give the same bits. A callable
loss must be a mean over the batch's rows for this to hold.

average_every=K (for slow networks: one exchange every K steps instead of two per step):
each shard runs K steps on its own rows of K global mini-batches, each with the mean over
its rows and its own optimizer (its state kept by the client between rounds), then the client
averages the shards' weights, weighted by the rows (valid steps) each used, into `model`. A
round ends at the end of each epoch; validation and early stopping see the averaged model.
With SGD without momentum and K = 1 this is the synchronous step again (up to rounding);
otherwise the result differs from fastlstm.fit's as local SGD does. `optimizer` needs
state_dict() and load_state_dict() here; at the end it holds the shards' states averaged
(counters: the largest).

Faults. Every task is a pure function of its arguments (the weights it is sent) and its
shard, and a shard can be rebuilt from the persisted chunks, which Dask can recompute from
X's graph: when a worker dies mid-step, Dask runs the step's task again elsewhere and the
client takes one result per task: nothing is lost or counted twice (the weights equal a run
without the fault bit for bit). Dropout between layers draws its masks per task from
(seed, epoch, step, shard), so a redone task draws the same ones (their bits differ from
fastlstm.fit's, which draws from the model's own generator).

Speed. A synchronous step costs a round trip through the scheduler besides its computing
(about 15-20 ms on a 2-core machine: `python -m fastlstm.bench.dask_scaling`), so it pays
where a step computes for longer than that: there, with T = 100 and H = 64, from batches of
about 512 against fastlstm.fit on one thread; average_every=K pays that price once per K
steps.

Threads: each task runs fastlstm's kernels on the worker's thread setting
(fastlstm.dask._workers.task_threads).
"""
import time
import uuid

import numpy as np

from ..training.clip import clip_grad_norm
from ..training.fit import (_EVAL_CHUNK, BestEpoch, History, _check_model, _evaluate, _int,
                            _Layout, _loop_options, _Loss, _module_names, _Progress,
                            _validation_arrays, _validation_cut)
from ..training.optim import Adam
from . import _steps
from ._arrays import (as_lengths, check_aligned, check_batch_chunks, check_dask_array,
                      check_known_chunks, check_numbers)
from ._workers import dumps, portable_copy


# --------------------------------------------------------------------------------------------
# argument checks


def _check_client(client):
    from distributed import Client

    if not isinstance(client, Client):
        raise TypeError(f"client: expected a distributed.Client connected to the cluster to "
                        f"train on, got {type(client).__name__}"
                        + ("; e.g. client = distributed.Client(LocalCluster())"
                           if client is None else ""))
    if not client.nthreads():
        raise ValueError("client: the cluster has no workers (yet); start some, or wait for "
                         "them: client.wait_for_workers(n)")
    return client


def _check_data(layout, loss_fn, X, y, lengths, names=("X", "y", "lengths")):
    """(X, y, lengths) checked (lengths a dask array or None), and the batch chunks."""
    xn, yn, ln = names
    X = check_dask_array(xn, X)
    check_numbers(xn, X)
    chunks = check_batch_chunks(xn, X, layout.x_axis,
                                time_axis=None if layout.one_to_many else 1 - layout.x_axis,
                                min_ndim=2)
    check_known_chunks(xn, chunks, layout.x_axis)
    y = check_dask_array(yn, y)
    if loss_fn.classification:
        if y.dtype.kind not in "iu" or y.dtype == np.bool_:
            raise TypeError(f"{yn}: loss='cross_entropy' needs integer class labels, got "
                            f"dtype {y.dtype}")
    else:
        check_numbers(yn, y)
    check_batch_chunks(yn, y, layout.y_axis,
                       time_axis=layout.time_axis if layout.per_step else None)
    check_aligned(yn, y, layout.y_axis, xn, chunks, layout.x_axis)
    if sum(chunks) == 0:
        raise ValueError(f"{xn}: no samples (shape {X.shape})")
    if layout.one_to_many and lengths is not None:
        raise ValueError(f"{ln}: a OneToMany model reads one input per sequence, it takes no "
                         f"lengths")
    lengths = as_lengths(ln, lengths, xn, chunks, layout.x_axis)
    return X, y, lengths


def _check_optimizer(optimizer, modules, average_every):
    if optimizer is None:
        optimizer = Adam(modules, lr=1e-3)
    elif not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected an optimizer with step(grads) (fastlstm's SGD "
                        f"or Adam), got {type(optimizer).__name__}")
    if average_every is not None and not (
            callable(getattr(optimizer, "state_dict", None))
            and callable(getattr(optimizer, "load_state_dict", None))):
        raise TypeError("optimizer: average_every needs an optimizer with state_dict() and "
                        "load_state_dict() (fastlstm's SGD or Adam): each worker runs a copy")
    return optimizer


# --------------------------------------------------------------------------------------------
# shards


def _ordered_futures(arr):
    """The futures of a persisted dask array's blocks, in block order (C order: the batch
    axis is the only one cut)."""
    from dask.core import flatten
    from distributed import futures_of

    by_key = {f.key: f for f in futures_of(arr)}
    return [by_key[k] for k in flatten(arr.__dask_keys__())]


def _slots(client):
    """One slot per worker thread: [worker address, ...], sorted."""
    return [w for w, n in sorted(client.nthreads().items()) for _ in range(max(1, n))]


class _Shards:
    """The shards of one data set on the cluster, one per worker thread: shard s holds the
    rows [s * n // S, (s + 1) * n // S) of the S shards, cut from the chunks that overlap
    them, and is made on the s-th worker thread (the workers sorted by address). The cut
    depends on n and S only (not on the chunks, nor on where Dask put them), so a run is
    reproducible bit for bit on a cluster of the same size."""

    def __init__(self, client, blob, loss, layout, X, y, lengths, token, tag):
        from distributed import wait

        slots = _slots(client)
        chunks = [int(c) for c in X.chunks[layout.x_axis]]
        n = sum(chunks)
        n_shards = min(len(slots), n)
        persisted = client.persist([a for a in (X, y, lengths) if a is not None])
        xf, yf = _ordered_futures(persisted[0]), _ordered_futures(persisted[1])
        lf = _ordered_futures(persisted[2]) if lengths is not None else None
        starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        bounds = [s * n // n_shards for s in range(n_shards + 1)]
        self.n = n
        self.bounds = np.asarray(bounds, np.int64)
        self.futures = []
        for s in range(n_shards):
            lo, hi = bounds[s], bounds[s + 1]
            first = int(np.searchsorted(starts, lo, side="right")) - 1
            last = int(np.searchsorted(starts, hi, side="left"))      # exclusive
            picked = range(first, last)
            self.futures.append(client.submit(
                _steps.make_shard, blob, loss, layout.x_axis, layout.y_axis,
                [xf[i] for i in picked], [yf[i] for i in picked],
                None if lf is None else [lf[i] for i in picked],
                int(lo - starts[first]), int(hi - lo),
                key=f"fastlstm-fit-{tag}-shard-{token}-{s}", workers=[slots[s]],
                allow_other_workers=True, pure=False))
        wait(self.futures)
        # the chunks are in the shards now: their memory is freed, and the scheduler keeps
        # their tasks (dependencies of the shards) to compute them again if a shard is lost
        del persisted, xf, yf, lf

    def split(self, rows):
        """[(shard, local rows in the order of `rows`)] for the shards that hold some."""
        owner = np.searchsorted(self.bounds, rows, side="right") - 1
        local = rows - self.bounds[owner]
        return [(s, local[owner == s]) for s in range(len(self.futures))
                if np.any(owner == s)]

    def release(self):
        self.futures = []


# --------------------------------------------------------------------------------------------
# fit


def _weights(modules):
    """[{key: copy} per module]: what the tasks load."""
    return [{k: p.copy() for k, p in m.named_parameters().items()} for m in modules]


def _add_grads(total, part):
    """total (list of dicts) += part, in place where total has arrays; None is no gradient."""
    if total is None:
        return [{k: (None if v is None else np.array(v)) for k, v in g.items()} for g in part]
    for t, g in zip(total, part):
        for k, v in g.items():
            if v is None:
                continue
            t[k] = np.array(v) if t[k] is None else np.add(t[k], v, out=t[k])
    return total


def _average_states(states, shares, hyper):
    """The optimizers' state dicts averaged: arrays weighted by `shares`, counters the
    largest; hyperparameters as given."""
    merged = {}
    for key in states[0]["state"]:
        entry = {}
        for name, value in states[0]["state"][key].items():
            values = [s["state"][key][name] for s in states if key in s["state"]]
            if isinstance(value, np.ndarray):
                entry[name] = sum(v * w for v, w in zip(values, shares)).astype(value.dtype)
            else:
                entry[name] = max(values)
        merged[key] = entry
    return {"hyperparameters": hyper, "state": merged}


def fit(model, X, y, *, client=None, loss="mse", optimizer=None, epochs=10, batch_size=32,
        lengths=None, shuffle=True, seed=None, validation_data=None, validation_split=0.0,
        clip_norm=None, early_stopping=None, progress=None, plot=None, average_every=None):
    """Train `model` on the dask arrays (X, y) on the cluster of `client`; returns a History.

    The arguments are fastlstm.fit's (see the module docstring for how the work is shared),
    and:
    X, y: dask arrays laid out as fastlstm.fit's x and y, chunked along their batch axes only
        (X along time is a ValueError), y's chunks aligned with X's; lengths: None, a dask
        array (N,) chunked as X's batch axis, or a NumPy array.
    client: a distributed.Client (required).
    validation_data: (X_val, y_val) or (X_val, y_val, lengths_val): dask arrays (evaluated on
        the workers) or NumPy arrays (evaluated here, as fastlstm.fit does).
    average_every: None (the default: one synchronous step per mini-batch, the averaged
        gradient updating the one model), or K >= 1: the workers train their own copies for
        K steps between averages of their weights (module docstring).
    Bad arguments are a TypeError or ValueError naming the argument, raised before any work
    on the cluster.
    """
    client = _check_client(client)
    modules = _check_model(model)
    layout = _Layout(model)
    loss_fn = _Loss(loss, layout)
    X, y, lengths = _check_data(layout, loss_fn, X, y, lengths)
    n = sum(X.chunks[layout.x_axis])
    epochs, batch_size, shuffle, rng, validation_split, clip_norm, patience, progress = \
        _loop_options(epochs, batch_size, shuffle, seed, validation_split, clip_norm,
                      early_stopping, progress, plot)
    average_every = None if average_every is None else _int("average_every", average_every, 1)
    optimizer = _check_optimizer(optimizer, modules, average_every)
    if patience is not None and not (callable(getattr(model, "state_dict", None))
                                     and callable(getattr(model, "load_state_dict", None))):
        raise TypeError("early_stopping: restoring the best weights needs "
                        "model.state_dict() and model.load_state_dict()")
    names = _module_names(model, modules)

    # validation data: given (dask: on the workers; NumPy: here), or X's last fraction
    if validation_data is not None and validation_split:
        raise ValueError("validation_split: give either validation_data or validation_split, "
                         "not both")
    val_local = val_dask = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data: expected a tuple (X_val, y_val) or "
                            "(X_val, y_val, lengths_val)")
        import dask.array as da

        if isinstance(validation_data[0], da.Array):
            val_dask = _check_data(layout, loss_fn, validation_data[0], validation_data[1],
                                   validation_data[2] if len(validation_data) == 3 else None,
                                   ("validation_data[0] (X_val)", "validation_data[1] (y_val)",
                                    "validation_data[2] (lengths_val)"))
        else:
            dtype = getattr(model, "dtype", None)
            val_local = _validation_arrays(validation_data,
                                           None if dtype is None else np.dtype(dtype), layout,
                                           loss_fn, x_label="X_val")
    elif validation_split:
        cut = _validation_cut(n, validation_split)

        def part(arr, axis, rows):
            return None if arr is None else arr[(slice(None),) * axis + (rows,)]

        val_dask = (part(X, layout.x_axis, slice(cut, n)), part(y, layout.y_axis,
                    slice(cut, n)), part(lengths, 0, slice(cut, n)))
        X, y = part(X, layout.x_axis, slice(0, cut)), part(y, layout.y_axis, slice(0, cut))
        lengths = part(lengths, 0, slice(0, cut))
        n = cut

    # the per-step weight of a batch needs the lengths here (a few bytes per sequence)
    masked = layout.per_step and lengths is not None
    lengths_here = np.asarray(client.compute(lengths, sync=True)).astype(np.int64) \
        if masked else None

    token = uuid.uuid4().hex[:12]
    train_copy = portable_copy((model, optimizer if average_every is not None else None),
                               eval_mode=False)
    blob = dumps(train_copy)
    shards = _Shards(client, blob, loss, layout, X, y, lengths, token, "train")
    val_shards = None if val_dask is None else _Shards(
        client, blob, loss, layout, *val_dask, token, "val")
    dropout = any(getattr(m, "dropout", 0) and getattr(m, "num_layers", 1) > 1
                  for m in modules)
    seed_root = (int(np.random.SeedSequence(seed).entropy) % (2 ** 63)) if dropout else None

    keys = ["loss"] + (["accuracy"] if loss_fn.classification else [])
    if val_local is not None or val_shards is not None:
        keys += ["val_loss"] + (["val_accuracy"] if loss_fn.classification else [])
    history = History("val_loss" if "val_loss" in keys else "loss",
                      keys + ["epoch_time", "samples_per_s"])
    n_batches = -(-n // batch_size)
    bar = _Progress(progress, epochs, n_batches)
    best = BestEpoch(model, patience)
    shard_states = None
    if average_every is not None:
        start_state = optimizer.state_dict()
        shard_states = [start_state] * len(shards.futures)
    chunk = max(batch_size, _EVAL_CHUNK)
    model.train()
    try:
        for epoch in range(epochs):
            bar.start(epoch)
            t_start = time.perf_counter()
            order = rng.permutation(n) if shuffle else None
            batches = []
            for start in range(0, n, batch_size):
                rows = np.arange(start, min(start + batch_size, n))
                batches.append(rows if order is None else order[rows])
            sums = [0.0, 0, 0, 0]       # loss * weight, weight, correct, counted
            if average_every is None:
                for step, rows in enumerate(batches):
                    _sync_step(client, shards, model, modules, optimizer, rows, lengths_here,
                               clip_norm, names, sums, token, epoch, step,
                               None if seed_root is None else (seed_root, epoch, step))
                    done = min((step + 1) * batch_size, n)
                    bar.batch(sums[0] / max(sums[1], 1), done / (time.perf_counter() - t_start))
            else:
                for first in range(0, len(batches), average_every):
                    group = batches[first:first + average_every]
                    shard_states = _local_round(client, shards, model, modules, optimizer,
                                                group, clip_norm, shard_states, sums, token,
                                                epoch, first, seed_root)
                    done = min((first + len(group)) * batch_size, n)
                    for _ in group:
                        bar.batch(sums[0] / max(sums[1], 1),
                                  done / (time.perf_counter() - t_start))
            t_train = time.perf_counter() - t_start
            row = {"loss": sums[0] / max(sums[1], 1)}
            if loss_fn.classification:
                row["accuracy"] = sums[2] / max(sums[3], 1)
            if val_local is not None:
                row["val_loss"], val_acc = _evaluate(model, layout, loss_fn, *val_local, chunk)
                if loss_fn.classification:
                    row["val_accuracy"] = val_acc
            elif val_shards is not None:
                row["val_loss"], val_acc = _distributed_evaluate(client, val_shards, modules,
                                                                 chunk)
                if loss_fn.classification:
                    row["val_accuracy"] = val_acc
            row["epoch_time"] = time.perf_counter() - t_start
            row["samples_per_s"] = n / t_train
            history._append(row)
            bar.end(epoch, row)

            if best.end_epoch(history, epoch, row):
                break
    finally:
        bar.close()
        shards.release()
        if val_shards is not None:
            val_shards.release()
    if average_every is not None:
        shares = [1.0 / len(shard_states)] * len(shard_states)
        optimizer.load_state_dict(_average_states(
            shard_states, shares, optimizer.state_dict()["hyperparameters"]))
    best.restore(history)
    if plot is not None:
        history.plot(plot)
    return history


def _sync_step(client, shards, model, modules, optimizer, rows, lengths_here, clip_norm,
               names, sums, token, epoch, step, seed):
    """One synchronous step: the shards' gradients of their rows of the batch, summed, one
    optimizer step on the model; the batch's sums added to `sums`."""
    total_weight = int(lengths_here[rows].sum()) if lengths_here is not None else len(rows)
    weights = _weights(modules)
    futures = [client.submit(_steps.step_grads, shards.futures[s], weights, local,
                             max(total_weight, 1),
                             None if seed is None else seed + (s,),
                             key=f"fastlstm-fit-step-{token}-{epoch}-{step}-{s}", pure=False)
               for s, local in shards.split(rows)]
    results = client.gather(futures)
    grads = None
    for part, value_w, w, c, k in results:
        grads = _add_grads(grads, part)
        sums[0] += value_w
        sums[1] += w
        if c is not None:
            sums[2] += c
            sums[3] += k
    if clip_norm is not None:
        clip_grad_norm(grads, clip_norm)
    optimizer.step(grads)


def _local_round(client, shards, model, modules, optimizer, group, clip_norm, shard_states,
                 sums, token, epoch, first, seed_root):
    """K steps on every shard's own copy, then their weights averaged into the model
    (weighted by the rows or valid steps each used). Returns the shards' optimizer states."""
    weights = _weights(modules)
    n_shards = len(shards.futures)
    per_shard = [[np.empty(0, np.int64) for _ in group] for _ in range(n_shards)]
    for j, rows in enumerate(group):
        for s, local in shards.split(rows):
            per_shard[s][j] = local
    futures = {}
    for s in range(n_shards):
        if not any(len(r) for r in per_shard[s]):
            continue
        seeds = [None if seed_root is None else (seed_root, epoch, first + j, s)
                 for j in range(len(group))]
        futures[s] = client.submit(_steps.local_round, shards.futures[s], weights,
                                   shard_states[s], per_shard[s], clip_norm, seeds,
                                   key=f"fastlstm-fit-round-{token}-{epoch}-{first}-{s}",
                                   pure=False)
    results = dict(zip(futures, client.gather(list(futures.values()))))
    used = {s: sum(st[1] for st in r[2]) for s, r in results.items()}
    total = sum(used.values())
    new_states = list(shard_states)
    averaged = None
    for s, (new_weights, state, stats) in results.items():
        share = used[s] / max(total, 1)
        new_states[s] = state
        scaled = [{k: v * v.dtype.type(share) for k, v in w.items()} for w in new_weights]
        averaged = _add_grads(averaged, scaled)
        for value_w, w, c, k in stats:
            sums[0] += value_w
            sums[1] += w
            if c is not None:
                sums[2] += c
                sums[3] += k
    for module, values in zip(modules, averaged):
        for key, param in module.named_parameters().items():
            np.copyto(param, values[key])
    return new_states


def _distributed_evaluate(client, shards, modules, chunk):
    """(loss, accuracy or None) of the current weights over the validation shards."""
    weights = _weights(modules)
    futures = [client.submit(_steps.shard_evaluate, f, weights, chunk, pure=False)
               for f in shards.futures]
    total = weight = correct = counted = 0
    classification = False
    for t, w, c, k in client.gather(futures):
        total += t
        weight += w
        if c is not None:
            classification = True
            correct, counted = correct + c, counted + k
    return total / max(weight, 1), (correct / max(counted, 1) if classification else None)


__all__ = ["fit"]

