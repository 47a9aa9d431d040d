"""The estimators' constructor arguments, checked when fit runs (scikit-learn's contract: the
constructor stores them as given, set_params never fails, fit says what is wrong).

    params = checked_params(estimator)     # a dict of the values to use, or an error

Errors are a TypeError (wrong type) or ValueError (wrong value) naming the parameter, with the
expected and the given.
"""
import numbers

import numpy as np

CELLS = ("lstm", "gru", "rnn")
OPTIMIZERS = ("adam", "sgd")


def _choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {', '.join(map(repr, choices))}, got "
                        f"{value!r}")
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got "
                         f"{value!r}")
    return value


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _int(name, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _real(name, value, low, high=None, *, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    bad = (np.isnan(value) or value < low or (low_open and value == low)
           or (high is not None and (value > high or (high_open and value == high)))
           or np.isinf(value))
    if bad:
        span = ("(" if low_open else "[") + f"{low}, " + \
            (f"{high}" + (")" if high_open else "]") if high is not None else "inf)")
        raise ValueError(f"{name}: expected a number in {span}, got {value!r}")
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
        "cell": _choice("cell", est.cell, CELLS),
        "hidden_size": _int("hidden_size", est.hidden_size, 1),
        "num_layers": _int("num_layers", est.num_layers, 1),
        "bidirectional": _flag("bidirectional", est.bidirectional),
        "dropout": _real("dropout", est.dropout, 0.0, 1.0, high_open=True),
        "unit_forget_bias": _flag("unit_forget_bias", est.unit_forget_bias),
        "epochs": _int("epochs", est.epochs, 1),
        "batch_size": _int("batch_size", est.batch_size, 1),
        "lr": _real("lr", est.lr, 0.0, low_open=True),
        "optimizer": _choice("optimizer", est.optimizer, OPTIMIZERS),
        "momentum": _real("momentum", est.momentum, 0.0, 1.0, high_open=True),
        "weight_decay": _real("weight_decay", est.weight_decay, 0.0),
        "clip_norm": (None if est.clip_norm is None
                      else _real("clip_norm", est.clip_norm, 0.0, low_open=True)),
        "early_stopping": _flag("early_stopping", est.early_stopping),
        "validation_fraction": _real("validation_fraction", est.validation_fraction, 0.0,
                                     1.0, low_open=True, high_open=True),
        "n_iter_no_change": _int("n_iter_no_change", est.n_iter_no_change, 1),
        "shuffle": _flag("shuffle", est.shuffle),
        "dtype": _dtype(est.dtype),
        "n_threads": _threads(est.n_threads),
        "verbose": _verbose(est.verbose),
        "warm_start": _flag("warm_start", est.warm_start),
    }
    backend = est.backend
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected 'auto' or a backend name, got {backend!r}")
    p["backend"] = backend              # its value is checked by the layer (fastlstm.LSTM)
    return p
