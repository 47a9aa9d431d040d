"""SequenceClassifier and SequenceRegressor: a recurrent stack and a linear head
(fastlstm.ManyToOne(rnn, Linear)) trained by fastlstm.fit, behind scikit-learn's estimator
API. See fastlstm/sklearn/__init__.py for the API, the shapes and the attributes.
"""
import contextlib

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import assert_all_finite, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from ..layers import GRU, LSTM, RNN
from ..training.fit import History, fit as train
from ..training.linear import Linear
from ..training.optim import SGD, Adam
from ..training.structures import ManyToOne
from . import _compat
from ._data import _read, check_lengths
from ._params import checked_params

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}

#: prediction runs in chunks of this many sequences (bounds the memory of the rnn's output)
_PREDICT_CHUNK = 4096


def _thread_limit(n_threads):
    """fastlstm.threads(n) around training and prediction; None: no limit (every CPU)."""
    if n_threads is None:
        return contextlib.nullcontext()
    from .._threads import threads

    return threads(n_threads)


def _softmax(logits):
    """logits (N, C) -> probabilities (N, C) float64, each row summing to 1."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _unit_forget_bias(rnn):
    """An LSTM's forget-gate bias b_ih[f] + b_hh[f] set to 1 in every layer and direction
    (Keras's unit_forget_bias; Jozefowicz et al. 2015): the cells keep their state from the
    first step of training. torch's gate order i, f, g, o: the rows H:2H."""
    H = rnn.hidden_size
    state = rnn.state_dict()
    for key, value in state.items():
        if key.startswith("bias_ih"):
            value[H:2 * H] = 1.0
        elif key.startswith("bias_hh"):
            value[H:2 * H] = 0.0
    rnn.load_state_dict(state)


def _extend_history(old, new):
    """One History with old's epochs followed by new's (consecutive partial_fit calls)."""
    merged = History(new.monitor, list(new.history))
    for source in (old, new):
        for i in range(source.epochs):
            merged._append({key: values[i] for key, values in source.history.items()})
    monitor = merged.history[merged.monitor]
    merged.best_epoch = int(np.argmin(monitor)) if monitor else None
    merged.stopped_early = new.stopped_early
    return merged


class _SequenceEstimator(BaseEstimator):
    """What the classifier and the regressor share: the constructor arguments, reading X,
    building the model, training it with fastlstm.fit, and running it."""

    #: fastlstm.fit's loss
    _loss = None
    #: whether y may have several columns (the regressor)
    _multi_output = False

    def __init__(self, cell="lstm", hidden_size=32, num_layers=1, bidirectional=False,
                 dropout=0.0, unit_forget_bias=True, epochs=100, batch_size=32, lr=3e-3,
                 optimizer="adam", momentum=0.9, weight_decay=0.0, clip_norm=1.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 shuffle=True, random_state=None, backend="auto", dtype="float64",
                 n_threads=1, verbose=False, warm_start=False):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.unit_forget_bias = unit_forget_bias
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start

    # ---------------------------------------------------------------- pickling
    # ---------------------------------------------------------------- tags
    def __sklearn_tags__(self):
        return _compat.sequence_tags(super().__sklearn_tags__(),
                                     multi_output=self._multi_output)

    def _more_tags(self):                                   # scikit-learn < 1.6
        return _compat.more_tags(multi_output=self._multi_output)

    # ---------------------------------------------------------------- reading X
    def _read_X(self, X, lengths, dtype):
        seqs = _read(X, dtype=dtype)
        return seqs, check_lengths(lengths, seqs)

    def _check_features(self, X, seqs):
        """X (as given) against what the estimator was fitted on (no reset)."""
        I = seqs.x.shape[2]
        if seqs.form == "table" and self._table_steps is not None:
            _compat.check_table_features(self, X, reset=False)
        elif I != self.input_size_:
            raise ValueError(f"X has {I} feature(s) per step, but {type(self).__name__} is "
                             f"expecting {self.input_size_} feature(s) per step as input")

    def _set_features(self, X, seqs):
        """A fresh fit: n_features_in_, input_size_ (and feature_names_in_ for a table)."""
        if seqs.form == "table":
            _compat.check_table_features(self, X, reset=True)
            self._table_steps = seqs.x.shape[1]
        else:
            _compat.forget_feature_names(self)
            self.n_features_in_ = seqs.x.shape[2]
            self._table_steps = None
        self.input_size_ = seqs.x.shape[2]

    # ---------------------------------------------------------------- the model
    def _build(self, p, input_size, out_features, rng):
        rnn = _CELLS[p["cell"]](input_size, p["hidden_size"], p["num_layers"],
                                batch_first=True, dropout=p["dropout"],
                                bidirectional=p["bidirectional"], dtype=p["dtype"],
                                seed=int(rng.integers(2**31 - 1)), backend=p["backend"])
        head = Linear(rnn.num_directions * rnn.output_size, out_features, dtype=p["dtype"],
                      seed=int(rng.integers(2**31 - 1)))
        if p["cell"] == "lstm" and p["unit_forget_bias"]:
            _unit_forget_bias(rnn)
        return ManyToOne(rnn, head)

    def _check_same_model(self, p):
        """warm_start and partial_fit go on with model_: its architecture must not change."""
        rnn = self.model_.rnn
        fitted = {"cell": rnn.kind, "hidden_size": rnn.hidden_size,
                  "num_layers": rnn.num_layers, "bidirectional": rnn.bidirectional,
                  "dropout": rnn.dropout, "dtype": rnn.dtype}
        for name, value in fitted.items():
            if p[name] != value:
                raise ValueError(f"{name}: the fitted model has {name}={value!r}, the "
                                 f"estimator now says {p[name]!r}; warm_start and "
                                 f"partial_fit go on training the fitted model, so fit it "
                                 f"anew (warm_start=False) to change its architecture")
        if p["backend"] != rnn.backend:
            from .._backends import available_backends

            if p["backend"] not in ("auto",) + available_backends():
                raise ValueError(f"backend: unknown or unavailable backend "
                                 f"{p['backend']!r}; available: "
                                 f"{', '.join(map(repr, available_backends()))} or 'auto'")

    def _new_optimizer(self, model, p):
        if p["optimizer"] == "sgd":
            return SGD(model.modules, lr=p["lr"], momentum=p["momentum"],
                       weight_decay=p["weight_decay"])
        return Adam(model.modules, lr=p["lr"], weight_decay=p["weight_decay"])

    def _kept_optimizer(self, p):
        """partial_fit: the optimizer of the previous call (its momentum or moments), with
        the current lr and weight decay; a new one if the kind changed."""
        kind = SGD if p["optimizer"] == "sgd" else Adam
        opt = self.optimizer_
        if type(opt) is not kind:
            return self._new_optimizer(self.model_, p)
        opt.lr = p["lr"]
        opt.weight_decay = p["weight_decay"]
        if kind is SGD:
            opt.momentum = p["momentum"]
        return opt

    # ---------------------------------------------------------------- training
    def _fit(self, X, y, lengths, *, partial, classes=None):
        p = checked_params(self)
        fresh = not hasattr(self, "model_") or not (partial or p["warm_start"])
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             f"y is None")
        # every check first: nothing of the estimator changes unless they all pass
        seqs, lengths = self._read_X(X, lengths, p["dtype"] if fresh else self.model_.dtype)
        if not fresh:
            self._check_features(X, seqs)
            self._check_same_model(p)
        targets, target_state = self._targets(y, fresh, classes)
        N = seqs.x.shape[0]
        if targets.shape[0] != N:
            raise ValueError(f"y: found {targets.shape[0]} target(s) for {N} sequence(s) in X "
                             f"(inconsistent numbers of samples)")
        if fresh:
            rng = np.random.default_rng(
                check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            model = self._build(p, seqs.x.shape[2], self._out_features(target_state), rng)
            optimizer = self._new_optimizer(model, p)
        else:
            rng, model = self._rng, self.model_
            model.rnn.backend = p["backend"]
            optimizer = self._kept_optimizer(p) if partial else self._new_optimizer(model, p)
        x, y_fit, val = seqs.x, self._fit_targets(targets, target_state), None
        if p["early_stopping"] and not partial:
            x, y_fit, lengths, val = self._split(x, y_fit, lengths, targets, p, rng)
        with _thread_limit(p["n_threads"]):
            history = train(model, x, y_fit, loss=self._loss, optimizer=optimizer,
                            epochs=1 if partial else p["epochs"], batch_size=p["batch_size"],
                            lengths=lengths, shuffle=p["shuffle"],
                            seed=int(rng.integers(2**31 - 1)), validation_data=val,
                            clip_norm=p["clip_norm"],
                            early_stopping=p["n_iter_no_change"] if val is not None else None,
                            progress=p["verbose"])
        model.eval()
        epochs_run = history.epochs
        # the fitted state
        if fresh:
            self._set_features(X, seqs)
            self._set_targets(target_state)
            self.n_iter_ = 0
        if partial and not fresh and list(self.history_.history) == list(history.history):
            history = _extend_history(self.history_, history)
        self.model_ = model
        self.optimizer_ = optimizer
        self._rng = rng
        self.history_ = history
        self.n_iter_ += epochs_run
        return self

    def _split(self, x, y_fit, lengths, targets, p, rng):
        """early_stopping: hold out validation_fraction of the sequences (stratified by class
        for the classifier when every class has two or more) -> x, y, lengths, (x_val, y_val,
        lengths_val)."""
        N = x.shape[0]
        n_val = int(round(N * p["validation_fraction"]))
        if n_val < 1 or n_val >= N:
            raise ValueError(f"validation_fraction: {p['validation_fraction']} of {N} "
                             f"sequences leaves {n_val} for validation and {N - n_val} for "
                             f"training; both need at least one (or set "
                             f"early_stopping=False)")
        stratify = self._stratify(targets, n_val)
        train_rows, val_rows = train_test_split(
            np.arange(N), test_size=n_val, stratify=stratify,
            random_state=int(rng.integers(2**31 - 1)))
        pick = (lambda a, rows: None if a is None else a[rows])
        return (x[train_rows], y_fit[train_rows], pick(lengths, train_rows),
                (x[val_rows], y_fit[val_rows], pick(lengths, val_rows)))

    def _stratify(self, targets, n_val):
        return None

    # ---------------------------------------------------------------- prediction
    def _output(self, X, lengths):
        """The model's output for X: (N, out_features) float64."""
        check_is_fitted(self)
        p_threads = checked_params(self)["n_threads"]
        seqs, lengths = self._read_X(X, lengths, self.model_.dtype)
        self._check_features(X, seqs)
        out = []
        with _thread_limit(p_threads):
            for start in range(0, seqs.x.shape[0], _PREDICT_CHUNK):
                rows = slice(start, start + _PREDICT_CHUNK)
                out.append(self.model_(seqs.x[rows],
                                       lengths=None if lengths is None else lengths[rows]))
        return np.concatenate(out).astype(np.float64, copy=False)

    # subclasses: _targets, _out_features, _fit_targets, _set_targets


class SequenceClassifier(ClassifierMixin, _SequenceEstimator):
    """A recurrent sequence classifier: fastlstm.ManyToOne(rnn, Linear(D * H, n_classes))
    trained with softmax cross-entropy by fastlstm.fit.

    Parameters (all keyword-able, stored as given and checked by fit)
    ----------
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        the recurrent cell (fastlstm.LSTM, GRU, or RNN with tanh).
    hidden_size : int, default 32
        H, the hidden units of each layer and direction.
    num_layers : int, default 1
        stacked recurrent layers.
    bidirectional : bool, default False
        run each layer in both directions; the head reads both final states (D = 2).
    dropout : float in [0, 1), default 0.0
        dropout between stacked layers while training (needs num_layers > 1 to act).
    unit_forget_bias : bool, default True
        start an LSTM's forget-gate bias at 1 (as Keras does), so that its cells keep their
        state from the start: long memories are learned much sooner. Other cells ignore it.
    epochs : int, default 100
        passes over the data per fit (fewer with early stopping; partial_fit makes one).
    batch_size : int, default 32
        sequences per optimizer step (the last step of an epoch may have fewer).
    lr : float, default 3e-3
        the learning rate.
    optimizer : {"adam", "sgd"}, default "adam"
        fastlstm.Adam or fastlstm.SGD (with `momentum`).
    momentum : float in [0, 1), default 0.9
        SGD's momentum (not used by Adam).
    weight_decay : float, default 0.0
        L2 penalty added to the gradients (both optimizers).
    clip_norm : float or None, default 1.0
        clip each step's gradients to this global norm; None: no clipping.
    early_stopping : bool, default False
        hold out `validation_fraction` of the training sequences (stratified by class), stop
        after `n_iter_no_change` epochs without a lower validation loss and keep the weights
        of the best epoch.
    validation_fraction : float in (0, 1), default 0.1
        the held-out fraction with early_stopping.
    n_iter_no_change : int, default 10
        the patience of early stopping, in epochs.
    shuffle : bool, default True
        a new order of the sequences every epoch.
    random_state : None, int or numpy RandomState, default None
        seeds the initial weights, the shuffling and the validation split; an int makes fit
        reproducible.
    backend : str, default "auto"
        fastlstm's kernels: "auto", "cython", "numba" or "numpy" (fastlstm.available_backends()).
    dtype : {"float64", "float32"}, default "float64"
        the model's float type (X is converted to it). float64 keeps each row's prediction
        independent of the other rows in the batch to ~1e-15; float32 to ~1e-6.
    n_threads : int, default 1
        threads for fastlstm's kernels and BLAS while fitting and predicting; -1: every CPU.
        One by default: the default models are small, and scikit-learn's tools
        (GridSearchCV(n_jobs=...), cross_val_score) run several fits in parallel already.
    verbose : bool or int, default False
        a progress bar per epoch (tqdm, or one line per epoch without it) on stderr.
    warm_start : bool, default False
        fit goes on from the fitted weights (same architecture and classes) instead of
        starting anew; n_iter_ adds up.

    Attributes (after fit)
    ----------
    classes_ : ndarray (n_classes,)
        the labels, sorted; the head's output k is classes_[k].
    model_ : fastlstm.ManyToOne
        the fitted model: model_.rnn (batch_first=True: it reads (N, T, I)), model_.head.
    n_features_in_ : int
        I, the features per step, after fitting on a 3-D array or a list; after fitting on a
        2-D X (N, T), T (its columns, scikit-learn's meaning for a table): a 2-D X given
        later must have T columns (3-D and list X of any length still work).
    feature_names_in_ : ndarray of str
        the column names, after fitting on a DataFrame with string column names.
    input_size_ : int
        I, the features per step (the rnn's input_size).
    history_ : fastlstm.training.fit.History
        the per-epoch curves of the last fit ("loss", "accuracy", and "val_loss",
        "val_accuracy" with early stopping); consecutive partial_fit calls extend one.
    n_iter_ : int
        the epochs the weights have been trained for.
    optimizer_ : fastlstm.Adam or fastlstm.SGD
        the optimizer (partial_fit goes on with its state).
    """

    _loss = "cross_entropy"

    def fit(self, X, y, *, lengths=None):
        """Fit on sequences X (see the module docstring for its forms) and labels y (N,) of
        any type. lengths (N,): the valid steps of each row of an (N, T, I) or (N, T)
        array (a list X carries its own). Returns self."""
        return self._fit(X, y, lengths, partial=False)

    def partial_fit(self, X, y, classes=None, *, lengths=None):
        """One epoch over (X, y) going on from the current weights and optimizer state
        (no early stopping). classes: every label that any call will see, given on the first
        call (without it, the labels of the first y; a later label outside them is a
        ValueError); later calls may repeat it. Returns self."""
        return self._fit(X, y, lengths, partial=True, classes=classes)

    def predict_proba(self, X, *, lengths=None):
        """(N, n_classes) float64: the softmax of the head's output, columns as classes_."""
        return _softmax(self._output(X, lengths))

    def predict_log_proba(self, X, *, lengths=None):
        """(N, n_classes) float64: log(predict_proba(X)), computed stably."""
        out = self._output(X, lengths)
        z = out - out.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X, *, lengths=None):
        """(N,) labels (classes_'s type): the most probable class of each sequence."""
        best = self._output(X, lengths).argmax(axis=1)
        return self.classes_[best]

    # ---------------------------------------------------------------- targets
    def _targets(self, y, fresh, classes):
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":            # before scikit-learn casts it to int to look
            assert_all_finite(y, input_name="y")
        check_classification_targets(y)
        if fresh:
            if classes is None:
                known = np.unique(y)
            else:
                known = np.unique(np.asarray(classes))
        else:
            known = self.classes_
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                          known):
                raise ValueError(f"classes: {np.unique(np.asarray(classes))} differs from "
                                 f"classes_ = {known} of the fitted estimator")
        if len(known) < 2:
            raise ValueError(f"y: {type(self).__name__} needs at least 2 classes to learn, "
                             f"got 1 class: {known}")
        index = np.searchsorted(known, y)
        index[index >= len(known)] = 0
        unknown = known[index] != y
        if unknown.any():
            raise ValueError(f"y: label(s) {np.unique(y[unknown])} not in the classes "
                             f"{known}" + (" given to partial_fit" if classes is not None
                                           or not fresh else ""))
        return y, {"classes_": known, "encoded": index.astype(np.int64)}

    def _out_features(self, state):
        return len(state["classes_"])

    def _fit_targets(self, y, state):
        return state["encoded"]

    def _set_targets(self, state):
        self.classes_ = state["classes_"]

    def _stratify(self, targets, n_val):
        _, counts = np.unique(targets, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and len(targets) - n_val >= len(counts):
            return targets
        return None


class SequenceRegressor(RegressorMixin, _SequenceEstimator):
    """A recurrent sequence regressor: fastlstm.ManyToOne(rnn, Linear(D * H, n_outputs))
    trained with the mean squared error by fastlstm.fit.

    y: (N,) or (N, n_outputs) numbers. Each output is standardized for training (its mean
    and standard deviation from the first fit), and predictions are returned in y's units:
    (N,) after fitting on 1-D y, else (N, n_outputs). score is R^2 (RegressorMixin).

    Parameters: as SequenceClassifier's (without classes; early_stopping's split is not
    stratified). Attributes: as SequenceClassifier's without classes_, plus n_outputs_;
    history_ has "loss" (and "val_loss"), on the standardized targets.
    """

    _loss = "mse"
    _multi_output = True

    def fit(self, X, y, *, lengths=None):
        """Fit on sequences X (see the module docstring) and targets y (N,) or
        (N, n_outputs). lengths: as SequenceClassifier.fit. Returns self."""
        return self._fit(X, y, lengths, partial=False)

    def partial_fit(self, X, y, *, lengths=None):
        """One epoch over (X, y) going on from the current weights and optimizer state (no
        early stopping); the first call fixes the targets' standardization. Returns self."""
        return self._fit(X, y, lengths, partial=True)

    def predict(self, X, *, lengths=None):
        """(N,) float64 after fitting on 1-D y, else (N, n_outputs)."""
        out = self._output(X, lengths) * self._y_scale + self._y_mean
        return out[:, 0] if self._y_1d else out

    # ---------------------------------------------------------------- targets
    def _targets(self, y, fresh, classes):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (N,) or (N, n_outputs), got {y.shape}")
        y2 = y[:, None] if y.ndim == 1 else y
        if fresh:
            mean = y2.mean(axis=0)
            scale = y2.std(axis=0)
            scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
            state = {"n_outputs_": y2.shape[1], "_y_mean": mean, "_y_scale": scale,
                     "_y_1d": y.ndim == 1}
        else:
            if y2.shape[1] != self.n_outputs_:
                raise ValueError(f"y: expected {self.n_outputs_} output(s) per sequence, as "
                                 f"in the first fit, got shape {y.shape}")
            state = {"n_outputs_": self.n_outputs_, "_y_mean": self._y_mean,
                     "_y_scale": self._y_scale, "_y_1d": self._y_1d}
        state["y2"] = y2
        return y2, state

    def _out_features(self, state):
        return state["n_outputs_"]

    def _fit_targets(self, y, state):
        return (state["y2"] - state["_y_mean"]) / state["_y_scale"]

    def _set_targets(self, state):
        for name in ("n_outputs_", "_y_mean", "_y_scale", "_y_1d"):
            setattr(self, name, state[name])
