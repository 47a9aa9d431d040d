"""The adding problem (SPEC.md section 6): the classic test of long memory.

    python -m fastlstm demo adding [--T 100] [--samples 3200] [--epochs 20] [--seed 0]
                                   [--plot curves.png]

Each sequence has T steps of two features: a random number in [0, 1) and a marker, 0 or 1.
Exactly two markers are 1: one in the first half of the sequence, one in the second. The
target, read at the end, is the sum of the two marked numbers. The first marked number must be
remembered for at least T/2 steps, past everything that follows it.

Predicting the average, 1, gives a mean squared error of Var(u_1 + u_2) = 2/12 = 0.167 (two
independent U(0, 1) numbers); a model that only catches the second marked number, the recent
one, gets 1/12 = 0.083. An LSTM learns the task (with the defaults its test MSE drops from
0.167 to about 0.0003, suddenly, after a dozen epochs of guessing); a plain tanh RNN of the
same size, trained the same way, stays at the level of guessing.

Both are a ManyToOne model (the recurrent layer's last state into a Linear layer of one
output), trained by fastlstm.training.fit with Adam, mean squared error and gradient
clipping. x is (N, T, 2) batch-major (batch_first=True); y (N, 1).
"""
import numpy as np

import fastlstm
from fastlstm.training.fit import evaluate, fit
from fastlstm.training.linear import Linear
from fastlstm.training.optim import Adam
from fastlstm.training.structures import ManyToOne

from ._common import (Stopwatch, add_threads_argument, int_at_least, limited_threads,
                      positive_int, printer, threads_option)

#: the defaults, tuned on one core of a 2-core machine: with seeds 0-7 the LSTM's test MSE fell
#: below 0.05 by epoch 6-15 and ended at 0.0001-0.0006; the whole demo takes about 20 s
DEFAULTS = dict(T=100, samples=3200, epochs=25, hidden=32, batch_size=32, lr=0.02,
                clip_norm=1.0, test_samples=1000, seed=0)


def make_data(n, T, rng):
    """n sequences of the adding problem, drawn from the numpy Generator `rng`.

    Returns x (n, T, 2) float32 (feature 0: U(0, 1) numbers, feature 1: the markers) and
    y (n, 1) float32, the sum of the two marked numbers.
    """
    if T < 2:
        raise ValueError(f"T: the adding problem needs at least 2 steps, got {T}")
    x = np.zeros((n, T, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
    rows = np.arange(n)
    first = rng.integers(0, T // 2, size=n)           # a marker in the first half
    second = rng.integers(T // 2, T, size=n)          # and one in the second half
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None]
    return x, y.astype(np.float32)


def make_model(kind, hidden, seed):
    """ManyToOne(kind layer (2 -> hidden, batch_first), Linear(hidden -> 1)); kind "lstm"
    or "rnn" (tanh). The same seed gives the same initial weights."""
    layer = {"lstm": fastlstm.LSTM, "rnn": fastlstm.RNN}[kind]
    return ManyToOne(layer(2, hidden, batch_first=True, seed=seed),
                     Linear(hidden, 1, seed=seed + 1))


def run(T=DEFAULTS["T"], samples=DEFAULTS["samples"], epochs=DEFAULTS["epochs"],
        hidden=DEFAULTS["hidden"], batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
        clip_norm=DEFAULTS["clip_norm"], test_samples=DEFAULTS["test_samples"],
        seed=DEFAULTS["seed"], threads=1, plot=None, progress=None, out=None):
    """Train an LSTM and a plain RNN on the adding problem and print both curves.

    T: steps per sequence; samples: training sequences; test_samples: held-out ones (drawn
    from another stream of the same seed); hidden: units of both models; threads: fastlstm's
    thread limit (None: its own choice); plot: a file name for a PNG of the curves (needs
    matplotlib); progress: fit's progress bar (None: on a terminal only).

    Returns a dict: lstm, rnn (the History of each), lstm_test_mse, rnn_test_mse (after the
    last epoch), baseline_mse (the test MSE of always predicting 1), seconds.
    """
    say = printer(out)
    watch = Stopwatch()
    x, y = make_data(samples, T, np.random.default_rng([seed, 0]))
    x_test, y_test = make_data(test_samples, T, np.random.default_rng([seed, 1]))
    baseline = float(np.mean((y_test - 1.0) ** 2))
    say(f"The adding problem: T={T} steps, {samples} training and {test_samples} test "
        f"sequences, seed {seed}")
    say(f"  guessing 1 every time: test MSE {baseline:.4f} (in theory 1/6 = 0.1667)")

    results = {"baseline_mse": baseline}
    with limited_threads(threads):
        for kind in ("lstm", "rnn"):
            model = make_model(kind, hidden, seed)
            started = Stopwatch()
            history = fit(model, x, y, loss="mse", optimizer=Adam(model.modules, lr=lr),
                          epochs=epochs, batch_size=batch_size, seed=seed,
                          validation_data=(x_test, y_test), clip_norm=clip_norm,
                          progress=progress)
            results[kind] = history
            results[f"{kind}_test_mse"] = evaluate(model, x_test, y_test, loss="mse")[0]
            say(f"  {kind.upper():4} (hidden {hidden}, Adam lr {lr}, clip {clip_norm}): trained "
                f"in {started.seconds:.1f} s, {np.mean(history.history['samples_per_s']):,.0f} "
                f"sequences/s")

    say()
    say(f"{'epoch':>5} | {'LSTM train':>10} {'LSTM test':>10} | {'RNN train':>10} "
        f"{'RNN test':>10}   (mean squared error)")
    lstm, rnn = results["lstm"].history, results["rnn"].history
    for e in range(len(lstm["loss"])):
        say(f"{e + 1:>5} | {lstm['loss'][e]:10.4f} {lstm['val_loss'][e]:10.4f} | "
            f"{rnn['loss'][e]:10.4f} {rnn['val_loss'][e]:10.4f}")
    say()
    for kind in ("lstm", "rnn"):
        mse = results[f"{kind}_test_mse"]
        verdict = "solved" if mse < 0.1 * baseline else "not solved"
        say(f"  {kind.upper():4} test MSE {mse:.4f}  ({mse / baseline:.1%} of guessing): {verdict}")
    if plot is not None:
        _plot(results, plot, T)
        say(f"  curves written to {plot}")
    results["seconds"] = watch.seconds
    say(f"adding: done in {results['seconds']:.1f} s")
    return results


def _plot(results, path, T):
    """Both models' training and test curves in one figure, saved to `path` (Agg)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib, which is not installed: "
                          "pip install fastlstm[plot] (or pip install matplotlib)") from exc
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for kind, color in (("lstm", "tab:blue"), ("rnn", "tab:red")):
        h = results[kind].history
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax.plot(epochs, h["loss"], color=color, linestyle="--", label=f"{kind.upper()} train")
        ax.plot(epochs, h["val_loss"], color=color, marker=".", label=f"{kind.upper()} test")
    ax.axhline(results["baseline_mse"], color="grey", linestyle=":", label="guessing 1")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_title(f"The adding problem, T = {T}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def add_arguments(parser):
    d = DEFAULTS
    parser.add_argument("--T", type=int_at_least(2), default=d["T"], help=f"steps per sequence "
                        f"(default {d['T']})")
    parser.add_argument("--samples", type=positive_int, default=d["samples"],
                        help=f"training sequences (default {d['samples']})")
    parser.add_argument("--test-samples", type=positive_int, default=d["test_samples"],
                        help=f"test sequences (default {d['test_samples']})")
    parser.add_argument("--epochs", type=positive_int, default=d["epochs"],
                        help=f"epochs (default {d['epochs']})")
    parser.add_argument("--hidden", type=positive_int, default=d["hidden"],
                        help=f"hidden units of both models (default {d['hidden']})")
    parser.add_argument("--lr", type=float, default=d["lr"],
                        help=f"Adam's learning rate (default {d['lr']})")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help=f"seed of the data, the weights and the shuffling "
                             f"(default {d['seed']})")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="also draw the curves to this file (needs matplotlib)")
    add_threads_argument(parser)


def main(args):
    run(T=args.T, samples=args.samples, test_samples=args.test_samples, epochs=args.epochs,
        hidden=args.hidden, lr=args.lr, seed=args.seed, plot=args.plot,
        threads=threads_option(args.threads))
    return 0
