"""Parity with torch for the family, every backend, float64 (torch.double, max relative error
1e-10) and float32 (1e-4): nn.GRU, nn.RNN (tanh, relu), nn.LSTM (plain and proj_size=P),
forward and autograd (dx, dh0 / dc0 and every parameter's gradient) of
L = sum(y dy) + sum(h_n dh_n) (+ sum(c_n dc_n)).

- Packed sequences: pack_padded_sequence(x, lengths, enforce_sorted=False), the module, then
  pad_packed_sequence(total_length=T), against fastlstm with the same unsorted lengths (torch
  cannot take a length of 0, so these are >= 1).
- Reverse: a bidirectional module's `_reverse` weights against fastlstm with reverse=True (with
  and without lengths): the second half of torch's output features and h_n[1] (c_n[1]), and
  the gradients of the `_reverse` parameters, dx, dh0[1], dc0[1] with the loss on that half.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

from conftest import assert_close
from family_helpers import api_args, api_backward, api_forward, make_family_problem

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

# torch's float32 LSTM with proj_size says it falls back from oneDNN: not our concern
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

TORCH_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """torch on one thread (the machine is shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Case:
    variant: str          # "lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"
    T: int = 5
    B: int = 4
    I: int = 3
    H: int = 5
    P: int = 3
    lengths: Optional[tuple] = None
    reverse: bool = False
    bias: bool = True

    @property
    def id(self):
        parts = [self.variant, f"T{self.T}B{self.B}"]
        if self.lengths:
            parts.append("packed" + "-".join(map(str, self.lengths)))
        if self.reverse:
            parts.append("reverse")
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)


CASES = [
    Case("gru"),
    Case("gru", bias=False),
    Case("rnn_tanh"),
    Case("rnn_relu"),
    Case("lstm_proj"),
    Case("lstm_proj", P=1, H=4, bias=False),
    # packed sequences, unsorted lengths (T among them)
    Case("gru", lengths=(3, 5, 1, 4)),
    Case("rnn_tanh", lengths=(2, 5, 5, 1)),
    Case("rnn_relu", lengths=(4, 1, 5, 2)),
    Case("lstm", lengths=(1, 5, 3, 2)),
    Case("lstm_proj", lengths=(5, 2, 4, 1)),
    Case("lstm_proj", T=12, B=9, I=6, H=20, P=7, lengths=(3, 12, 1, 7, 12, 5, 9, 2, 11)),
    # reverse direction (bidirectional module, `_reverse` weights)
    Case("gru", reverse=True),
    Case("gru", lengths=(3, 5, 1, 4), reverse=True),
    Case("rnn_tanh", lengths=(2, 5, 5, 1), reverse=True),
    Case("rnn_relu", reverse=True),
    Case("lstm", lengths=(1, 5, 3, 2), reverse=True),
    Case("lstm_proj", reverse=True),
    Case("lstm_proj", lengths=(5, 2, 4, 1), reverse=True),
    Case("gru", T=12, B=9, I=6, H=20, lengths=(3, 12, 1, 7, 12, 5, 9, 2, 11), reverse=True),
]


def _torch_module(case, p):
    """The torch module (bidirectional when case.reverse) holding p's weights in the direction
    under test, in p's dtype."""
    T, B, I, H, H_out = p.dims
    kind = p.variant.kind
    common = dict(bias=case.bias, bidirectional=case.reverse)
    if kind == "lstm":
        m = torch.nn.LSTM(I, H, proj_size=p.params["w_hr"].shape[0] if p.variant.proj else 0,
                          **common)
    elif kind == "gru":
        m = torch.nn.GRU(I, H, **common)
    else:
        m = torch.nn.RNN(I, H, nonlinearity=p.variant.nonlinearity, **common)
    m = m.to(TORCH_DTYPE[p.dtype])
    sfx = "_l0_reverse" if case.reverse else "_l0"
    names = dict(w_ih="weight_ih", w_hh="weight_hh", b_ih="bias_ih", b_hh="bias_hh",
                 w_hr="weight_hr")
    with torch.no_grad():
        for ours, theirs in names.items():
            if p.params[ours] is not None:
                getattr(m, theirs + sfx).copy_(torch.from_numpy(p.params[ours]))
    return m, sfx, names


def _torch_run(case, p):
    """torch forward and autograd; numpy y, h_n, c_n (the direction under test) and grads
    {fastlstm Gradients field: array}."""
    T, B, I, H, H_out = p.dims
    lstm = p.variant.is_lstm
    m, sfx, names = _torch_module(case, p)
    D = 2 if case.reverse else 1
    d = D - 1
    x = torch.tensor(p.x, requires_grad=True)
    h0_all = torch.zeros((D, B, H_out), dtype=x.dtype)
    h0_all[d] = torch.from_numpy(p.h0)
    h0_all.requires_grad_(True)
    if lstm:
        c0_all = torch.zeros((D, B, H), dtype=x.dtype)
        c0_all[d] = torch.from_numpy(p.c0)
        c0_all.requires_grad_(True)
        hx = (h0_all, c0_all)
    else:
        hx = h0_all
    if case.lengths is not None:
        packed = pack_padded_sequence(x, torch.tensor(case.lengths), enforce_sorted=False)
        out, state = m(packed, hx)
        y, _ = pad_packed_sequence(out, total_length=T)
    else:
        y, state = m(x, hx)
    h_n, c_n = state if lstm else (state, None)
    y = y[..., d * H_out:(d + 1) * H_out]
    h_n = h_n[d]
    loss = (y * torch.from_numpy(p.dy)).sum() + (h_n * torch.from_numpy(p.dh_n)).sum()
    if lstm:
        c_n = c_n[d]
        loss = loss + (c_n * torch.from_numpy(p.dc_n)).sum()
    loss.backward()
    grads = dict(x=x.grad.numpy(), h0=h0_all.grad[d].numpy(),
                 c0=c0_all.grad[d].numpy() if lstm else None)
    for ours, theirs in names.items():
        param = getattr(m, theirs + sfx, None)
        grads[ours] = None if param is None else param.grad.numpy()
    outs = [t.detach().numpy() for t in (y, h_n)] + [c_n.detach().numpy() if lstm else None]
    return outs, grads


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_torch_parity(case, backend, dtype):
    p = make_family_problem(case.variant, case.T, case.B, case.I, case.H, case.P, dtype,
                            seed=7, b_ih=case.bias, b_hh=case.bias)
    tol = TORCH_TOL[dtype]
    (ty, th, tc), tgrads = _torch_run(case, p)

    arrays, grad_args = api_args(p)
    y, h_n, c_n, tape = api_forward(p.variant, arrays, backend, lengths=case.lengths,
                                    reverse=case.reverse)
    grads = api_backward(p.variant, tape, grad_args)

    assert_close(y, ty, tol, "y")
    assert_close(h_n, th, tol, "h_n")
    if p.variant.is_lstm:
        assert_close(c_n, tc, tol, "c_n")
    if case.lengths is not None:
        pad = np.arange(case.T)[:, None] >= np.array(case.lengths)
        assert np.all(y[pad] == 0)
        assert np.all(grads["x"][pad] == 0)
    for name, expected in tgrads.items():
        if expected is None:
            assert grads[name] is None, f"grad {name}: expected None"
        else:
            assert grads[name].dtype == dtype
            assert_close(grads[name], expected, tol, f"grad {name}")
    assert grads["peepholes"] is None


def test_torch_reverse_differs_from_forward():
    """Guard: the reverse comparison looks at the reverse half (torch's forward half differs)."""
    case = Case("gru", lengths=(3, 5, 1, 4), reverse=True)
    p = make_family_problem("gru", 5, 4, 3, 5, 3, np.float64, seed=7)
    (ty, th, _), _ = _torch_run(case, p)
    arrays, _ = api_args(p)
    y, h_n, _, _ = api_forward(p.variant, arrays, "numpy", lengths=case.lengths, reverse=False)
    assert not np.allclose(y, ty)
    assert not np.allclose(h_n, th)
