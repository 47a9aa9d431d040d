"""The two layer options beyond torch.nn (fastlstm.layers.modules): peepholes=True (LSTM) and
reverse=True (unidirectional stacks), which ONNX models need (fastlstm.from_onnx, to_onnx).

- A stack with either option equals the chain of single-layer calls fastlstm.forward /
  gru_forward / rnn_forward(..., peepholes=, reverse=True) on the NumPy reference, every
  backend and dtype, with lengths (a 0-length row included); its gradients equal the chain's
  gradients through fastlstm.backward, and the peephole gradients are keyed like state_dict.
- state_dict keys and shapes; streams honour peepholes; errors: peepholes on GRU/RNN,
  reverse with bidirectional, a reverse stream.
"""
import numpy as np
import pytest

import fastlstm
from conftest import assert_close

BACKENDS = fastlstm.available_backends()
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
FUNCTIONS = {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward, "rnn": fastlstm.rnn_forward}
CLASSES = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}


def _module(kind, peepholes, reverse, dtype, backend, num_layers=2, seed=3):
    extra = {"peepholes": peepholes} if kind == "lstm" else {}
    return CLASSES[kind](4, 6, num_layers=num_layers, reverse=reverse, dtype=dtype, seed=seed,
                         backend=backend, **extra)


def _chain(kind, params, x, lengths, reverse, num_layers):
    """The stack computed by calling the single-layer functions (numpy backend, float64) layer
    by layer; returns y, the final states and the tapes (for the gradients)."""
    inp, tapes, finals = x.astype(np.float64), [], []
    for layer in range(num_layers):
        p = {k: v.astype(np.float64) for k, v in params.items() if k.endswith(f"_l{layer}")}
        args = (inp, p[f"weight_ih_l{layer}"], p[f"weight_hh_l{layer}"],
                p[f"bias_ih_l{layer}"], p[f"bias_hh_l{layer}"])
        extra = {}
        if kind == "lstm" and f"weight_peephole_l{layer}" in p:
            extra["peepholes"] = p[f"weight_peephole_l{layer}"]
        out = FUNCTIONS[kind](*args, lengths=lengths, reverse=reverse, backend="numpy",
                              return_tape=True, **extra)
        inp = out[0]
        finals.append(out[1])
        tapes.append(out[-1])
    return inp, finals, tapes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("kind,peepholes,reverse", [
    ("lstm", True, False), ("lstm", True, True), ("lstm", False, True),
    ("gru", False, True), ("rnn", False, True)])
def test_stack_equals_the_chain_of_single_layer_calls(kind, peepholes, reverse, dtype, backend):
    rng = np.random.default_rng(7)
    T, B = 7, 4
    m = _module(kind, peepholes, reverse, dtype, backend)
    x = rng.standard_normal((T, B, 4)).astype(dtype)
    lengths = np.array([7, 0, 3, 5])
    y, hx, tape = m.forward(x, lengths=lengths, return_tape=True)
    y_ref, finals, tapes = _chain(kind, m.state_dict(), x, lengths, reverse, 2)
    tol = TOL[np.dtype(dtype)]
    assert_close(y, y_ref, tol)
    h_n = hx[0] if kind == "lstm" else hx
    for layer, fin in enumerate(finals):
        assert_close(h_n[layer], fin[0] if kind == "lstm" else fin, tol)
        if kind == "lstm":
            assert_close(hx[1][layer], fin[1], tol)

    # gradients: back through the chain, last layer first
    dy = rng.standard_normal(y.shape)
    dx, _, grads = m.backward(tape, dy=dy.astype(dtype))
    d_out = dy
    for layer in reversed(range(2)):
        g = fastlstm.backward(tapes[layer], d_out)
        assert_close(grads[f"weight_ih_l{layer}"], g.w_ih, tol)
        assert_close(grads[f"weight_hh_l{layer}"], g.w_hh, tol)
        assert_close(grads[f"bias_ih_l{layer}"], g.b_ih, tol)
        if peepholes:
            assert grads[f"weight_peephole_l{layer}"].shape == (3, 6)
            assert_close(grads[f"weight_peephole_l{layer}"], g.peepholes, tol)
        d_out = g.x
    assert_close(dx, d_out, tol)
    assert np.all(dx[:, 1] == 0)   # the 0-length row reads nothing


def test_reverse_is_a_per_row_reversal_not_a_flip():
    """A reverse stack on a row equals the forward stack on that row's valid steps reversed,
    with the outputs reversed back (SPEC.md section 7)."""
    rng = np.random.default_rng(1)
    fwd = fastlstm.GRU(3, 5, num_layers=1, dtype="float64", seed=2)
    rev = fastlstm.GRU(3, 5, num_layers=1, reverse=True, dtype="float64", seed=2)
    x = rng.standard_normal((6, 2, 3))
    lengths = np.array([6, 4])
    y, h_n = rev(x, lengths=lengths)
    for b, n in enumerate(lengths):
        y_f, h_f = fwd(x[:n, b:b + 1][::-1].copy())
        assert_close(y[:n, b], y_f[::-1, 0], 1e-12)
        assert_close(h_n[:, b], h_f[:, 0], 1e-12)
        assert np.all(y[n:, b] == 0)


def test_peephole_parameters_in_the_state_dict():
    m = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, peepholes=True, seed=0)
    keys = list(m.state_dict())
    assert keys[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                        "weight_peephole_l0", "weight_ih_l0_reverse"]
    assert m.state_dict()["weight_peephole_l1_reverse"].shape == (3, 5)
    assert "peepholes=True" in repr(m)
    zeroed = m.state_dict()
    for key in zeroed:
        if "peephole" in key:
            zeroed[key][:] = 0
    plain = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, seed=0)
    plain.load_state_dict({k: v for k, v in zeroed.items() if "peephole" not in k})
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    assert_close(m.load_state_dict(zeroed)(x)[0], plain(x)[0], 1e-6)   # p = 0: the plain LSTM


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_with_peepholes_equals_one_call(backend):
    m = fastlstm.LSTM(3, 5, num_layers=2, peepholes=True, dtype="float64", seed=4,
                      backend=backend)
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    y, _ = m(x)
    s = m.stream(batch_size=2)
    steps = np.stack([s.step(x_t) for x_t in x[:3]])
    assert_close(np.concatenate([steps, s.step(x[3:])]), y, 1e-12)


def test_option_errors():
    with pytest.raises(TypeError, match="peepholes"):
        fastlstm.GRU(3, 5, peepholes=True)
    with pytest.raises(ValueError, match="reverse"):
        fastlstm.LSTM(3, 5, bidirectional=True, reverse=True)
    with pytest.raises(TypeError, match="peepholes: expected True or False, got 1"):
        fastlstm.LSTM(3, 5, peepholes=1)
    with pytest.raises(ValueError, match="reverse"):
        fastlstm.RNN(3, 5, reverse=True).stream()
