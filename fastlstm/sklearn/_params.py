"""The estimators' constructor arguments, checked when fit runs (scikit-learn's contract: the
constructor stores them as given, set_params never fails, fit says what is wrong).

    params = checked_params(estimator)     # a dict of the values to use, or an error

Errors are a TypeError (wrong type) or ValueError (wrong value) naming the parameter, with the
expected and the given.
"""
import numbers

import numpy as np

from .._validate import check_choice, check_flag
from ..training.fit import _int
from ..training.fit import _real as _fit_real

CELLS = ("lstm", "gru", "rnn")
OPTIMIZERS = ("adam", "sgd")


def _real(name, value, low, high=None, *, low_open=False, high_open=False):
    """fastlstm.fit's number check, and no infinity (a learning rate, a fraction)."""
    value = _fit_real(name, value, low, high, low_open, high_open)
    if np.isinf(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def _threads(value):
    if value == -1 and not isinstance(value, (bool, np.bool_)):
        return None                                    # every CPU (fastlstm's default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_threads: expected a positive integer or -1 (every CPU), got "
                        f"{value!r}")
    if value < 1:
        raise ValueError(f"n_threads: expected a positive integer or -1 (every CPU), got "
                         f"{value!r}")
    return int(value)


def _dtype(value):
    try:
        dtype = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}") from exc
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dtype


def _verbose(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value >= 0:
        return value > 0
    raise TypeError(f"verbose: expected True, False or an integer >= 0, got {value!r}")


def checked_params(est):
    """The constructor arguments of a SequenceClassifier / SequenceRegressor, checked:
    a dict {name: value} (dtype as a numpy dtype, n_threads None for every CPU, verbose a
    bool)."""
    p = {
        "cell": check_choice("cell", est.cell, CELLS),
        "hidden_size": _int("hidden_size", est.hidden_size, 1),
        "num_layers": _int("num_layers", est.num_layers, 1),
        "bidirectional": check_flag("bidirectional", est.bidirectional),
        "dropout": _real("dropout", est.dropout, 0.0, 1.0, high_open=True),
        "unit_forget_bias": check_flag("unit_forget_bias", est.unit_forget_bias),
        "epochs": _int("epochs", est.epochs, 1),
        "batch_size": _int("batch_size", est.batch_size, 1),
        "lr": _real("lr", est.lr, 0.0, low_open=True),
        "optimizer": check_choice("optimizer", est.optimizer, OPTIMIZERS),
        "momentum": _real("momentum", est.momentum, 0.0, 1.0, high_open=True),
        "weight_decay": _real("weight_decay", est.weight_decay, 0.0),
        "clip_norm": (None if est.clip_norm is None
                      else _real("clip_norm", est.clip_norm, 0.0, low_open=True)),
        "early_stopping": check_flag("early_stopping", est.early_stopping),
        "validation_fraction": _real("validation_fraction", est.validation_fraction, 0.0,
                                     1.0, low_open=True, high_open=True),
        "n_iter_no_change": _int("n_iter_no_change", est.n_iter_no_change, 1),
        "shuffle": check_flag("shuffle", est.shuffle),
        "dtype": _dtype(est.dtype),
        "n_threads": _threads(est.n_threads),
        "verbose": _verbose(est.verbose),
        "warm_start": check_flag("warm_start", est.warm_start),
    }
    backend = est.backend
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected 'auto' or a backend name, got {backend!r}")
    p["backend"] = backend              # its value is checked by the layer (fastlstm.LSTM)
    return p
