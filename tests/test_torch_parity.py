"""Parity with torch.nn.LSTM: outputs and every gradient (autograd), for every backend, float64
(max relative error 1e-10) and float32 (1e-4); time-major, batch_first and unbatched input; and
a torch state_dict passed straight in with no reordering."""
import numpy as np
import pytest

import fastlstm

from conftest import assert_close, make_problem

torch = pytest.importorskip("torch")

TORCH_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _torch_lstm(p, bias=True):
    """nn.LSTM(I, H) in p's dtype holding p's weights."""
    T, B, I, H = p.dims
    lstm = torch.nn.LSTM(I, H, bias=bias).to(TORCH_DTYPE[p.dtype])
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(p.w_ih))
        lstm.weight_hh_l0.copy_(torch.from_numpy(p.w_hh))
        if bias:
            lstm.bias_ih_l0.copy_(torch.from_numpy(p.b_ih))
            lstm.bias_hh_l0.copy_(torch.from_numpy(p.b_hh))
    return lstm


def _torch_run(p, layout, bias=True):
    """torch forward + autograd of L = sum(y dy) + sum(h_n dh_n) + sum(c_n dc_n).

    Returns numpy (y, h_n, c_n) and {name: grad} in fastlstm's layout for `layout`.
    """
    lstm = _torch_lstm(p, bias)
    if layout == "batch_first":
        lstm.batch_first = True
    fargs, _, (dy, dh_n, dc_n) = p.call_args(layout)
    x = torch.tensor(fargs[0], requires_grad=True)
    h0 = torch.tensor(fargs[5], requires_grad=True)
    c0 = torch.tensor(fargs[6], requires_grad=True)
    # torch's states carry a layer axis: (1, B, H), or (1, H) unbatched
    y, (h_n, c_n) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    h_n, c_n = h_n.squeeze(0), c_n.squeeze(0)
    loss = ((y * torch.from_numpy(dy)).sum() + (h_n * torch.from_numpy(dh_n)).sum()
            + (c_n * torch.from_numpy(dc_n)).sum())
    loss.backward()
    grads = dict(x=x.grad, h0=h0.grad, c0=c0.grad, w_ih=lstm.weight_ih_l0.grad,
                 w_hh=lstm.weight_hh_l0.grad)
    if bias:
        grads.update(b_ih=lstm.bias_ih_l0.grad, b_hh=lstm.bias_hh_l0.grad)
    outs = tuple(t.detach().numpy() for t in (y, h_n, c_n))
    return outs, {k: v.numpy() for k, v in grads.items()}


def _check_parity(p, backend, layout, bias=True):
    if not bias:
        p = p.without("b_ih", "b_hh")
    (ty, th, tc), tgrads = _torch_run(p, layout, bias)
    fargs, kwargs, grads_in = p.call_args(layout)
    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, *grads_in)
    tol = TORCH_TOL[p.dtype]
    assert_close(y, ty, tol, "y")
    assert_close(h_n, th, tol, "h_n")
    assert_close(c_n, tc, tol, "c_n")
    for name, expected in tgrads.items():
        assert_close(getattr(g, name), expected, tol, f"grad {name}")
    if not bias:
        assert g.b_ih is None and g.b_hh is None


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (5, 3, 4, 6), (7, 2, 9, 13), (20, 64, 32, 48)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
def test_matches_torch(backend, dtype, shape):
    _check_parity(make_problem(*shape, dtype=dtype, seed=70), backend, "time_major")


def test_matches_torch_batch_first(backend, dtype):
    _check_parity(make_problem(6, 4, 3, 5, dtype=dtype, seed=71), backend, "batch_first")


def test_matches_torch_unbatched(backend, dtype):
    _check_parity(make_problem(6, 1, 3, 5, dtype=dtype, seed=72), backend, "unbatched")


def test_matches_torch_without_bias(backend, dtype):
    _check_parity(make_problem(6, 3, 4, 5, dtype=dtype, seed=73), backend, "time_major",
                  bias=False)


def test_matches_torch_default_state(backend, dtype):
    """No h0, c0 on either side: both start from zeros."""
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=74)
    lstm = _torch_lstm(p)
    with torch.no_grad():
        ty, (th, tc) = lstm(torch.from_numpy(p.x))
    y, (h_n, c_n) = fastlstm.forward(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, backend=backend)
    tol = TORCH_TOL[p.dtype]
    assert_close(y, ty.numpy(), tol, "y")
    assert_close(h_n, th[0].numpy(), tol, "h_n")
    assert_close(c_n, tc[0].numpy(), tol, "c_n")


@pytest.mark.parametrize("batch_first", [False, True])
def test_state_dict_loads_without_reordering(backend, dtype, batch_first):
    """A freshly initialised nn.LSTM's state_dict arrays go straight into fastlstm.forward."""
    torch.manual_seed(0)
    I, H, T, B = 7, 6, 5, 3
    lstm = torch.nn.LSTM(I, H, batch_first=batch_first).to(TORCH_DTYPE[np.dtype(dtype)])
    sd = {k: v.numpy() for k, v in lstm.state_dict().items()}
    assert set(sd) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    rng = np.random.default_rng(75)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    with torch.no_grad():
        ty, (th, tc) = lstm(torch.from_numpy(x), (torch.from_numpy(h0)[None],
                                                   torch.from_numpy(c0)[None]))
    y, (h_n, c_n) = fastlstm.forward(x, sd["weight_ih_l0"], sd["weight_hh_l0"],
                                     sd["bias_ih_l0"], sd["bias_hh_l0"], h0, c0,
                                     batch_first=batch_first, backend=backend)
    tol = TORCH_TOL[np.dtype(dtype)]
    assert_close(y, ty.numpy(), tol, "y")
    assert_close(h_n, th[0].numpy(), tol, "h_n")
    assert_close(c_n, tc[0].numpy(), tol, "c_n")
