"""The training pieces on their own (SPEC.md section 9): Linear, the losses, SGD and Adam,
gradient clipping and the truncated-BPTT windows.

Each piece is checked against its formula written out here, against finite differences, and
against PyTorch on the same numbers where torch is installed (those tests skip without it).
"""
import math
from collections import OrderedDict

import numpy as np
import pytest
from conftest import assert_close, numeric_grad

import fastlstm
from fastlstm.training.clip import clip_grad_norm
from fastlstm.training.linear import Linear
from fastlstm.training.losses import cross_entropy, mse_loss
from fastlstm.training.optim import SGD, Adam
from fastlstm.training.tbptt import detach_state, tbptt_windows, window_lengths

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


# ============================================================================================
# Linear


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4), (4,)])
def test_linear_forward_backward_formula(dtype, shape):
    rng = np.random.default_rng(0)
    lin = Linear(4, 3, dtype=np.dtype(dtype).name, seed=1)
    x = rng.standard_normal(shape).astype(dtype)
    y, tape = lin.forward(x, return_tape=True)
    W, b = lin.weight.astype(np.float64), lin.bias.astype(np.float64)
    x64 = x.astype(np.float64)
    expected = np.einsum("...i,oi->...o", x64, W) + b
    assert y.dtype == dtype and y.shape == shape[:-1] + (3,)
    assert_close(y, expected, TOL[np.dtype(dtype)] * 10, "y")
    assert_close(lin(x), y, 0, "__call__ equals forward")

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, grads = lin.backward(tape, dy)
    assert list(grads) == ["weight", "bias"]
    dy64 = dy.astype(np.float64)
    assert_close(dx, np.einsum("...o,oi->...i", dy64, W), TOL[np.dtype(dtype)] * 10, "dx")
    assert_close(grads["weight"], dy64.reshape(-1, 3).T @ x64.reshape(-1, 4),
                 TOL[np.dtype(dtype)] * 10, "dW")
    assert_close(grads["bias"], dy64.reshape(-1, 3).sum(0), TOL[np.dtype(dtype)] * 10, "db")
    assert all(g.dtype == dtype for g in grads.values())


def test_linear_without_bias():
    lin = Linear(4, 2, bias=False, dtype="float64", seed=0)
    assert lin.bias is None and list(lin.state_dict()) == ["weight"]
    x = np.random.default_rng(1).standard_normal((3, 4))
    y, tape = lin.forward(x, return_tape=True)
    assert_close(y, x @ lin.weight.T, 1e-14, "y")
    _, grads = lin.backward(tape, np.ones_like(y))
    assert list(grads) == ["weight"]


def test_linear_finite_differences():
    rng = np.random.default_rng(2)
    lin = Linear(5, 3, dtype="float64", seed=3)
    x = rng.standard_normal((2, 4, 5))
    R = rng.standard_normal((2, 4, 3))

    def loss():
        return float(np.sum(np.tanh(lin(x)) * R))     # a non-linear loss of y

    y, tape = lin.forward(x, return_tape=True)
    dx, grads = lin.backward(tape, (1 - np.tanh(y) ** 2) * R)
    assert_close(dx, numeric_grad(loss, x), 1e-7, "dx")
    for key, p in lin.named_parameters().items():
        assert_close(grads[key], numeric_grad(loss, p), 1e-7, key)


def test_linear_init_and_parameters():
    a, b, c = (Linear(16, 8, seed=s) for s in (0, 0, 1))
    assert_close(a.weight, b.weight, 0, "same seed, same weights")
    assert not np.array_equal(a.weight, c.weight)
    for lin in (a, c):
        assert lin.weight.shape == (8, 16) and lin.bias.shape == (8,)
        assert lin.weight.dtype == np.float32
        assert np.abs(lin.weight).max() <= 1 / 4 and np.abs(lin.bias).max() <= 1 / 4
        assert np.abs(lin.weight).max() > 0.2          # spread over U(-1/4, 1/4)
    # named_parameters gives the module's own arrays: changing one changes the output
    params = a.named_parameters()
    assert params["weight"] is a.weight and a.parameters()[1] is a.bias
    params["bias"][:] = 7
    assert_close(a(np.zeros((1, 16), np.float32)), np.full((1, 8), 7.0), 0, "bias in use")
    # state_dict gives copies
    sd = a.state_dict()
    sd["weight"][:] = 0
    assert np.abs(a.weight).max() > 0
    assert a.train() is a and a.eval() is a and a.training is False


def test_linear_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tl = torch.nn.Linear(6, 4).to(tdtype)
    lin = Linear(6, 4, dtype=dtype.name).load_state_dict(tl.state_dict())
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 6)).astype(dtype)
    dy = rng.standard_normal((3, 5, 4)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.tensor(dy))
    y, tape = lin.forward(x, return_tape=True)
    dx, grads = lin.backward(tape, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(y, yt.detach().numpy(), tol, "y")
    assert_close(dx, xt.grad.numpy(), tol, "dx")
    assert_close(grads["weight"], tl.weight.grad.numpy(), tol, "dW")
    assert_close(grads["bias"], tl.bias.grad.numpy(), tol, "db")


def test_linear_errors():
    lin = Linear(4, 3, dtype="float64")
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        Linear(4, 3, dtype="int32")
    with pytest.raises(TypeError, match="x: dtype float32"):
        lin(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., in_features\)"):
        lin(np.zeros((2, 5)))
    y, tape = lin.forward(np.zeros((2, 4)), return_tape=True)
    with pytest.raises(ValueError, match="dy: expected shape"):
        lin.backward(tape, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="tape"):
        lin.backward(None, y)
    with pytest.raises(KeyError, match="missing key.*'bias'"):
        lin.load_state_dict({"weight": np.zeros((3, 4))})
    with pytest.raises(KeyError, match="unexpected key.*'extra'"):
        lin.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(3),
                             "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"state_dict\['bias'\]: expected shape \(3,\)"):
        lin.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(4)})
    with pytest.raises(TypeError, match=r"state_dict\['weight'\]"):
        lin.load_state_dict({"weight": np.zeros((3, 4), int), "bias": np.zeros(3)})
    before = lin.weight.copy()
    with pytest.raises(ValueError):
        lin.load_state_dict({"weight": np.ones((3, 4)), "bias": np.zeros(5)})
    assert_close(lin.weight, before, 0, "unchanged after a failed load")


# ============================================================================================
# losses


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_loss_formulas(dtype):
    rng = np.random.default_rng(5)
    pred = rng.standard_normal((4, 3, 2)).astype(dtype)
    target = rng.standard_normal((4, 3, 2)).astype(dtype)
    e = pred.astype(np.float64) - target
    tol = TOL[np.dtype(dtype)] * 10
    for reduction, value, grad in (("mean", np.mean(e ** 2), 2 * e / e.size),
                                   ("sum", np.sum(e ** 2), 2 * e),
                                   ("half_sum", 0.5 * np.sum(e ** 2), e)):
        loss, dpred = mse_loss(pred, target, reduction)
        assert isinstance(loss, float)
        assert dpred.dtype == dtype and dpred.shape == pred.shape
        assert abs(loss - value) <= tol * abs(value), reduction
        assert_close(dpred, grad, tol, f"dpred {reduction}")


def test_mse_loss_finite_differences_and_lengths():
    rng = np.random.default_rng(6)
    pred = rng.standard_normal((5, 3, 2))
    target = rng.standard_normal((5, 3, 2))
    lengths = np.array([5, 0, 2])
    for kw in ({}, {"lengths": lengths}):
        for reduction in ("mean", "sum", "half_sum"):
            loss, dpred = mse_loss(pred, target, reduction, **kw)
            num = numeric_grad(lambda: mse_loss(pred, target, reduction, **kw)[0], pred)
            assert_close(dpred, num, 1e-7, f"{reduction} {kw}")
    # the mask by hand: only t < lengths[b] counts, the mean is over those elements
    mask = np.arange(5)[:, None] < lengths[None, :]                  # (T, B)
    e = (pred - target)[mask]                                         # (7, 2)
    loss, dpred = mse_loss(pred, target, lengths=lengths)
    assert abs(loss - np.mean(e ** 2)) < 1e-14 and e.size == 14
    assert np.all(dpred[~mask] == 0)
    # batch_first: the same numbers transposed
    loss_bf, dpred_bf = mse_loss(pred.transpose(1, 0, 2), target.transpose(1, 0, 2),
                                 lengths=lengths, batch_first=True)
    assert abs(loss_bf - loss) < 1e-14
    assert_close(dpred_bf, dpred.transpose(1, 0, 2), 0, "batch_first")


def test_mse_loss_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    pred = rng.standard_normal((6, 4))
    target = rng.standard_normal((6, 4))
    for reduction in ("mean", "sum"):
        pt = torch.tensor(pred, requires_grad=True)
        lt = torch.nn.functional.mse_loss(pt, torch.tensor(target), reduction=reduction)
        lt.backward()
        loss, dpred = mse_loss(pred, target, reduction)
        assert abs(loss - lt.item()) <= 1e-12 * abs(lt.item())
        assert_close(dpred, pt.grad.numpy(), 1e-12, reduction)


def _ce_by_hand(logits, labels):
    """−log softmax(z)[label] per row, in float64, the naive way (fine for small logits)."""
    z = logits.astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    onehot = np.eye(z.shape[-1])[labels]
    return -np.log(np.sum(p * onehot, -1)), p - onehot


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_formula(dtype):
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((7, 5)).astype(dtype)
    labels = rng.integers(0, 5, size=7)
    per_row, grad = _ce_by_hand(logits, labels)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    loss, d = cross_entropy(logits, labels)
    assert isinstance(loss, float) and d.dtype == dtype
    assert abs(loss - per_row.mean()) <= tol * per_row.mean()
    assert_close(d, grad / 7, tol, "mean")
    loss, d = cross_entropy(logits, labels, reduction="sum")
    assert abs(loss - per_row.sum()) <= tol * per_row.sum()
    assert_close(d, grad, tol, "sum")


def test_cross_entropy_large_logits_are_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 800.0]])
    loss, d = cross_entropy(logits, np.array([0, 2]))
    # row 0: p = (1, 0, 0), loss 0; row 1: p = (0, 1/2, 1/2), loss log 2
    assert abs(loss - math.log(2) / 2) < 1e-12
    assert_close(d, np.array([[0, 0, 0], [0, 0.5, -0.5]]) / 2, 1e-12, "dlogits")
    loss32, _ = cross_entropy(logits.astype(np.float32) * 50, np.array([0, 2]))
    assert math.isfinite(loss32)


def test_cross_entropy_finite_differences_with_lengths():
    rng = np.random.default_rng(9)
    T, B, C = 4, 3, 5
    logits = rng.standard_normal((T, B, C))
    labels = rng.integers(0, C, size=(T, B))
    lengths = np.array([4, 1, 0])
    labels[2:, 1] = -1                       # labels past a row's end are never looked at
    for reduction in ("mean", "sum"):
        loss, d = cross_entropy(logits, labels, lengths, reduction)
        num = numeric_grad(lambda: cross_entropy(logits, labels, lengths, reduction)[0], logits)
        assert_close(d, num, 1e-7, reduction)
    # by hand: only the 5 valid steps count
    mask = np.arange(T)[:, None] < lengths
    per_row, grad = _ce_by_hand(logits[mask], labels[mask])
    loss, d = cross_entropy(logits, labels, lengths)
    assert abs(loss - per_row.mean()) < 1e-12 and mask.sum() == 5
    assert np.all(d[~mask] == 0)
    assert_close(d[mask], grad / 5, 1e-12, "valid steps")
    # batch_first
    loss_bf, d_bf = cross_entropy(logits.transpose(1, 0, 2), labels.T, lengths, batch_first=True)
    assert abs(loss_bf - loss) < 1e-14
    assert_close(d_bf, d.transpose(1, 0, 2), 0, "batch_first")
    # nothing counts: 0 and a zero gradient
    loss0, d0 = cross_entropy(logits, labels, [0, 0, 0])
    assert loss0 == 0.0 and not d0.any()


def test_cross_entropy_matches_torch_with_ignore_mask():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(10)
    T, B, C = 6, 4, 7
    logits = rng.standard_normal((T, B, C)) * 3
    labels = rng.integers(0, C, size=(T, B))
    lengths = np.array([6, 2, 5, 1])
    masked = labels.copy()
    masked[np.arange(T)[:, None] >= lengths] = -100      # torch's ignore_index
    for reduction in ("mean", "sum"):
        zt = torch.tensor(logits, requires_grad=True)
        lt = F.cross_entropy(zt.reshape(-1, C), torch.tensor(masked).reshape(-1),
                             ignore_index=-100, reduction=reduction)
        lt.backward()
        loss, d = cross_entropy(logits, labels, lengths, reduction)
        assert abs(loss - lt.item()) <= 1e-12 * abs(lt.item())
        assert_close(d, zt.grad.numpy(), 1e-12, reduction)
        # the same through our ignore_index
        loss_i, d_i = cross_entropy(logits, masked, reduction=reduction, ignore_index=-100)
        assert abs(loss_i - loss) < 1e-12
        assert_close(d_i, d, 1e-15, "ignore_index")
    # (N, C) float32
    z32 = rng.standard_normal((9, C)).astype(np.float32)
    lab = rng.integers(0, C, size=9)
    zt = torch.tensor(z32, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(lab))
    lt.backward()
    loss, d = cross_entropy(z32, lab)
    assert abs(loss - lt.item()) <= 1e-6 * abs(lt.item())
    assert_close(d, zt.grad.numpy(), 1e-5, "float32")


def test_loss_errors():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="target: expected the shape of pred"):
        mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="reduction"):
        mse_loss(z, z, "avg")
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(z, [0, 1, 2], reduction="half_sum")
    with pytest.raises(TypeError, match="pred"):
        mse_loss(np.zeros(3, int), np.zeros(3))
    with pytest.raises(ValueError,
                       match=r"labels: each label must be in \[0, C\) = \[0, 4\), got 4"):
        cross_entropy(z, [0, 4, 1])
    with pytest.raises(ValueError, match="labels: each label must be in .*got -1"):
        cross_entropy(z, [0, -1, 1])
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        cross_entropy(z, [0, 1])
    with pytest.raises(TypeError, match="labels: expected integer"):
        cross_entropy(z, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="logits: expected shape"):
        cross_entropy(np.zeros(4), [0])
    with pytest.raises(ValueError, match="lengths: only for per-step logits"):
        cross_entropy(z, [0, 1, 2], lengths=[1, 1, 1])
    with pytest.raises(ValueError, match="lengths"):
        cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 3), int), lengths=[1, 3, 1])
    with pytest.raises(ValueError, match="lengths"):
        cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 3), int), lengths=[1, 1])


# ============================================================================================
# optimizers: the same numbers through ours and torch.optim


def _param_modules(dtype="float64"):
    """Two modules (a Linear and a small LSTM) with their parameters."""
    return [Linear(3, 2, dtype=dtype, seed=0),
            fastlstm.LSTM(2, 2, dtype=dtype, seed=1, backend="numpy")]


def _gradient_sequence(modules, steps, seed=11):
    """steps lists of gradient dicts (one per module), fixed random numbers."""
    rng = np.random.default_rng(seed)
    return [[OrderedDict((k, rng.standard_normal(p.shape).astype(p.dtype))
                         for k, p in m.named_parameters().items()) for m in modules]
            for _ in range(steps)]


def _run_against_torch(ours_cls, torch_cls, kwargs, steps=6):
    torch = pytest.importorskip("torch")
    modules = _param_modules()
    tparams = [torch.tensor(p.copy(), requires_grad=True)
               for m in modules for p in m.named_parameters().values()]
    opt = ours_cls(modules, **kwargs)
    topt = torch_cls(tparams, **kwargs)
    for grads in _gradient_sequence(modules, steps):
        opt.step(grads)
        for tp, g in zip(tparams, [g for gd in grads for g in gd.values()]):
            tp.grad = torch.tensor(g)
        topt.step()
    ours = [p for m in modules for p in m.named_parameters().values()]
    for i, (p, tp) in enumerate(zip(ours, tparams)):
        assert_close(p, tp.detach().numpy(), 1e-12, f"parameter {i}")
    return modules


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1),
], ids=["plain", "momentum", "nesterov", "dampening+wd", "nesterov+wd"])
def test_sgd_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    _run_against_torch(SGD, torch.optim.SGD, kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.05),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.005, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, amsgrad=True),
], ids=["default", "wd", "amsgrad", "all"])
def test_adam_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    _run_against_torch(Adam, torch.optim.Adam, kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [
    dict(lr=0.01),
    dict(lr=0.02, weight_decay=0.05, amsgrad=True),
    dict(lr=0.005, betas=(0.8, 0.99), eps=1e-6, amsgrad=True),
], ids=["default", "wd+amsgrad", "betas+amsgrad"])
def test_adam_fused_kernel_gives_the_numpy_bits(kwargs, dtype):
    """Adam's fused Numba update (numba_optim.adam_update) against its NumPy expressions
    (Adam._update_numpy), step by step: the same parameters and state, bit for bit, with
    a NaN and an inf among the gradients at one step; a non-contiguous parameter takes the
    NumPy path."""
    from fastlstm.training import optim
    if optim._fused_kernels() is None:
        pytest.skip("Numba does not load here: Adam runs its NumPy expressions only")
    fused_modules, numpy_modules = _param_modules(dtype), _param_modules(dtype)
    fused, plain = Adam(fused_modules, **kwargs), Adam(numpy_modules, **kwargs)
    plain._update = plain._update_numpy
    steps = _gradient_sequence(fused_modules, 5)
    steps[3][1]["weight_hh_l0"][0, 0] = np.nan
    steps[3][1]["weight_hh_l0"][1, 1] = np.inf
    for grads in steps:
        fused.step(grads)
        with np.errstate(invalid="ignore", over="ignore"):   # NumPy warns of inf - inf
            plain.step(grads)
        for mf, mp in zip(fused_modules, numpy_modules):
            for (k, a), b in zip(mf.named_parameters().items(),
                                 mp.named_parameters().values()):
                np.testing.assert_array_equal(a, b, err_msg=k)
    for key, state in plain.state.items():
        for name, value in state.items():
            np.testing.assert_array_equal(fused.state[key][name], value, err_msg=name)
    # a strided parameter: the NumPy expressions, the same numbers as a contiguous one
    p = np.arange(12.0, dtype=dtype).reshape(3, 4)
    q = p[:, ::2].copy()
    state_strided, state_plain = {}, {}
    g = np.full((3, 2), 0.5, dtype)
    fused._update(p[:, ::2], g, state_strided)
    plain._update_numpy(q, g, state_plain)
    np.testing.assert_array_equal(p[:, ::2], q)


def test_clip_sum_of_squares_kernel():
    """The 2-norm's fused sum of squares against float64 NumPy, contiguous or not."""
    from fastlstm.training import clip
    rng = np.random.default_rng(4)
    for a in (rng.standard_normal(1000).astype(np.float32),
              rng.standard_normal((30, 20))[:, ::3], np.zeros(0, np.float32)):
        expected = float(np.sum(a.astype(np.float64) ** 2))
        assert abs(clip._sum_of_squares(a) - expected) <= 1e-12 * max(expected, 1.0)


def test_sgd_is_plain_gradient_descent_and_float32():
    lin = Linear(3, 2, dtype="float32", seed=0)
    before = lin.state_dict()
    g = OrderedDict(weight=np.ones((2, 3), np.float32), bias=np.full(2, 2.0, np.float32))
    SGD(lin, lr=0.1).step(g)
    assert lin.weight.dtype == np.float32
    assert_close(lin.weight, before["weight"] - 0.1, 1e-7, "w - lr g")
    assert_close(lin.bias, before["bias"] - 0.2, 1e-7, "b - lr g")


def test_adam_first_step_moves_each_parameter_by_lr():
    # at step 1, m/(sqrt(v)) = sign(g) after bias correction: every entry moves by ~lr
    lin = Linear(3, 2, dtype="float64", seed=0)
    before = lin.state_dict()
    g = OrderedDict(weight=np.arange(6.0).reshape(2, 3) - 2.5, bias=np.array([3.0, -1e-3]))
    Adam(lin, lr=0.01).step(g)
    for k in before:
        assert_close(before[k] - lin.named_parameters()[k], 0.01 * np.sign(g[k]), 1e-5, k)


def test_optimizer_lr_none_grads_state_dict_and_reloaded_modules():
    modules = _param_modules()
    grads = _gradient_sequence(modules, 4)
    opt = Adam(modules, lr=0.01, amsgrad=True)
    opt.step(grads[0])
    opt.step(grads[1])
    # state_dict round trip: a second optimizer continues exactly like the first
    clone_modules = _param_modules()
    for m, c in zip(modules, clone_modules):
        c.load_state_dict(m.state_dict())
    opt2 = Adam(clone_modules).load_state_dict(opt.state_dict())
    assert opt2.lr == 0.01 and opt2.amsgrad is True
    for gs in grads[2:]:
        opt.step(gs)
        opt2.step(gs)
    for m, c in zip(modules, clone_modules):
        for k, p in m.named_parameters().items():
            assert_close(c.named_parameters()[k], p, 0, f"reloaded optimizer {k}")
    # lr is settable; lr = 0 freezes everything
    opt.lr = 0.0
    frozen = [m.state_dict() for m in modules]
    opt.step(grads[0])
    for m, f in zip(modules, frozen):
        for k, p in m.named_parameters().items():
            assert_close(p, f[k], 0, f"lr=0 {k}")
    # a None gradient leaves that parameter alone
    opt.lr = 0.1
    g = [OrderedDict((k, None if k == "weight" else v) for k, v in grads[0][0].items()),
         grads[0][1]]
    w_before = modules[0].weight.copy()
    b_before = modules[0].bias.copy()
    opt.step(g)
    assert_close(modules[0].weight, w_before, 0, "None gradient")
    assert not np.allclose(modules[0].bias, b_before)
    # the optimizer updates the arrays the module holds now, after a load_state_dict
    sgd = SGD(modules[0], lr=1.0)
    modules[0].load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2)})
    sgd.step({"weight": np.ones((2, 3)), "bias": np.ones(2)})
    assert_close(modules[0].weight, -np.ones((2, 3)), 0, "after load_state_dict")


def test_optimizer_errors():
    modules = _param_modules()
    grads = _gradient_sequence(modules, 1)[0]
    opt = SGD(modules, lr=0.1)
    before = [m.state_dict() for m in modules]
    with pytest.raises(KeyError, match=r"grads\[1\]: missing key\(s\) \['weight_ih_l0'\]"):
        opt.step([grads[0], {k: v for k, v in grads[1].items() if k != "weight_ih_l0"}])
    with pytest.raises(KeyError, match=r"grads\[0\]: unexpected key\(s\) \['w'\]"):
        opt.step([dict(grads[0], w=np.zeros(1)), grads[1]])
    with pytest.raises(ValueError, match=r"grads\[0\]\['bias'\]: expected shape \(2,\)"):
        opt.step([dict(grads[0], bias=np.zeros(3)), grads[1]])
    with pytest.raises(ValueError, match="grads: expected 2 dicts"):
        opt.step([grads[0]])
    with pytest.raises(ValueError, match="grads: expected a list of 2 dicts"):
        opt.step(grads[0])
    with pytest.raises(TypeError, match=r"grads\[0\]\['weight'\]: expected a float"):
        opt.step([dict(grads[0], weight=np.zeros((2, 3), int)), grads[1]])
    # nothing moved: every check runs before any update
    for m, b in zip(modules, before):
        for k, p in m.named_parameters().items():
            assert_close(p, b[k], 0, k)
    with pytest.raises(TypeError, match=r"modules\[0\]"):
        SGD([object()], lr=0.1)
    from fastlstm.training.structures import ManyToOne
    model = ManyToOne(fastlstm.LSTM(2, 2, seed=0), Linear(2, 2, seed=0))
    with pytest.raises(TypeError, match="pass model.modules"):
        Adam(model)
    with pytest.raises(ValueError, match="lr"):
        SGD(modules, lr=-1)
    with pytest.raises(ValueError, match="nesterov: needs momentum > 0"):
        SGD(modules, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        Adam(modules, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        opt.lr = float("nan")


# ============================================================================================
# gradient clipping


def _grad_dicts(scale, seed=12):
    rng = np.random.default_rng(seed)
    return [OrderedDict(a=scale * rng.standard_normal((3, 4)), b=scale * rng.standard_normal(4)),
            OrderedDict(c=scale * rng.standard_normal((2, 2)))]


@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_formula(scale, norm_type):
    grads = _grad_dicts(scale)
    flat = np.concatenate([g.ravel() for d in grads for g in d.values()])
    norm = np.linalg.norm(flat, ord=norm_type)
    original = [{k: v.copy() for k, v in d.items()} for d in grads]
    total = clip_grad_norm(grads, 1.5, norm_type=norm_type)
    assert isinstance(total, float) and abs(total - norm) <= 1e-12 * norm
    factor = 1.5 / (norm + 1e-6) if norm + 1e-6 > 1.5 else 1.0
    for d, o in zip(grads, original):
        for k in d:
            assert_close(d[k], o[k] * factor, 1e-15, k)
    if norm > 1.5:
        clipped = np.concatenate([g.ravel() for d in grads for g in d.values()])
        assert np.linalg.norm(clipped, ord=norm_type) < 1.5


@pytest.mark.parametrize("scale", [0.05, 3.0])
def test_clip_grad_norm_matches_torch(scale):
    torch = pytest.importorskip("torch")
    for norm_type in (2.0, math.inf):
        grads = _grad_dicts(scale)
        tparams = []
        for d in grads:
            for g in d.values():
                p = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
                p.grad = torch.tensor(g.copy())
                tparams.append(p)
        t_total = torch.nn.utils.clip_grad_norm_(tparams, 1.0, norm_type=norm_type)
        total = clip_grad_norm(grads, 1.0, norm_type=norm_type)
        assert abs(total - t_total.item()) <= 1e-12 * total
        ours = [g for d in grads for g in d.values()]
        for g, p in zip(ours, tparams):
            assert_close(g, p.grad.numpy(), 1e-14, "clipped gradient")


def test_clip_grad_norm_single_dict_float32_and_errors():
    g = OrderedDict(w=np.full((2, 2), 3.0, np.float32), skip=None)   # norm 6
    total = clip_grad_norm(g, 3.0)
    assert abs(total - 6.0) < 1e-6 and g["w"].dtype == np.float32
    assert_close(g["w"], np.full((2, 2), 1.5), 1e-6, "halved")
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm(g, 1.0, norm_type=0)
    with pytest.raises(TypeError, match="grads"):
        clip_grad_norm(np.zeros(3), 1.0)
    with pytest.raises(TypeError, match=r"grads\[0\]\['w'\]"):
        clip_grad_norm({"w": [1.0, 2.0]}, 1.0)


# ============================================================================================
# truncated BPTT helpers


def test_tbptt_windows_and_lengths():
    assert tbptt_windows(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert tbptt_windows(8, 4) == [slice(0, 4), slice(4, 8)]
    assert tbptt_windows(3, 5) == [slice(0, 3)]
    assert tbptt_windows(0, 2) == []
    covered = np.concatenate([np.arange(17)[w] for w in tbptt_windows(17, 3)])
    assert np.array_equal(covered, np.arange(17))
    lengths = np.array([10, 0, 5, 8, 9])
    got = [window_lengths(lengths, w).tolist() for w in tbptt_windows(10, 4)]
    assert got == [[4, 0, 4, 4, 4], [4, 0, 1, 4, 4], [2, 0, 0, 0, 1]]
    assert window_lengths(None, slice(0, 4)) is None
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        tbptt_windows(10, 0)
    with pytest.raises(ValueError, match="T: expected"):
        tbptt_windows(-1, 2)


def test_detach_state_copies():
    h, c = np.ones((1, 2, 3)), np.zeros((1, 2, 3))
    h2, c2 = detach_state((h, c))
    assert not np.shares_memory(h, h2) and not np.shares_memory(c, c2)
    assert_close(h2, h, 0, "h")
    h2[:] = 5
    assert h[0, 0, 0] == 1
    g = detach_state(h)
    assert isinstance(g, np.ndarray) and not np.shares_memory(g, h)
    assert detach_state(None) is None
    assert detach_state((h, None))[1] is None
