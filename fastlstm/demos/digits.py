"""Classify handwritten digits by reading each image row by row (SPEC.md section 6).

    python -m fastlstm demo digits [--epochs 12] [--seed 0] [--npz FILE]

An image of `rows` x `cols` pixels is a sequence of T = rows steps, each step one row of
`cols` features. An LSTM reads the rows top to bottom; its last state goes into a Linear
layer with one output per class (the logits), trained with softmax cross-entropy
(ManyToOne + fastlstm.training.fit).

By default the data are scikit-learn's bundled 8x8 digits (sklearn.datasets.load_digits, 1797
images, no download): T = 8 steps of 8 features. Any other set of images works the same way:
run(images=..., labels=...) with images (N, rows, cols) and integer labels (N,), or --npz FILE
with the arrays "x" (N, rows, cols) and "y" (N,), e.g. MNIST saved with
np.savez("mnist.npz", x=images, y=labels). Pixels are scaled to [0, 1] by the largest one.
"""
import numpy as np

import fastlstm
from fastlstm.training.fit import evaluate, fit
from fastlstm.training.linear import Linear
from fastlstm.training.optim import Adam
from fastlstm.training.structures import ManyToOne

from ._common import (Stopwatch, add_threads_argument, limited_threads, positive_int, printer,
                      threads_option)

DEFAULTS = dict(epochs=12, hidden=64, batch_size=32, lr=0.01, test_fraction=0.2, seed=0)


def load_sklearn_digits():
    """scikit-learn's 8x8 digits: images (1797, 8, 8) with pixels 0..16, labels (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits demo reads scikit-learn's bundled digits: "
                          "pip install scikit-learn (or give your own images with --npz "
                          "FILE / run(images=..., labels=...))") from exc
    data = load_digits()
    return data.images, data.target


def load_npz(path):
    """images (N, rows, cols) and labels (N,) from the arrays "x" and "y" of an .npz file."""
    with np.load(path) as f:
        missing = [k for k in ("x", "y") if k not in f.files]
        if missing:
            raise ValueError(f"npz: {path} has no array(s) {missing}; expected \"x\" (N, rows, "
                             f"cols) and \"y\" (N,), found {f.files}")
        return f["x"], f["y"]


def prepare(images, labels):
    """Check and convert: images -> float32 (N, rows, cols) scaled to [0, 1] by the largest
    pixel; labels -> int64 (N,). Wrong shapes are a ValueError naming the argument."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3:
        raise ValueError(f"images: expected shape (N, rows, cols), got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels: expected shape (N,) = ({images.shape[0]},), one per image, "
                         f"got {labels.shape}")
    whole_floats = labels.dtype.kind == "f" and np.all(labels == np.round(labels))
    if labels.dtype.kind not in "iu" and not whole_floats:
        raise TypeError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels: expected class labels >= 0, got {labels.min()}")
    images = images.astype(np.float32)
    top = float(images.max()) if images.size else 1.0
    if top > 0:
        images /= top
    return images, labels.astype(np.int64)


def split(n, test_fraction, rng):
    """A random split of range(n): (train indices, test indices)."""
    order = rng.permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def ascii_image(image):
    """An image (rows, cols) with values in [0, 1] as text, one character per pixel."""
    shades = " .:-=+*#%@"
    return "\n".join("".join(shades[min(int(v * len(shades)), len(shades) - 1)] for v in row)
                     for row in image)


def run(images=None, labels=None, npz=None, epochs=DEFAULTS["epochs"],
        hidden=DEFAULTS["hidden"], batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
        test_fraction=DEFAULTS["test_fraction"], seed=DEFAULTS["seed"], threads=1,
        progress=None, out=None):
    """Train the row-by-row LSTM classifier and print its held-out accuracy.

    images (N, rows, cols) and labels (N,): the data (default: scikit-learn's 8x8 digits), or
    npz: a file with the arrays "x" and "y". A fraction `test_fraction` of the images, drawn
    with `seed`, is held out for testing (and only reported: nothing is tuned on it).
    threads: fastlstm's thread limit (None: its own choice).

    Returns a dict: test_accuracy, train_accuracy (the last epoch's), history (fit's),
    n_train, n_test, classes, seconds, model.
    """
    say = printer(out)
    watch = Stopwatch()
    if npz is not None and images is not None:
        raise ValueError("npz: give either images and labels or npz, not both")
    if npz is not None:
        images, labels = load_npz(npz)
        source = str(npz)
    elif images is None:
        images, labels = load_sklearn_digits()
        source = "scikit-learn's 8x8 digits"
    else:
        if labels is None:
            raise ValueError("labels: needed with images")
        source = "the images given"
    images, labels = prepare(images, labels)
    n, rows, cols = images.shape
    classes = int(labels.max()) + 1
    train, test = split(n, test_fraction, np.random.default_rng([seed, 0]))
    say(f"Digits read row by row: {source}, {n} images of {rows}x{cols} -> sequences of "
        f"T={rows} steps x {cols} features, {classes} classes")
    say(f"  {len(train)} training and {len(test)} held-out images; LSTM({cols}, {hidden}) -> "
        f"Linear({hidden}, {classes}), cross-entropy, Adam lr {lr}")

    model = ManyToOne(fastlstm.LSTM(cols, hidden, batch_first=True, seed=seed),
                      Linear(hidden, classes, seed=seed + 1))
    with limited_threads(threads):
        history = fit(model, images[train], labels[train], loss="cross_entropy",
                      optimizer=Adam(model.modules, lr=lr), epochs=epochs,
                      batch_size=batch_size, seed=seed,
                      validation_data=(images[test], labels[test]), progress=progress)
        _, test_accuracy = evaluate(model, images[test], labels[test], loss="cross_entropy")
        logits = model.eval()(images[test])
        model.train()
    h = history.history
    say(f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'test loss':>10} {'test accuracy':>14}")
    for e in range(history.epochs):
        say(f"{e + 1:>5} {h['loss'][e]:8.4f} {h['accuracy'][e]:9.2%} {h['val_loss'][e]:10.4f} "
            f"{h['val_accuracy'][e]:14.2%}")
    predicted = logits.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != labels[test])
    say(f"held-out accuracy: {test_accuracy:.2%} ({len(test) - len(wrong)} of {len(test)})")
    if len(wrong) and rows * cols <= 32 * 32:
        k = wrong[0]
        say(f"  one it gets wrong: a {labels[test][k]} read as a {predicted[k]}:")
        for line in ascii_image(images[test][k]).splitlines():
            say("    |" + line + "|")
    seconds = watch.seconds
    say(f"digits: done in {seconds:.1f} s")
    return {"test_accuracy": test_accuracy, "train_accuracy": h["accuracy"][-1],
            "history": history, "n_train": len(train), "n_test": len(test),
            "classes": classes, "seconds": seconds, "model": model}


def add_arguments(parser):
    d = DEFAULTS
    parser.add_argument("--npz", metavar="FILE", default=None,
                        help='images from an .npz file with arrays "x" (N, rows, cols) and '
                             '"y" (N,) instead of scikit-learn\'s digits')
    parser.add_argument("--epochs", type=positive_int, default=d["epochs"],
                        help=f"epochs (default {d['epochs']})")
    parser.add_argument("--hidden", type=positive_int, default=d["hidden"],
                        help=f"LSTM units (default {d['hidden']})")
    parser.add_argument("--lr", type=float, default=d["lr"],
                        help=f"Adam's learning rate (default {d['lr']})")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help=f"seed of the split, the weights and the shuffling "
                             f"(default {d['seed']})")
    add_threads_argument(parser)


def main(args):
    run(npz=args.npz, epochs=args.epochs, hidden=args.hidden, lr=args.lr, seed=args.seed,
        threads=threads_option(args.threads))
    return 0
