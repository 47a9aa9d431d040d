"""The demonstrations (fastlstm.demos): their numbers, short forms of their training runs, and
`python -m fastlstm demo`."""
import io
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm.demos import adding, digits, main, twostep


def quiet():
    return io.StringIO()


# --------------------------------------------------------------------------------------------
# twostep


@pytest.mark.parametrize("backend", fastlstm.available_backends())
def test_twostep_numbers_equal_spec_to_five_decimals(backend):
    r = twostep.run(backend=backend, out=quiet())
    got = {"i_1": r["gates"][0, 0], "f_1": r["gates"][0, 1], "g_1": r["gates"][0, 2],
           "o_1": r["gates"][0, 3], "c_1": r["c"][0], "h_1": r["h"][0], "c_2": r["c"][1],
           "h_2": r["h"][1]}
    for name, expected in twostep.SPEC_NUMBERS.items():
        assert round(float(got[name]), 5) == expected, name
    # the loss is Σ ½ (h_t − target_t)² of those outputs
    assert r["loss"] == pytest.approx(0.5 * (0.53631 - 0.5) ** 2 + 0.5 * (0.77198 - 1.25) ** 2,
                                      abs=1e-5)


def test_twostep_gradients_pass_the_finite_difference_check():
    r = twostep.run(out=quiet())
    assert r["fd_max_diff"] < 1e-8
    for name in twostep.PARAM_NAMES:
        np.testing.assert_allclose(r["grads"][name], r["fd_grads"][name], rtol=1e-6,
                                   atol=1e-9, err_msg=name)
        # the update is w − 0.1 · dL/dw, and it lowers the loss
        np.testing.assert_allclose(r["updated"][name],
                                   twostep.example_params()[name] - 0.1 * r["grads"][name])
    assert r["loss_after"] < r["loss"]
    # b_ih and b_hh enter the gates the same way: the same gradient
    np.testing.assert_array_equal(r["grads"]["b_ih"], r["grads"]["b_hh"])


def test_twostep_gradients_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    p = {k: torch.tensor(v, requires_grad=True) for k, v in twostep.example_params().items()}
    lstm = torch.nn.LSTM(2, 1).double()
    with torch.no_grad():
        for k, name in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                        ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
            getattr(lstm, name).copy_(p[k])
    y, _ = lstm(torch.tensor(twostep.X)[:, None, :])
    loss = (0.5 * (y[:, 0, 0] - torch.tensor(twostep.TARGETS)) ** 2).sum()
    loss.backward()
    r = twostep.run(out=quiet())
    assert r["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for k, name in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                    ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
        np.testing.assert_allclose(r["grads"][k], getattr(lstm, name).grad.numpy(),
                                   rtol=1e-10, atol=1e-14)


def test_demo_twostep_prints_the_table(capsys):
    assert main(["twostep"]) == 0
    out = capsys.readouterr().out
    for text in ("0.96083", "0.85195", "0.81775", "0.81757", "0.78573", "0.53631", "1.51763",
                 "0.77198", "dL/dw_ih", "finite differences", "w ← w − 0.1", "done in"):
        assert text in out, text


# --------------------------------------------------------------------------------------------
# the command line


def test_demo_help_lists_the_demos(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("twostep", "adding", "digits"))


def test_unknown_demo_is_an_error_with_exit_status_2():
    proc = subprocess.run([sys.executable, "-m", "fastlstm", "demo", "nosuchdemo"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "invalid choice: 'nosuchdemo'" in proc.stderr and "twostep" in proc.stderr


def test_missing_demo_name_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "NAME" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# adding


def test_adding_data_markers_and_targets():
    x, y = adding.make_data(500, 20, np.random.default_rng(0))
    assert x.shape == (500, 20, 2) and y.shape == (500, 1) and x.dtype == np.float32
    markers = x[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :10].sum(axis=1) == 1)          # one in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(axis=1), rtol=1e-6)
    # guessing 1 gives Var(u1 + u2) = 1/6
    _, y_big = adding.make_data(20000, 20, np.random.default_rng(1))
    assert np.mean((y_big - 1) ** 2) == pytest.approx(1 / 6, rel=0.03)


def test_adding_short_lstm_solves_it_and_rnn_does_not(tmp_path):
    """T = 50, 1600 sequences, 20 epochs (about 5 s). With these settings the LSTM's test MSE
    ended at 0.0006-0.0010 for seeds 0-5 (solved by epoch 7-16), the RNN's at 0.17-0.20."""
    plot = tmp_path / "adding.png" if _has_matplotlib() else None
    out = quiet()
    r = adding.run(T=50, samples=1600, test_samples=500, epochs=20, seed=0, plot=plot,
                   progress=False, out=out)
    assert r["baseline_mse"] == pytest.approx(1 / 6, rel=0.15)
    assert r["lstm_test_mse"] < 0.01
    assert r["rnn_test_mse"] > 0.1
    assert r["lstm"].history["val_loss"][-1] == pytest.approx(r["lstm_test_mse"], rel=1e-6)
    assert len(r["rnn"].history["loss"]) == 20
    text = out.getvalue()
    assert "LSTM test MSE" in text and "solved" in text and "done in" in text
    assert len([line for line in text.splitlines() if line.strip().startswith("20 |")]) == 1
    if plot is not None:
        assert plot.read_bytes()[:4] == b"\x89PNG"


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# digits


def test_digits_short_reaches_90_percent():
    """scikit-learn's digits, 8 epochs (about 1 s): 95-97% held out for seeds 0-4."""
    pytest.importorskip("sklearn")
    out = quiet()
    r = digits.run(epochs=8, seed=0, progress=False, out=out)
    assert r["n_train"] + r["n_test"] == 1797 and r["classes"] == 10
    assert r["test_accuracy"] > 0.9
    assert r["history"].history["val_accuracy"][-1] == pytest.approx(r["test_accuracy"])
    assert "held-out accuracy" in out.getvalue()


def bars(n, rows, cols, seed):
    """Images (n, rows, cols) of three classes: 0 a horizontal bar, 1 a vertical bar, 2 noise
    only; pixel values 0..255 as from a file of 8-bit images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.uniform(0, 60, size=(n, rows, cols))
    for k, label in enumerate(labels):
        if label == 0:
            images[k, rng.integers(rows), :] = 255
        elif label == 1:
            images[k, :, rng.integers(cols)] = 255
    return images.astype(np.uint8), labels


def test_digits_takes_any_images(tmp_path, capsys):
    """12x10 images of bars (0.1 s): held-out accuracy 100% from epoch 5 on with this seed
    (100% after 10 epochs for 5 of the data seeds 0-5, 88% for the other)."""
    images, labels = bars(400, 12, 10, seed=0)
    r = digits.run(images=images, labels=labels, epochs=10, lr=0.005, progress=False,
                   out=quiet())
    assert r["classes"] == 3 and r["n_test"] == 80 and r["test_accuracy"] > 0.9
    # the same through the command line and an .npz file
    path = tmp_path / "bars.npz"
    np.savez(path, x=images, y=labels)
    assert main(["digits", "--npz", str(path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "400 images of 12x10" in out and "3 classes" in out and "held-out accuracy" in out


def test_digits_bad_inputs():
    with pytest.raises(ValueError, match="images"):
        digits.run(images=np.zeros((10, 64)), labels=np.zeros(10, int), out=quiet())
    with pytest.raises(ValueError, match="labels"):
        digits.run(images=np.zeros((10, 8, 8)), labels=np.zeros(9, int), out=quiet())
    with pytest.raises(TypeError, match="labels"):
        digits.run(images=np.zeros((10, 8, 8)), labels=np.full(10, 0.5), out=quiet())
