"""fit: the training loop (mini-batches, an optimizer, validation, early stopping, a progress
bar) for the structures of fastlstm.training.structures, as Keras's model.fit does.

    from fastlstm import LSTM
    from fastlstm.training.linear import Linear
    from fastlstm.training.structures import ManyToOne
    from fastlstm.training.fit import fit

    model = ManyToOne(LSTM(2, 32, batch_first=True, seed=0), Linear(32, 1, seed=0))
    history = fit(model, x, y, loss="mse", epochs=20, batch_size=32, seed=0,
                  validation_split=0.2, clip_norm=1.0, early_stopping=5)
    history.history["loss"], history.history["val_loss"], history.best_epoch
    history.plot("curves.png")

Layout of the data. x is laid out as the model's rnn reads it: (N, T, I) when the rnn is
batch_first, else time-major (T, N, I); the mini-batches are cut along the batch axis N
(axis 0, or axis 1 for time-major x). y follows the model's output:

    ManyToOne    out (B, C)                       y (N, C) for "mse", labels (N,) for
                                                  "cross_entropy": batch axis 0
    ManyToMany   out (T, B, C) ((B, T, C))        y (T, N, C) / labels (T, N), or (N, T, C) /
                                                  (N, T) with batch_first: x's batch axis
    OneToMany    x0 (N, I) -> out (steps, B, C)   y (steps, N, C) ((N, steps, C) batch_first);
                                                  steps = y's length on its time axis
    other models (anything with forward, backward, modules, train and eval): x as its `rnn`
    attribute reads it (batch axis 0 without one), y batch-major (axis 0)

lengths (N,) (optional) gives each sequence's number of valid steps (SPEC.md section 7); each
mini-batch gets its rows' lengths, and per-step losses (ManyToMany) count only valid steps.
"""
import math
import numbers
import os
import sys
import time
from collections.abc import Mapping

import numpy as np

from .._validate import check_flag
from .clip import clip_grad_norm
from .losses import cross_entropy, mse_loss
from .optim import Adam
from .structures import ManyToMany, ManyToOne, OneToMany

#: validation runs in chunks of at least this many sequences (inference keeps no tape)
_EVAL_CHUNK = 1024


# --------------------------------------------------------------------------------------------
# History


def _is_file_target(path):
    """A file name (str or os.PathLike) or a writable file object, for savefig."""
    return isinstance(path, (str, os.PathLike)) or callable(getattr(path, "write", None))


class History:
    """What fit returns: the per-epoch curves and where the best epoch was.

    history: dict of lists, one entry per epoch run:
        "loss"           training loss, averaged over the epoch's mini-batches (weighted by
                         what each one counts), with the weights as they were at each batch
        "accuracy"       training accuracy (loss="cross_entropy" only)
        "val_loss"       validation loss after the epoch (with validation data only)
        "val_accuracy"   validation accuracy (loss="cross_entropy" with validation data)
        "epoch_time"     seconds for the epoch (training and validation)
        "samples_per_s"  training sequences per second over the epoch's training pass
    monitor: "val_loss" when there is validation data, else "loss".
    best_epoch: index (0-based, into the lists) of the epoch with the lowest `monitor`.
    stopped_early: True when early stopping ended the training before `epochs`.
    """

    def __init__(self, monitor, keys):
        self.monitor = monitor
        self.history = {key: [] for key in keys}
        self.best_epoch = None
        self.stopped_early = False

    @property
    def epochs(self):
        """The number of epochs run."""
        return len(self.history["loss"])

    @property
    def best(self):
        """The best value of `monitor` (None before the first epoch)."""
        return None if self.best_epoch is None else self.history[self.monitor][self.best_epoch]

    def _append(self, row):
        for key, value in row.items():
            self.history[key].append(value)

    def plot(self, path=None):
        """Draw the curves: the losses (training and validation) against the epoch, on a log
        scale, and the accuracies beside them for cross-entropy; the best epoch is marked.

        path: a file name (its extension picks the format, e.g. .png) or a binary file
        object (PNG) to save the figure to, drawn with matplotlib's Agg backend (no display
        needed, pyplot's state untouched); None returns a pyplot figure to show. Returns the
        matplotlib Figure.
        Needs matplotlib: `pip install fastlstm[plot]` (or `pip install matplotlib`).
        """
        if path is not None and not _is_file_target(path):
            raise TypeError(f"path: expected None, a file name or a binary file object, got "
                            f"{type(path).__name__}")
        try:
            import matplotlib  # noqa: F401  (only to say clearly when it is missing)
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              "pip install fastlstm[plot] (or pip install matplotlib)") from exc
        panels = ["loss"] + (["accuracy"] if "accuracy" in self.history else [])
        if path is not None:       # Agg, without pyplot: no display, no global state touched
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            fig = Figure(figsize=(5.5 * len(panels), 4))
            FigureCanvasAgg(fig)
        else:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(5.5 * len(panels), 4))
        epochs = np.arange(1, self.epochs + 1)
        for k, name in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), k + 1)
            for key, label in ((name, "training"), ("val_" + name, "validation")):
                if self.history.get(key):
                    ax.plot(epochs, self.history[key], marker=".", label=label)
            if self.best_epoch is not None:
                ax.axvline(self.best_epoch + 1, color="grey", linestyle=":",
                           label=f"best epoch ({self.best_epoch + 1})")
            if name == "loss" and min(min(v) for key, v in self.history.items()
                                      if key in ("loss", "val_loss") and v) > 0:
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items() if v}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        return f"<History {self.epochs} epochs, best_epoch={self.best_epoch}; last: {shown}>"


# --------------------------------------------------------------------------------------------
# argument checks


def _int(name, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _real(name, value, low, high=None, low_open=False, high_open=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or value < low or (low_open and value == low) \
            or (high is not None and (value > high or (high_open and value == high))):
        span = f"{'(' if low_open else '['}{low}, " + \
            (f"{high}{')' if high_open else ']'}" if high is not None else "inf)")
        raise ValueError(f"{name}: expected a number in {span}, got {value!r}")
    return value


def _check_model(model):
    for attr in ("forward", "backward", "train", "eval"):
        if not callable(getattr(model, attr, None)):
            raise TypeError(f"model: expected a model with forward, backward, modules, train "
                            f"and eval (e.g. fastlstm.training.structures.ManyToOne), got "
                            f"{type(model).__name__} (no {attr}())")
    modules = getattr(model, "modules", None)
    if not isinstance(modules, (list, tuple)) or not modules:
        raise TypeError(f"model: expected a list of modules in model.modules, got "
                        f"{type(modules).__name__}")
    return list(modules)


class _Layout:
    """Where the batch axis of x and of y is, and what the model's forward needs."""

    def __init__(self, model):
        rnn = getattr(model, "rnn", None)
        self.batch_first = bool(getattr(rnn, "batch_first", True))
        seq_axis = 0 if self.batch_first else 1        # batch axis of a sequence array
        # a structure's own backward (not a subclass's override, which may not take
        # input_grad)
        self.structure = getattr(type(model), "backward", None) in (
            ManyToMany.backward, ManyToOne.backward, OneToMany.backward)
        self.one_to_many = isinstance(model, OneToMany)
        self.per_step = isinstance(model, (ManyToMany, OneToMany))   # out has a time axis
        self.x_axis = 0 if self.one_to_many else seq_axis
        self.y_axis = seq_axis if self.per_step else 0
        self.time_axis = 1 - seq_axis                  # of y, when per_step

    def backward(self, model, tape, dout):
        """model.backward's grads; the structures skip the input's gradient (fit has no use
        for it), another model gets the plain call."""
        if self.structure:
            _, grads = model.backward(tape, dout, input_grad=False)
        else:
            _, grads = model.backward(tape, dout)
        return grads

    def forward(self, model, xb, yb, lb, return_tape):
        if self.one_to_many:
            return model.forward(xb, yb.shape[self.time_axis], return_tape=return_tape)
        if lb is None:
            return model.forward(xb, return_tape=return_tape)
        return model.forward(xb, lengths=lb, return_tape=return_tape)


def _as_inputs(name, value, dtype, min_ndim):
    """x (or a validation x) as a float array of the model's dtype."""
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions (a batch of "
                         f"sequences), got shape {arr.shape}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)
    return np.ascontiguousarray(arr, dtype=dtype)


def _as_targets(name, value, dtype, classification):
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if classification:
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: loss='cross_entropy' needs integer class labels, got "
                            f"dtype {arr.dtype}")
        return arr
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")
    return arr.astype(dtype or (arr.dtype if arr.dtype.kind == "f" else np.float32),
                      copy=False)


def _as_lengths(name, value, n):
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape (N,) = ({n},), one length per sequence, got "
                         f"{arr.shape}")
    return arr.astype(np.int64, copy=False)


class _Loss:
    """loss(pred, target, lengths) -> (value, dpred, weight, correct, counted).

    weight: how much the batch counts in an epoch's average (the number of what the mean runs
    over: valid steps for per-step losses with lengths, else sequences); correct and counted:
    for the accuracy (cross-entropy), else None.
    """

    def __init__(self, loss, layout):
        self.layout = layout
        if callable(loss):
            self.name, self.fn = "callable", loss
        elif isinstance(loss, str) and loss in ("mse", "cross_entropy"):
            self.name, self.fn = loss, None
        elif isinstance(loss, str):
            raise ValueError(f"loss: expected 'mse', 'cross_entropy' or a callable "
                             f"(pred, target) -> (loss, dpred), got {loss!r}")
        else:
            raise TypeError(f"loss: expected 'mse', 'cross_entropy' or a callable "
                            f"(pred, target) -> (loss, dpred), got {type(loss).__name__}")
        self.classification = self.name == "cross_entropy"

    def __call__(self, pred, target, lengths):
        layout = self.layout
        masked = layout.per_step and lengths is not None
        weight = int(lengths.sum()) if masked else pred.shape[layout.y_axis]
        correct = counted = None
        if self.name == "callable":
            value, dpred = self.fn(pred, target)
            if np.shape(dpred) != pred.shape:
                raise ValueError(f"loss: the callable returned a gradient of shape "
                                 f"{np.shape(dpred)}, expected the prediction's {pred.shape}")
            return float(value), np.asarray(dpred, dtype=pred.dtype), weight, None, None
        if self.name == "mse":
            if target.shape != pred.shape:
                raise ValueError(f"y: a mini-batch of y has shape {target.shape}, but the "
                                 f"model's output has shape {pred.shape}; give y the "
                                 f"output's shape (e.g. (N, 1) rather than (N,))")
            if masked:
                value, dpred = mse_loss(pred, target, lengths=lengths,
                                        batch_first=layout.batch_first)
            else:
                value, dpred = mse_loss(pred, target)
            return value, dpred, weight, None, None
        if target.shape != pred.shape[:-1]:
            raise ValueError(f"y: a mini-batch of labels has shape {target.shape}, but the "
                             f"model's output has shape {pred.shape}; expected the output's "
                             f"shape without its class axis, {pred.shape[:-1]}")
        if masked:
            value, dpred = cross_entropy(pred, target, lengths, batch_first=layout.batch_first)
            valid = np.arange(target.shape[layout.time_axis])[:, None] < lengths[None, :]
            valid = valid.T if layout.batch_first else valid
        else:
            value, dpred = cross_entropy(pred, target)
            valid = None
        hits = pred.argmax(axis=-1) == target
        correct = int(hits[valid].sum()) if valid is not None else int(hits.sum())
        counted = int(valid.sum()) if valid is not None else hits.size
        return value, dpred, weight, correct, counted


def _module_names(model, modules):
    """For each of model.modules, the name of the model's attribute that holds it (the keys
    of the grads dict a structure's backward returns: "rnn", "head"), or None."""
    names = []
    for m in modules:
        names.append(next((k for k, v in vars(model).items() if v is m), None)
                     if hasattr(model, "__dict__") else None)
    return names


def _grads_in_order(grads, names):
    """backward's grads -> a list of dicts in the order of model.modules (for the optimizer
    and for clipping)."""
    if isinstance(grads, Mapping):
        if all(n is not None and n in grads for n in names):
            return [grads[n] for n in names]
        if len(names) == 1:
            return [grads]
        raise ValueError(f"model.backward: returned gradients keyed {list(grads)}, expected "
                         f"one dict per module keyed {names}")
    if isinstance(grads, (list, tuple)) and len(grads) == len(names):
        return list(grads)
    raise TypeError(f"model.backward: expected (dx, grads) with grads a dict or a list of "
                    f"{len(names)} dicts, got {type(grads).__name__}")


# --------------------------------------------------------------------------------------------
# progress


class _Progress:
    """A tqdm bar per epoch (loss and samples/s as it goes), or nothing.

    enabled None: only when stderr is a terminal. Without tqdm, one plain line per epoch."""

    def __init__(self, enabled, epochs, n_batches):
        if enabled is None:
            isatty = getattr(sys.stderr, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.epochs, self.n_batches = epochs, n_batches
        self.bar = None
        self.tqdm = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            self.tqdm = tqdm

    def start(self, epoch):
        if self.enabled and self.tqdm is not None:
            self.bar = self.tqdm(total=self.n_batches, desc=f"epoch {epoch + 1}/{self.epochs}",
                                 unit="batch", leave=True, file=sys.stderr, dynamic_ncols=True)

    def batch(self, loss, samples_per_s):
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss={loss:.4g}, {samples_per_s:,.0f} samples/s",
                                     refresh=False)
            self.bar.update(1)

    def end(self, epoch, row):
        if not self.enabled:
            return
        text = ", ".join(f"{k}={row[k]:.4g}" for k in ("loss", "accuracy", "val_loss",
                                                         "val_accuracy") if k in row)
        text += f", {row['samples_per_s']:,.0f} samples/s"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.close()
            self.bar = None
        else:
            print(f"epoch {epoch + 1}/{self.epochs}: {text}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------------------------
# fit


class BestEpoch:
    """Early stopping's bookkeeping for a training loop (fit's, fastlstm.dask.fit's): the best
    epoch of the monitored loss so far (history.best_epoch), the model's weights then (with a
    patience), and whether to stop."""

    def __init__(self, model, patience):
        self.model, self.patience = model, patience
        self.state, self.waited = None, 0

    def end_epoch(self, history, epoch, row):
        """After epoch's row went into history: True when training should stop (patience
        epochs in a row without a lower monitored loss; history.stopped_early is then set)."""
        if history.best_epoch is None or row[history.monitor] < history.best:
            history.best_epoch = epoch
            self.waited = 0
            if self.patience is not None:
                self.state = self.model.state_dict()
            return False
        if self.patience is None:
            return False
        self.waited += 1
        if self.waited >= self.patience:
            history.stopped_early = True
            return True
        return False

    def restore(self, history):
        """Put the best epoch's weights back, when training went on past it."""
        if self.state is not None and history.best_epoch != history.epochs - 1:
            self.model.load_state_dict(self.state)


def evaluate(model, x, y, *, loss="mse", lengths=None, batch_size=_EVAL_CHUNK):
    """The loss (and accuracy, for cross-entropy) of `model` on (x, y) in inference mode:
    (loss, accuracy or None). Shapes as for fit; the model's mode is restored afterwards."""
    _check_model(model)
    layout = _Layout(model)
    loss_fn = _Loss(loss, layout)
    dtype = getattr(model, "dtype", None)
    x = _as_inputs("x", x, dtype, 2)
    y = _as_targets("y", y, x.dtype, loss_fn.classification)
    n = _check_pair(x, y, layout, "x", "y")
    lengths = _as_lengths("lengths", lengths, n)
    return _evaluate(model, layout, loss_fn, x, y, lengths,
                     _int("batch_size", batch_size, 1))


def _check_pair(x, y, layout, xname, yname):
    n = x.shape[layout.x_axis]
    if y.ndim <= layout.y_axis or y.shape[layout.y_axis] != n:
        raise ValueError(f"{yname}: expected {n} samples on axis {layout.y_axis} (as {xname} "
                         f"has on axis {layout.x_axis}), got shape {y.shape}")
    if n == 0:
        raise ValueError(f"{xname}: no samples (shape {x.shape})")
    return n


def _evaluate(model, layout, loss_fn, x, y, lengths, chunk):
    was_training = getattr(model, "training", True)
    model.eval()
    try:
        n = x.shape[layout.x_axis]
        total = weight = correct = counted = 0
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            xb = _take(x, rows, layout.x_axis)
            yb = _take(y, rows, layout.y_axis)
            lb = None if lengths is None else lengths[rows]
            out = layout.forward(model, xb, yb, lb, return_tape=False)
            value, _, w, c, k = loss_fn(out, yb, lb)
            total += value * w
            weight += w
            if c is not None:
                correct += c
                counted += k
    finally:
        if was_training:
            model.train()
    return total / max(weight, 1), (correct / max(counted, 1) if loss_fn.classification
                                    else None)


def _loop_options(epochs, batch_size, shuffle, seed, validation_split, clip_norm,
                  early_stopping, progress, plot):
    """The training loop's options checked (fit's, fastlstm.dask.fit's): (epochs, batch_size,
    shuffle, the Generator of seed, validation_split, clip_norm, patience or None, progress
    or None); TypeError or ValueError naming the option."""
    epochs = _int("epochs", epochs, 1)
    batch_size = _int("batch_size", batch_size, 1)
    shuffle = check_flag("shuffle", shuffle)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"seed: expected None or a non-negative integer, got {seed!r}") from exc
    validation_split = _real("validation_split", validation_split, 0.0, 1.0, high_open=True)
    clip_norm = _real("clip_norm", clip_norm, 0.0, low_open=True, allow_none=True)
    patience = None if early_stopping is None else _int("early_stopping", early_stopping, 1)
    progress = None if progress is None else check_flag("progress", progress)
    if plot is not None and not _is_file_target(plot):
        raise TypeError(f"plot: expected None, a file name or a binary file object, got "
                        f"{type(plot).__name__}")
    return epochs, batch_size, shuffle, rng, validation_split, clip_norm, patience, progress


def _validation_arrays(validation_data, dtype, layout, loss_fn, x_label="x_val"):
    """(x_val, y_val, lengths_val or None) of a validation_data tuple of 2 or 3 as checked
    NumPy arrays (x_val of `dtype`, or its own float dtype for None)."""
    names = (f"validation_data[0] ({x_label})", "validation_data[1] (y_val)",
             "validation_data[2] (lengths_val)")
    xv = _as_inputs(names[0], validation_data[0], dtype, 2)
    yv = _as_targets(names[1], validation_data[1], xv.dtype, loss_fn.classification)
    nv = _check_pair(xv, yv, layout, names[0], names[1])
    lv = _as_lengths(names[2], validation_data[2] if len(validation_data) == 3 else None, nv)
    return xv, yv, lv


def _validation_cut(n, validation_split):
    """How many of n samples stay for training when the last validation_split of them is
    held out (ValueError when either part would be empty)."""
    n_val = int(round(n * validation_split))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split: {validation_split} of {n} samples leaves "
                         f"{n_val} for validation and {n - n_val} for training; both "
                         f"need at least one")
    return n - n_val


def _take(arr, rows, axis):
    """arr's samples `rows` (a slice or an index array) along `axis`."""
    if isinstance(rows, slice):
        return arr[rows] if axis == 0 else arr[:, rows]
    return arr.take(rows, axis=axis)


def fit(model, x, y, *, loss="mse", optimizer=None, epochs=10, batch_size=32, lengths=None,
        shuffle=True, seed=None, validation_data=None, validation_split=0.0, clip_norm=None,
        early_stopping=None, progress=None, plot=None):
    """Train `model` on (x, y) with mini-batches; returns a History.

    model: a structure from fastlstm.training.structures (ManyToOne, ManyToMany, OneToMany),
        or any object with forward(x, lengths=..., return_tape=True) -> (out, tape),
        backward(tape, dout) -> (dx, grads), a list `modules` (what the optimizer updates;
        grads is keyed by the model's attribute names of the modules, or a list in their
        order), train() and eval().
    x, y: see the module docstring for their layouts (x as the model's rnn reads it, cut into
        mini-batches along its batch axis). x is converted to the model's dtype; y too for
        "mse" (integer class labels for "cross_entropy").
    loss: "mse" (mean squared error), "cross_entropy" (softmax cross-entropy over the last
        axis with integer labels; also records the accuracy), or a callable
        (pred, target) -> (loss, dloss/dpred).
    optimizer: an object with step(grads) taking one gradient dict per module of
        model.modules (fastlstm.training.optim.SGD / Adam); default Adam(model.modules,
        lr=1e-3).
    epochs, batch_size: positive integers. The last mini-batch of an epoch may be smaller.
    lengths: (N,) integers, the valid steps of each sequence (SPEC.md section 7), or None.
    shuffle: a new order of the samples every epoch, from np.random.default_rng(seed); the same
        seed (and the same initial weights) gives the same history and weights.
    validation_data: (x_val, y_val) or (x_val, y_val, lengths_val), evaluated after every
        epoch in inference mode (model.eval(), then back to train()).
    validation_split: a fraction in [0, 1): the last fraction of the samples (before any
        shuffling, as Keras) is held out as validation data instead. Not with
        validation_data.
    clip_norm: None, or a number > 0: the gradients of each step are clipped to this global
        norm (clip_grad_norm) before the optimizer step.
    early_stopping: None, or the patience (an integer >= 1): stop after `patience` epochs in
        a row in which the monitored loss (val_loss with validation data, else loss) did not
        improve on its best, and restore the weights of the best epoch.
    progress: True, False, or None (the default: a bar only when stderr is a terminal): a tqdm
        progress bar per epoch with the loss and the throughput (samples/s).
    plot: None, or a file name (or binary file object): History.plot(plot) after training
        (needs matplotlib).

    Bad arguments are a TypeError (wrong type) or ValueError (wrong value) naming the
    argument, raised before any training. Returns a History (see its docstring).
    """
    modules = _check_model(model)
    layout = _Layout(model)
    loss_fn = _Loss(loss, layout)
    dtype = getattr(model, "dtype", None)
    dtype = None if dtype is None else np.dtype(dtype)
    x = _as_inputs("x", x, dtype, 2)
    y = _as_targets("y", y, x.dtype, loss_fn.classification)
    n = _check_pair(x, y, layout, "x", "y")
    if layout.one_to_many and lengths is not None:
        raise ValueError("lengths: a OneToMany model reads one input per sequence, it takes no "
                         "lengths")
    lengths = _as_lengths("lengths", lengths, n)
    epochs, batch_size, shuffle, rng, validation_split, clip_norm, patience, progress = \
        _loop_options(epochs, batch_size, shuffle, seed, validation_split, clip_norm,
                      early_stopping, progress, plot)
    if optimizer is None:
        optimizer = Adam(modules, lr=1e-3)
    elif not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected an optimizer with step(grads) (fastlstm's SGD "
                        f"or Adam), got {type(optimizer).__name__}")
    if patience is not None and not (callable(getattr(model, "state_dict", None))
                                     and callable(getattr(model, "load_state_dict", None))):
        raise TypeError("early_stopping: restoring the best weights needs "
                        "model.state_dict() and model.load_state_dict()")

    # validation data: given, or the last fraction of (x, y, lengths)
    if validation_data is not None and validation_split:
        raise ValueError("validation_split: give either validation_data or validation_split, "
                         "not both")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data: expected a tuple (x_val, y_val) or "
                            "(x_val, y_val, lengths_val)")
        val = _validation_arrays(validation_data, x.dtype, layout, loss_fn)
    elif validation_split:
        cut = _validation_cut(n, validation_split)
        val = (_take(x, slice(cut, n), layout.x_axis), _take(y, slice(cut, n), layout.y_axis),
               None if lengths is None else lengths[cut:])
        x, y = _take(x, slice(0, cut), layout.x_axis), _take(y, slice(0, cut), layout.y_axis)
        lengths = None if lengths is None else lengths[:cut]
        n = cut

    keys = ["loss"] + (["accuracy"] if loss_fn.classification else [])
    if val is not None:
        keys += ["val_loss"] + (["val_accuracy"] if loss_fn.classification else [])
    history = History("val_loss" if val is not None else "loss",
                      keys + ["epoch_time", "samples_per_s"])
    names = _module_names(model, modules)
    n_batches = -(-n // batch_size)
    bar = _Progress(progress, epochs, n_batches)
    best = BestEpoch(model, patience)
    model.train()
    try:
        for epoch in range(epochs):
            bar.start(epoch)
            t_start = time.perf_counter()
            order = rng.permutation(n) if shuffle else None
            total = weight = correct = counted = 0
            for start in range(0, n, batch_size):
                rows = slice(start, start + batch_size)
                if order is not None:
                    rows = order[rows]
                xb = _take(x, rows, layout.x_axis)
                yb = _take(y, rows, layout.y_axis)
                lb = None if lengths is None else lengths[rows]
                # one step: forward with a tape, the loss and its gradient, backward, update
                out, tape = layout.forward(model, xb, yb, lb, return_tape=True)
                value, dout, w, c, k = loss_fn(out, yb, lb)
                grads = _grads_in_order(layout.backward(model, tape, dout), names)
                if clip_norm is not None:
                    clip_grad_norm(grads, clip_norm)
                optimizer.step(grads)
                total += value * w
                weight += w
                if c is not None:
                    correct, counted = correct + c, counted + k
                done = min(start + batch_size, n)
                bar.batch(total / max(weight, 1), done / (time.perf_counter() - t_start))
            t_train = time.perf_counter() - t_start
            row = {"loss": total / max(weight, 1)}
            if loss_fn.classification:
                row["accuracy"] = correct / max(counted, 1)
            if val is not None:
                row["val_loss"], val_acc = _evaluate(model, layout, loss_fn, *val,
                                                     max(batch_size, _EVAL_CHUNK))
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
    best.restore(history)
    if plot is not None:
        history.plot(plot)
    return history


__all__ = ["fit", "evaluate", "History"]
