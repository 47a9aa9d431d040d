"""fastlstm.training.fit: the training loop, its History, and its argument checks.

Every model here is tiny (T = 6 steps, 8 units, 64 sequences), so the whole file runs in a few
seconds.
"""
import io
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm.training.fit import History, evaluate, fit
from fastlstm.training.linear import Linear
from fastlstm.training.losses import mse_loss
from fastlstm.training.optim import SGD, Adam
from fastlstm.training.structures import ManyToMany, ManyToOne, OneToMany

N, T, I, H = 64, 6, 3, 8


def regression_data(n=N, seed=0):
    """x (n, T, I), y (n, 1): the target is the mean of the first feature over the steps."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, I)).astype(np.float32)
    return x, x[:, :, :1].mean(axis=1) * 2.0


def many_to_one(seed=0, batch_first=True, **rnn_options):
    return ManyToOne(fastlstm.LSTM(I, H, batch_first=batch_first, seed=seed, **rnn_options),
                     Linear(H, 1, seed=seed + 1))


def weights(model):
    return model.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --------------------------------------------------------------------------------------------
# training


def test_fit_decreases_the_loss():
    x, y = regression_data()
    model = many_to_one()
    before = evaluate(model, x, y)[0]
    history = fit(model, x, y, optimizer=Adam(model.modules, lr=0.02), epochs=15,
                  batch_size=16, seed=0)
    loss = history.history["loss"]
    assert len(loss) == 15 and history.epochs == 15
    assert loss[-1] < 0.3 * loss[0]
    assert evaluate(model, x, y)[0] < 0.3 * before
    assert model.training                      # back in training mode
    assert history.best_epoch == int(np.argmin(loss)) and history.monitor == "loss"


def test_history_records_every_epoch():
    x, y = regression_data()
    history = fit(many_to_one(), x, y, epochs=3, seed=0, validation_split=0.25)
    h = history.history
    assert set(h) == {"loss", "val_loss", "epoch_time", "samples_per_s"}
    assert all(len(v) == 3 for v in h.values())
    assert all(t > 0 for t in h["epoch_time"]) and all(s > 0 for s in h["samples_per_s"])
    assert history.monitor == "val_loss"
    assert history.best_epoch == int(np.argmin(h["val_loss"]))
    assert history.best == min(h["val_loss"])
    assert isinstance(history, History) and "3 epochs" in repr(history)


def test_same_seed_same_history_and_weights():
    x, y = regression_data()
    runs = []
    for seed in (5, 5, 6):
        model = many_to_one(seed=0)
        h = fit(model, x, y, epochs=3, batch_size=10, seed=seed, validation_split=0.2)
        runs.append((h.history, weights(model)))
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]
    assert_same_weights(w1, w2)
    assert h3["loss"] != h1["loss"]            # another seed, another order of mini-batches


def test_fit_skips_the_input_gradient_and_a_subclass_override_still_works():
    """fit asks a structure's backward for no input gradient (the model input's product is
    skipped); a subclass whose backward takes no input_grad gets the plain call. Both train to
    the same weights, bit for bit."""
    calls = []

    class Plain(ManyToOne):
        def backward(self, tape, dout):      # an override without input_grad
            dx, grads = super().backward(tape, dout)
            calls.append(dx is not None)
            return dx, grads

    x, y = regression_data()
    skipped, plain = many_to_one(seed=3), Plain(*many_to_one(seed=3).modules)
    seen = []
    original = ManyToOne.backward

    def spy(self, tape, dout, *, input_grad=True):
        seen.append(input_grad)
        return original(self, tape, dout, input_grad=input_grad)

    ManyToOne.backward = spy
    try:
        fit(skipped, x, y, epochs=2, batch_size=16, seed=0)
    finally:
        ManyToOne.backward = original
    fit(plain, x, y, epochs=2, batch_size=16, seed=0)
    assert seen and not any(seen)          # fit: input_grad=False at every step
    assert calls and all(calls)            # the override: its own call, dx computed
    assert_same_weights(weights(skipped), weights(plain))


def test_shuffle_false_ignores_the_seed():
    x, y = regression_data()
    results = []
    for seed in (1, 2):
        model = many_to_one()
        results.append(fit(model, x, y, epochs=2, batch_size=10, shuffle=False,
                           seed=seed).history["loss"])
    assert results[0] == results[1]


def test_time_major_data_is_cut_on_axis_1():
    """The same model and data, batch_first (N, T, I) or time-major (T, N, I): the same fit."""
    x, y = regression_data()
    a, b = many_to_one(batch_first=True), many_to_one(batch_first=False)
    ha = fit(a, x, y, epochs=2, batch_size=16, seed=3)
    hb = fit(b, np.ascontiguousarray(x.transpose(1, 0, 2)), y, epochs=2, batch_size=16, seed=3)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)
    for key, value in weights(a).items():
        np.testing.assert_allclose(value, weights(b)[key], rtol=1e-5, atol=1e-6)


def test_many_to_many_cross_entropy_with_lengths():
    """Per-step labels (T, N), time-major, variable lengths: the loss falls, accuracies are
    recorded and the padded steps do not count."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    labels = (x[:, :, 0] > 0).astype(np.int64) + 2 * (x[:, :, 1] > 0)     # 4 classes
    lengths = rng.integers(1, T + 1, size=N)
    model = ManyToMany(fastlstm.GRU(I, H, seed=0), Linear(H, 4, seed=1))
    history = fit(model, x, labels, loss="cross_entropy", lengths=lengths,
                  optimizer=Adam(model.modules, lr=0.02), epochs=12, batch_size=16, seed=0,
                  validation_data=(x, labels, lengths))
    h = history.history
    assert set(h) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h["loss"][-1] < 0.6 * h["loss"][0]
    assert h["val_accuracy"][-1] > 0.8
    # garbage labels at padded steps change nothing
    padded = np.arange(T)[:, None] >= lengths[None, :]
    noisy = np.where(padded, 3 - labels, labels)
    loss_a, acc_a = evaluate(model, x, labels, loss="cross_entropy", lengths=lengths)
    loss_b, acc_b = evaluate(model, x, noisy, loss="cross_entropy", lengths=lengths)
    assert (loss_a, acc_a) == (loss_b, acc_b)
    assert loss_a == pytest.approx(h["val_loss"][-1], rel=1e-6)


def test_one_to_many_learns_to_generate_and_takes_either_layout():
    """x0 (N, C) -> y (steps, N, C) time-major or (N, steps, C) batch_first: the target is
    x0 decaying by 0.8 per step. Both layouts cut the same mini-batches."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
    y = np.stack([x0 * 0.8 ** (t + 1) for t in range(5)])            # (steps, N, C)
    losses = []
    for batch_first in (False, True):
        model = OneToMany(fastlstm.GRU(2, H, batch_first=batch_first, seed=0),
                          Linear(H, 2, seed=1))
        target = np.ascontiguousarray(y.transpose(1, 0, 2)) if batch_first else y
        h = fit(model, x0, target, optimizer=Adam(model.modules, lr=0.02), epochs=10,
                batch_size=16, seed=0)
        losses.append(h.history["loss"])
    assert losses[0][-1] < 0.1 * losses[0][0]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_callable_loss_is_used():
    x, y = regression_data()
    calls = []

    def my_mse(pred, target):
        calls.append(pred.shape)
        return mse_loss(pred, target)

    a, b = many_to_one(), many_to_one()
    ha = fit(a, x, y, loss=my_mse, epochs=2, batch_size=32, seed=0)
    hb = fit(b, x, y, loss="mse", epochs=2, batch_size=32, seed=0)
    assert calls == [(32, 1)] * 4
    assert ha.history["loss"] == hb.history["loss"]


# --------------------------------------------------------------------------------------------
# validation, early stopping, clipping


class RecordingModel(ManyToOne):
    """A ManyToOne that records (training mode, with a tape) at every forward call."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = []

    def forward(self, x, lengths=None, hx=None, return_tape=False, return_state=False):
        self.calls.append((self.training, return_tape))
        return super().forward(x, lengths, hx, return_tape, return_state)


def test_validation_runs_in_eval_mode():
    """With dropout between the layers, train mode and eval mode differ: validation must be in
    eval mode, training in train mode, and the model ends in train mode."""
    x, y = regression_data()
    model = RecordingModel(fastlstm.LSTM(I, H, num_layers=2, dropout=0.5, batch_first=True,
                                         seed=0), Linear(H, 1, seed=1))
    history = fit(model, x, y, epochs=2, batch_size=16, seed=0, validation_data=(x, y))
    training_calls = [c for c in model.calls if c[1]]
    validation_calls = [c for c in model.calls if not c[1]]
    assert len(training_calls) == 2 * 4 and all(mode for mode, _ in training_calls)
    assert len(validation_calls) == 2 and not any(mode for mode, _ in validation_calls)
    assert model.training
    # the last val_loss is the loss of the final weights in eval mode (dropout off) ...
    eval_loss = evaluate(model, x, y)[0]
    assert history.history["val_loss"][-1] == pytest.approx(eval_loss, rel=1e-6)
    # ... which differs from the loss with dropout on
    out = model.forward(x)                    # training mode: dropout masks drawn
    assert mse_loss(out, y)[0] != pytest.approx(eval_loss, rel=1e-3)


def test_validation_split_holds_out_the_last_samples():
    x, y = regression_data()
    model = many_to_one()
    history = fit(model, x, y, epochs=2, batch_size=16, seed=0, validation_split=0.25)
    assert history.history["val_loss"][-1] == pytest.approx(
        evaluate(model, x[48:], y[48:])[0], rel=1e-6)
    # 48 training samples: 3 mini-batches of 16 per epoch
    assert history.history["samples_per_s"][0] > 0


def test_early_stopping_stops_and_restores_the_best_weights():
    """Validation targets of the opposite sign: the better the model fits the training data,
    the worse it does on them, so the validation loss is best early and then rises."""
    x, y = regression_data()
    opposite = (x, -y)
    patience = 2
    model = many_to_one()
    history = fit(model, x, y, optimizer=Adam(model.modules, lr=0.02), epochs=30,
                  batch_size=16, seed=0, validation_data=opposite, early_stopping=patience)
    best = history.best_epoch
    assert history.stopped_early
    assert history.epochs == best + 1 + patience < 30
    val = history.history["val_loss"]
    assert all(v >= val[best] for v in val[best + 1:])
    # the restored weights are those after epoch `best`: a run of best + 1 epochs gives them
    again = many_to_one()
    fit(again, x, y, optimizer=Adam(again.modules, lr=0.02), epochs=best + 1, batch_size=16,
        seed=0, validation_data=opposite)
    assert_same_weights(weights(model), weights(again))
    assert evaluate(model, *opposite)[0] == pytest.approx(val[best], rel=1e-6)


def test_clip_norm_is_applied():
    """One SGD step (lr 1, one mini-batch of all samples): the weights move by the clipped
    gradient, whose global norm is clip_norm."""
    x, y = regression_data()
    moved = {}
    for clip in (None, 1e-3):
        model = many_to_one()
        before = weights(model)
        fit(model, x, y, optimizer=SGD(model.modules, lr=1.0), epochs=1, batch_size=N,
            clip_norm=clip, seed=0)
        after = weights(model)
        moved[clip] = np.sqrt(sum(float(np.sum((after[k].astype(np.float64) - before[k]) ** 2))
                                  for k in before))
    assert moved[None] > 0.05                      # the gradient itself is much larger
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3)


# --------------------------------------------------------------------------------------------
# progress and plots


def test_progress_false_prints_nothing(capsys):
    x, y = regression_data()
    fit(many_to_one(), x, y, epochs=2, seed=0, validation_split=0.25, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_none_is_off_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()
    x, y = regression_data()
    fit(many_to_one(), x, y, epochs=2, seed=0, progress=None)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_true_shows_loss_and_throughput(capsys):
    x, y = regression_data()
    fit(many_to_one(), x, y, epochs=2, seed=0, validation_split=0.25, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "loss=" in err and "val_loss=" in err and "samples/s" in err


def test_progress_without_tqdm_prints_a_line_per_epoch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)            # import tqdm fails
    x, y = regression_data()
    fit(many_to_one(), x, y, epochs=2, seed=0, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2: loss=")
    assert lines[1].endswith("samples/s")


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = regression_data()
    path = tmp_path / "curves.png"
    history = fit(many_to_one(), x, y, epochs=3, seed=0, validation_split=0.25,
                  plot=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "again.png"
    fig = history.plot(other)
    assert other.stat().st_size > 1000 and len(fig.axes) == 1
    # cross-entropy: the accuracies in a second panel
    labels = (x[:, 0, 0] > 0).astype(int)
    model = ManyToOne(fastlstm.LSTM(I, H, batch_first=True, seed=0), Linear(H, 2, seed=1))
    history = fit(model, x, labels, loss="cross_entropy", epochs=2, seed=0,
                  validation_split=0.25)
    buffer = io.BytesIO()
    assert len(history.plot(buffer).axes) == 2 and buffer.getvalue()[:4] == b"\x89PNG"


def test_history_plot_without_matplotlib_says_what_to_install(monkeypatch):
    x, y = regression_data()
    history = fit(many_to_one(), x, y, epochs=1, seed=0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    with pytest.raises(ImportError, match=r"pip install fastlstm\[plot\]"):
        history.plot(io.BytesIO())


# --------------------------------------------------------------------------------------------
# errors


def _bad_calls():
    x, y = regression_data()
    return [
        (dict(model=object()), TypeError, "model"),
        (dict(x=np.array([["a"] * T] * N)), TypeError, "x"),
        (dict(x=x[:, 0, 0]), ValueError, "x"),
        (dict(y=y[:10]), ValueError, "y"),
        (dict(y=y[:, 0]), ValueError, "y"),                 # (N,) for an output (N, 1)
        (dict(y=np.zeros(N), loss="cross_entropy"), TypeError, "y"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(loss=3), TypeError, "loss"),
        (dict(optimizer=object()), TypeError, "optimizer"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(epochs=1.5), TypeError, "epochs"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(lengths=np.ones(3, int)), ValueError, "lengths"),
        (dict(lengths=np.ones(N)), TypeError, "lengths"),
        (dict(shuffle="yes"), TypeError, "shuffle"),
        (dict(seed="abc"), TypeError, "seed"),
        (dict(validation_split=1.0), ValueError, "validation_split"),
        (dict(validation_split="0.2"), TypeError, "validation_split"),
        (dict(validation_split=0.2, validation_data=(x, y)), ValueError, "validation_split"),
        (dict(validation_data=(x,)), TypeError, "validation_data"),
        (dict(validation_data=(x, y[:5])), ValueError, r"validation_data\[1\]"),
        (dict(clip_norm=0), ValueError, "clip_norm"),
        (dict(clip_norm="1"), TypeError, "clip_norm"),
        (dict(early_stopping=0), ValueError, "early_stopping"),
        (dict(early_stopping=True), TypeError, "early_stopping"),
        (dict(progress="yes"), TypeError, "progress"),
        (dict(plot=3), TypeError, "plot"),
        (dict(loss=lambda p, t: (0.0, p[:1])), ValueError, "loss"),    # gradient's shape
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_arguments_name_the_argument_and_change_nothing(index):
    changes, exc, name = _bad_calls()[index]
    x, y = regression_data()
    model = many_to_one()
    before = weights(model)
    args = dict(model=model, x=x, y=y, epochs=1, progress=False)
    args.update(changes)
    with pytest.raises(exc, match=name):
        fit(args.pop("model"), args.pop("x"), args.pop("y"), **args)
    assert_same_weights(weights(model), before)
