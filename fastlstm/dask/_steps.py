"""The worker side of fastlstm.dask.fit: a shard (a worker's part of (X, y, lengths) and its
copy of the model) and the tasks run on it. Every task is a pure function of its arguments
and the shard: it loads the weights it is given before it computes, so a task redone
elsewhere after a worker died gives the same result, and the client takes exactly one
result per task.

    step_grads(shard, weights, rows, total_weight, ...)  the gradient of the shard's part of
        one global mini-batch, scaled by (its weight / the batch's weight): the shards' sum is
        the batch's gradient (fastlstm.fit's, to float rounding)
    local_round(shard, weights, opt_state, batches, ...)  K steps of the shard's own parts of
        K global mini-batches on its own optimizer (average_every=K); the new weights and
        optimizer state
    shard_evaluate(shard, weights, chunk)                the loss sums on all the shard's rows

weights: [{key: array} per module of model.modules] (named_parameters order), copied into the
shard's model in place. rows: indices into the shard's rows, in the order of the global batch.
"""
import pickle
import threading

import numpy as np

from ..training.clip import clip_grad_norm
from ..training.fit import (_as_inputs, _as_lengths, _as_targets, _grads_in_order, _Layout,
                            _Loss, _module_names, _take)
from ._workers import task_threads


class Shard:
    """A worker's rows of (X, y, lengths), in the order of its chunks, and its copy of the
    model (with the optimizer, when it trains on its own). Pickled (moved to another worker)
    as its data and the pickled copy made on the client, never the model it has used."""

    def __init__(self, blob, x, y, lengths, loss):
        self.blob, self.x, self.y, self.lengths, self.loss = blob, x, y, lengths, loss
        self._live, self._lock = None, threading.Lock()

    def live(self):
        """(model, optimizer or None, layout, loss function, module names), made once."""
        if self._live is None:
            with self._lock:
                if self._live is None:
                    model, optimizer = pickle.loads(self.blob)
                    layout = _Layout(model)
                    self._live = (model, optimizer, layout, _Loss(self.loss, layout),
                                  _module_names(model, list(model.modules)))
        return self._live

    def __getstate__(self):
        return {"blob": self.blob, "x": self.x, "y": self.y, "lengths": self.lengths,
                "loss": self.loss}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._live, self._lock = None, threading.Lock()


def make_shard(blob, loss, x_axis, y_axis, xs, ys, ls, offset, count):
    """A Shard of `count` rows from `offset` on in the chunks xs, ys (and ls, or None),
    concatenated along the batch axes; x in the model's dtype, y as fastlstm.fit converts
    it."""
    shard = Shard(blob, None, None, None, loss)
    model, _, _, loss_fn, _ = shard.live()
    dtype = getattr(model, "dtype", None)
    dtype = None if dtype is None else np.dtype(dtype)
    rows = slice(offset, offset + count)

    def cut(parts, axis):
        whole = np.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]
        return _take(whole, rows, axis)

    shard.x = _as_inputs("X", cut(xs, x_axis), dtype, 2)
    shard.y = _as_targets("y", cut(ys, y_axis), shard.x.dtype, loss_fn.classification)
    shard.lengths = None if ls is None else _as_lengths("lengths", cut(ls, 0), count)
    return shard


def _load_weights(model, weights):
    for module, values in zip(model.modules, weights):
        for key, param in module.named_parameters().items():
            np.copyto(param, values[key])


def _reseed_dropout(model, seed):
    """A generator for each stack's dropout masks from `seed` (a tuple of ints), so a task
    redone elsewhere draws the same masks (only stacks with dropout between layers)."""
    if seed is None:
        return
    for i, module in enumerate(model.modules):
        if getattr(module, "dropout", 0) and getattr(module, "num_layers", 1) > 1 \
                and hasattr(module, "_rng"):
            module._rng = np.random.default_rng(list(seed) + [i])


def _batch(shard, layout, rows):
    xb = _take(shard.x, rows, layout.x_axis)
    yb = _take(shard.y, rows, layout.y_axis)
    lb = None if shard.lengths is None else shard.lengths[rows]
    return xb, yb, lb


def _gradient(model, layout, loss_fn, names, xb, yb, lb, scale):
    """One forward and backward: (grads in module order, loss value, weight, correct,
    counted), the loss's gradient multiplied by `scale` (None: as it is)."""
    out, tape = layout.forward(model, xb, yb, lb, return_tape=True)
    value, dout, w, c, k = loss_fn(out, yb, lb)
    if scale is not None:
        dout = dout * np.asarray(scale(w), dtype=dout.dtype)
    return _grads_in_order(layout.backward(model, tape, dout), names), value, w, c, k


def step_grads(shard, weights, rows, total_weight, dropout_seed=None):
    """The shard's part of one synchronous step: (grads, value * weight, weight, correct,
    counted), grads scaled so that the shards' sum is the whole batch's gradient."""
    with task_threads():
        model, _, layout, loss_fn, names = shard.live()
        _load_weights(model, weights)
        _reseed_dropout(model, dropout_seed)
        model.train()
        xb, yb, lb = _batch(shard, layout, rows)
        grads, value, w, c, k = _gradient(model, layout, loss_fn, names, xb, yb, lb,
                                          lambda w: w / total_weight)
        return [dict(g) for g in grads], value * w, w, c, k


def local_round(shard, weights, opt_state, batches, clip_norm, dropout_seeds):
    """K steps on the shard's own optimizer, one per entry of `batches` (rows of the shard;
    an empty one is skipped): (weights, optimizer state, [(value * weight, weight, correct,
    counted) per step done])."""
    with task_threads():
        model, optimizer, layout, loss_fn, names = shard.live()
        _load_weights(model, weights)
        optimizer.load_state_dict(opt_state)
        model.train()
        stats = []
        for rows, seed in zip(batches, dropout_seeds):
            if len(rows) == 0:
                continue
            _reseed_dropout(model, seed)
            xb, yb, lb = _batch(shard, layout, rows)
            grads, value, w, c, k = _gradient(model, layout, loss_fn, names, xb, yb, lb, None)
            if clip_norm is not None:
                clip_grad_norm(grads, clip_norm)
            optimizer.step(grads)
            stats.append((value * w, w, c, k))
        new_weights = [{key: p.copy() for key, p in m.named_parameters().items()}
                       for m in model.modules]
        return new_weights, optimizer.state_dict(), stats


def shard_evaluate(shard, weights, chunk):
    """(loss * weight, weight, correct, counted) summed over the shard's rows in inference
    mode, in chunks of `chunk` rows (as fastlstm.fit's validation); correct and counted None
    unless the loss is cross-entropy."""
    with task_threads():
        model, _, layout, loss_fn, _ = shard.live()
        _load_weights(model, weights)
        model.eval()
        total = weight = correct = counted = 0
        n = shard.x.shape[layout.x_axis]
        for start in range(0, n, chunk):
            xb, yb, lb = _batch(shard, layout, slice(start, start + chunk))
            out = layout.forward(model, xb, yb, lb, return_tape=False)
            value, _, w, c, k = loss_fn(out, yb, lb)
            total += value * w
            weight += w
            if c is not None:
                correct, counted = correct + c, counted + k
        if not loss_fn.classification:
            correct = counted = None
        return total, weight, correct, counted
