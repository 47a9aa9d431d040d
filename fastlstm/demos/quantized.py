"""The demos' trained models at reduced precision: train a demo's model as its run() does, then
evaluate the same held-out set with the recurrent layer quantized (m.quantize("int8") /
m.quantize("bfloat16"); fastlstm/layers/quantized.py). Used by the accuracy report of
`python -m fastlstm bench --quantized-accuracy` (fastlstm.bench.quantized).

    evaluate_quantized(model, x, y, loss="mse")   # {"float32": .., "int8": .., "bfloat16": ..}
    with_quantized_rnn(model, "int8")             # the same structure, its rnn quantized
    digits_accuracy()                             # the digits demo: held-out accuracy
    adding_accuracy()                             # the adding demo's LSTM: test MSE

The head (Linear) stays float32; only the recurrent layer is quantized. A quantized layer is
inference-only, so the model it goes into is for evaluation only.
"""
import io
import warnings

import numpy as np

from ..layers.quantized import ReducedPrecisionWarning
from ..training.fit import evaluate, fit
from ..training.optim import Adam
from ._common import Stopwatch, limited_threads

#: the precisions evaluated besides float32
PRECISIONS = ("int8", "bfloat16")


def with_quantized_rnn(model, precision):
    """A new structure of model's class (ManyToOne, ManyToMany, ...) holding
    model.rnn.quantize(precision) and model's own head (shared, not copied), in eval mode.
    model is left as it is. The demos' layers are small (H = 32), which quantize() warns is
    too small to run faster than float32: the point here is accuracy, so that warning is
    silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReducedPrecisionWarning)
        return type(model)(model.rnn.quantize(precision), model.head).eval()


def evaluate_quantized(model, x, y, loss="mse", lengths=None, precisions=PRECISIONS):
    """fastlstm.training.fit.evaluate of model and of with_quantized_rnn(model, p) for each
    precision p, on the same (x, y): {"float32": (loss, accuracy or None), p: (...), ...}.
    model's mode is restored."""
    out = {"float32": evaluate(model, x, y, loss=loss, lengths=lengths)}
    for p in precisions:
        out[p] = evaluate(with_quantized_rnn(model, p), x, y, loss=loss, lengths=lengths)
    return out


def digits_accuracy(epochs=None, seed=None, threads=1, precisions=PRECISIONS):
    """Train the digits demo (fastlstm.demos.digits.run, its output discarded) and evaluate its
    held-out images (the same split) at float32 and each precision.

    Returns {"metric": "accuracy", "results": {"float32": acc, "int8": acc, ...},
    "agreement": {"int8": fraction of the held-out images classified as at float32, ...},
    "n_test", "train_seconds", "epochs", "demo_accuracy" (run()'s own number, equal to
    results["float32"])}.
    Needs scikit-learn (ImportError otherwise)."""
    from . import digits

    d = digits.DEFAULTS
    epochs = d["epochs"] if epochs is None else epochs
    seed = d["seed"] if seed is None else seed
    images, labels = digits.prepare(*digits.load_sklearn_digits())
    _, test = digits.split(len(images), d["test_fraction"], np.random.default_rng([seed, 0]))
    watch = Stopwatch()
    result = digits.run(images=images, labels=labels, epochs=epochs, seed=seed,
                        threads=threads, progress=False, out=io.StringIO())
    seconds = watch.seconds
    model = result["model"]
    with limited_threads(threads):
        got = evaluate_quantized(model, images[test], labels[test], loss="cross_entropy",
                                 precisions=precisions)
        predicted = model.eval()(images[test]).argmax(axis=-1)
        agreement = {p: float(np.mean(with_quantized_rnn(model, p)(images[test]).argmax(axis=-1)
                                      == predicted)) for p in precisions}
    return {"metric": "accuracy", "results": {p: float(v[1]) for p, v in got.items()},
            "agreement": agreement, "n_test": int(len(test)), "train_seconds": seconds,
            "epochs": epochs, "demo_accuracy": float(result["test_accuracy"])}


def adding_accuracy(epochs=None, samples=None, seed=None, threads=1, precisions=PRECISIONS):
    """Train the adding demo's LSTM as fastlstm.demos.adding.run does (its data, model, Adam,
    clipping and defaults; the RNN it also trains is left out) and evaluate its test set at
    float32 and each precision.

    Returns {"metric": "mse", "results": {"float32": mse, "int8": mse, ...},
    "max_abs_output_diff": {"int8": max |prediction - float32 prediction|, ...}, "n_test",
    "train_seconds", "epochs", "samples", "baseline_mse" (always guessing 1)}."""
    from . import adding

    d = adding.DEFAULTS
    epochs = d["epochs"] if epochs is None else epochs
    samples = d["samples"] if samples is None else samples
    seed = d["seed"] if seed is None else seed
    x, y = adding.make_data(samples, d["T"], np.random.default_rng([seed, 0]))
    x_test, y_test = adding.make_data(d["test_samples"], d["T"],
                                      np.random.default_rng([seed, 1]))
    watch = Stopwatch()
    model = adding.make_model("lstm", d["hidden"], seed)
    with limited_threads(threads):
        fit(model, x, y, loss="mse", optimizer=Adam(model.modules, lr=d["lr"]), epochs=epochs,
            batch_size=d["batch_size"], seed=seed, clip_norm=d["clip_norm"], progress=False)
        seconds = watch.seconds
        got = evaluate_quantized(model, x_test, y_test, loss="mse", precisions=precisions)
        out32 = model.eval()(x_test)
        diff = {p: float(np.max(np.abs(with_quantized_rnn(model, p)(x_test) - out32)))
                for p in precisions}
    return {"metric": "mse", "results": {p: float(v[0]) for p, v in got.items()},
            "max_abs_output_diff": diff,
            "n_test": int(len(x_test)), "train_seconds": seconds, "epochs": epochs,
            "samples": samples, "baseline_mse": float(np.mean((y_test - 1.0) ** 2))}
