"""fastlstm.torch: drop-in torch.nn.LSTM / GRU / RNN whose forward and backward run in
fastlstm. Outputs and every gradient against torch.nn's over a sampled grid of options and
input forms, gradcheck, a real training loop, replace_rnns, and the errors."""
import copy
import itertools
import random
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastlstm.torch as ftorch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

TOL = {torch.float32: 1e-4, torch.float64: 1e-9}
# torch.nn.LSTM warns that oneDNN has no projection (its own fallback, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

KINDS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
FORMS = ("padded", "packed_unsorted", "packed_sorted", "unbatched")


def rel_err(actual, expected):
    """max |actual - expected| / max |expected| (absolute when expected is all zeros)."""
    a = actual.detach().double()
    e = expected.detach().double()
    assert a.shape == e.shape, (a.shape, e.shape)
    scale = e.abs().max().item() if e.numel() else 0.0
    diff = (a - e).abs().max().item() if e.numel() else 0.0
    return diff / (scale if scale > 0 else 1.0)


def make_pair(kind, dtype, seed=0, **options):
    """(torch.nn module, fastlstm.torch module) of one configuration with the same weights."""
    classes = {"lstm": (nn.LSTM, ftorch.LSTM), "gru": (nn.GRU, ftorch.GRU),
               "rnn_tanh": (nn.RNN, ftorch.RNN), "rnn_relu": (nn.RNN, ftorch.RNN)}
    if kind.startswith("rnn"):
        options["nonlinearity"] = kind[4:]
    ref_cls, fast_cls = classes[kind]
    torch.manual_seed(seed)
    ref = ref_cls(dtype=dtype, **options)
    torch.manual_seed(seed)
    fast = fast_cls(dtype=dtype, **options)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), fast.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    return ref, fast


def run_case(module, case, data):
    """Forward and backward of one case. Returns {name: tensor}: the outputs, and the
    gradients of x, the initial states and every parameter."""
    module.zero_grad(set_to_none=True)
    x = data["x"].clone().requires_grad_()
    form, is_lstm = case["form"], case["kind"] == "lstm"
    hx = None
    states = []
    if case["hx"]:
        states = [s.clone().requires_grad_() for s in data["states"]]
        hx = tuple(states) if is_lstm else states[0]
    if form.startswith("packed"):
        inp = pack_padded_sequence(x, data["lengths"], batch_first=case["batch_first"],
                                   enforce_sorted=form == "packed_sorted")
    else:
        inp = x
    out, hidden = module(inp, hx)
    y = out.data if form.startswith("packed") else out
    hs = list(hidden) if is_lstm else [hidden]
    loss = (y * data["gy"][:y.numel()].reshape(y.shape)).sum()
    for h, g in zip(hs, data["gh"]):
        loss = loss + (h * g[:h.numel()].reshape(h.shape)).sum()
    loss.backward()
    result = {"y": y, **{f"h_n{i}": h for i, h in enumerate(hs)}, "dx": x.grad}
    for i, s in enumerate(states):
        result[f"dhx{i}"] = s.grad
    for name, p in module.named_parameters():
        result[f"d{name}"] = p.grad
    return result


def make_data(case, dtype, gen):
    T, B, I, H, P = 5, 4, 3, 6, 2
    D = 2 if case["bidirectional"] else 1
    L = case["num_layers"]
    H_out = P if case.get("proj_size") else H
    unbatched = case["form"] == "unbatched"
    if unbatched:
        shape = (T, I)
    else:
        shape = (B, T, I) if case["batch_first"] else (T, B, I)
    lengths = None
    if case["form"] == "packed_sorted":
        lengths = torch.tensor([5, 5, 3, 1])
    elif case["form"] == "packed_unsorted":
        lengths = torch.tensor([2, 5, 1, 4])
    sb = () if unbatched else (B,)
    states = [torch.randn((L * D, *sb, H_out), dtype=dtype, generator=gen)]
    if case["kind"] == "lstm":
        states.append(torch.randn((L * D, *sb, H), dtype=dtype, generator=gen))
    big = T * B * D * H
    return {"x": torch.randn(shape, dtype=dtype, generator=gen), "lengths": lengths,
            "states": states, "gy": torch.randn(big, dtype=dtype, generator=gen),
            "gh": [torch.randn(L * D * B * H, dtype=dtype, generator=gen) for _ in states]}


def sampled_cases(n, seed):
    """n cases from the grid of options, every kind and form well represented."""
    grid = []
    for kind, L, bidir, bf, bias, hx, form, proj in itertools.product(
            KINDS, (1, 2, 3), (False, True), (False, True), (True, False), (False, True),
            FORMS, (0, 2)):
        if proj and kind != "lstm":
            continue
        grid.append(dict(kind=kind, num_layers=L, bidirectional=bidir, batch_first=bf,
                         bias=bias, hx=hx, form=form, proj_size=proj))
    rng = random.Random(seed)
    rng.shuffle(grid)
    # make sure every (kind, form) pair comes first, then fill with the rest
    chosen, seen = [], set()
    for case in grid:
        if (case["kind"], case["form"]) not in seen:
            seen.add((case["kind"], case["form"]))
            chosen.append(case)
    chosen += [c for c in grid if c not in chosen][:max(0, n - len(chosen))]
    return chosen


def case_id(case):
    parts = [case["kind"], f"L{case['num_layers']}", case["form"]]
    parts += [name for name in ("bidirectional", "batch_first", "hx") if case[name]]
    if not case["bias"]:
        parts.append("nobias")
    if case["proj_size"]:
        parts.append("proj")
    return "-".join(parts)


CASES = sampled_cases(48, seed=11)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_torch_nn(case, dtype):
    options = dict(input_size=3, hidden_size=6, num_layers=case["num_layers"],
                   bias=case["bias"], batch_first=case["batch_first"],
                   bidirectional=case["bidirectional"])
    if case["proj_size"]:
        options["proj_size"] = case["proj_size"]
    ref, fast = make_pair(case["kind"], dtype, **options)
    data = make_data(case, dtype, torch.Generator().manual_seed(3))
    expected = run_case(ref, case, data)
    got = run_case(fast, case, data)
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name] is not None, name
        assert got[name].dtype == dtype, name
        err = rel_err(got[name], expected[name])
        assert err < TOL[dtype], f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("kind", KINDS)
def test_packed_output_is_a_packed_sequence(kind):
    ref, fast = make_pair(kind, torch.float32, input_size=3, hidden_size=5)
    x = torch.randn(6, 3, 3)
    packed = pack_padded_sequence(x, torch.tensor([3, 6, 2]), enforce_sorted=False)
    out_ref, h_ref = ref(packed)
    out, h = fast(packed)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
    assert torch.equal(out.unsorted_indices, out_ref.unsorted_indices)
    assert rel_err(out.data, out_ref.data) < 1e-5
    for a, b in zip(h if kind == "lstm" else [h], h_ref if kind == "lstm" else [h_ref]):
        assert rel_err(a, b) < 1e-5


def test_same_module_surface_as_torch_nn():
    torch.manual_seed(0)
    ref = nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True)
    torch.manual_seed(0)
    fast = ftorch.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True)
    assert isinstance(fast, nn.LSTM) and isinstance(fast, nn.Module)
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert all(isinstance(p, nn.Parameter) for p in fast.parameters())
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), fast.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)      # torch's init, same RNG draws
    assert repr(fast) == repr(ref)
    fast.load_state_dict(ref.state_dict())
    g = ftorch.GRU(input_size=3, hidden_size=4, num_layers=1, bias=False, batch_first=False,
                   dropout=0.0, bidirectional=False, device="cpu", dtype=torch.float64)
    assert g.weight_ih_l0.dtype == torch.float64 and not hasattr(g, "bias_ih_l0")
    r = ftorch.RNN(3, 4, 2, "relu")
    assert r.nonlinearity == "relu" and r.mode == "RNN_RELU"


def test_inference_keeps_no_graph():
    _, fast = make_pair("lstm", torch.float32, input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        y, (h, c) = fast(x)
    assert y.grad_fn is None and not y.requires_grad
    with torch.inference_mode():
        y2, _ = fast(x)
    assert torch.equal(y, y2)
    fast.requires_grad_(False)
    y3, _ = fast(x)                      # nothing requires grad: no tape either
    assert y3.grad_fn is None and torch.equal(y, y3)
    fast.requires_grad_(True)
    y4, _ = fast(x)
    assert y4.grad_fn is not None and torch.equal(y, y4)


def test_results_own_their_memory_and_inputs_are_untouched():
    _, fast = make_pair("gru", torch.float32, input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    before = x.detach().clone()
    y, h = fast(x)
    y.sum().backward()
    assert torch.equal(x.detach(), before)
    assert y.data_ptr() != x.data_ptr()


def test_strided_input_negated_loss_frozen_parameters_and_copies():
    """A non-contiguous input, a loss whose gradient reaches the module negated and
    broadcast, a frozen parameter; deepcopy and .to(float64) keep the module working."""
    ref, fast = make_pair("lstm", torch.float32, input_size=3, hidden_size=4, num_layers=2)
    base = torch.randn(6, 4, 6)
    grads = []
    for m in (ref, fast):
        m.weight_ih_l0.requires_grad_(False)
        x = base[:, ::2, ::2].detach().requires_grad_()
        assert not x.is_contiguous()
        y, _ = m(x)
        (-y).sum().backward()
        assert m.weight_ih_l0.grad is None
        grads.append([x.grad] + [p.grad for p in m.parameters() if p.requires_grad])
    for a, b in zip(*grads):
        assert rel_err(b, a) < 1e-4
    twin = copy.deepcopy(fast)
    assert type(twin) is ftorch.LSTM and torch.equal(twin(base[:, :2, :3])[0],
                                                     fast(base[:, :2, :3])[0])
    wide = twin.to(torch.float64)
    assert wide(base[:, :2, :3].double())[0].dtype == torch.float64


def test_input_without_grad_skips_its_gradient_only():
    """An input that needs no gradient (the usual training batch): fastlstm skips the first
    layer's input product, and every parameter's gradient is bit for bit the one it gives when
    the input does need a gradient (and within torch.nn's tolerance of torch's)."""
    ref, fast = make_pair("gru", torch.float32, input_size=3, hidden_size=5, num_layers=2,
                          bidirectional=True)
    x = torch.randn(7, 3, 3)
    runs = []
    for m, needs in ((fast, True), (fast, False), (ref, False)):
        m.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_(needs)
        y, h = m(inp)
        (y.square().sum() + h.sum()).backward()
        assert (inp.grad is not None) == needs
        runs.append([p.grad.clone() for p in m.parameters()])
    for with_x, without_x, torch_grad in zip(*runs):
        assert torch.equal(with_x, without_x)
        assert rel_err(without_x, torch_grad) < 1e-4


@pytest.mark.parametrize("kind,options", [
    ("lstm", dict(proj_size=2)),
    ("lstm", dict(num_layers=2, bidirectional=True)),
    ("gru", dict(bidirectional=True)),
    ("gru", dict(num_layers=2, batch_first=True)),
    ("rnn_tanh", dict(bidirectional=True)),
    ("rnn_relu", dict(num_layers=2)),
])
def test_gradcheck(kind, options):
    _, fast = make_pair(kind, torch.float64, input_size=3, hidden_size=3, **options)
    names = [n for n, _ in fast.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in fast.parameters()]
    gen = torch.Generator().manual_seed(1)
    batch_first = options.get("batch_first", False)
    x = torch.randn((2, 4, 3) if batch_first else (4, 2, 3), dtype=torch.float64,
                    generator=gen, requires_grad=True)
    D = 2 if options.get("bidirectional") else 1
    L = options.get("num_layers", 1)
    H_out = options.get("proj_size") or 3
    h0 = torch.randn(L * D, 2, H_out, dtype=torch.float64, generator=gen, requires_grad=True)
    states = [h0]
    if kind == "lstm":
        states.append(torch.randn(L * D, 2, 3, dtype=torch.float64, generator=gen,
                                  requires_grad=True))

    def fn(x, *rest):
        hs, ps = rest[:len(states)], rest[len(states):]
        hx = tuple(hs) if kind == "lstm" else hs[0]
        y, hidden = torch.func.functional_call(fast, dict(zip(names, ps)), (x, hx))
        hidden = hidden if kind == "lstm" else (hidden,)
        return (y, *hidden)

    assert torch.autograd.gradcheck(fn, (x, *states, *params), eps=1e-6, atol=1e-7)


def test_gradcheck_packed_and_dropout():
    """A packed batch, and dropout in training mode (the masks are fastlstm's, drawn from
    torch's seeded generator: the same seed gives the same masks)."""
    _, fast = make_pair("lstm", torch.float64, input_size=2, hidden_size=3, num_layers=2,
                        dropout=0.5)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])

    def fn(x):
        torch.manual_seed(123)
        out, (h, c) = fast(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return out.data, h, c

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-7)
    a, b = fn(x), fn(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    fast.eval()
    y_eval = fn(x)[0]
    fast.train()
    assert not torch.equal(y_eval, a[0])        # dropout acted in training mode


def test_dropout_zero_or_eval_matches_torch():
    ref, fast = make_pair("gru", torch.float64, input_size=3, hidden_size=4, num_layers=3,
                          dropout=0.3)
    ref.eval()
    fast.eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert rel_err(fast(x)[0], ref(x)[0]) < 1e-12


class _Head(nn.Module):
    def __init__(self, rnn_class, **kw):
        super().__init__()
        self.rnn = rnn_class(4, 16, num_layers=2, batch_first=True, **kw)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def test_training_loop_matches_torch_nn():
    """Six Adam steps of LSTM + Linear + MSE (fitting one batch): the same losses and
    parameters as torch.nn."""
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(3, 7, 4, generator=gen), torch.randn(3, 7, 1, generator=gen))] * 6
    results = []
    for cls in (nn.LSTM, ftorch.LSTM):
        torch.manual_seed(0)
        model = _Head(cls)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for x, target in batches:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        results.append((losses, dict(model.named_parameters())))
    (l_ref, p_ref), (l_fast, p_fast) = results
    assert np.allclose(l_fast, l_ref, rtol=1e-5)
    assert l_ref[-1] < l_ref[0]
    for name in p_ref:
        assert rel_err(p_fast[name], p_ref[name]) < 1e-4, name


class _TwoRNNs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.block = nn.Sequential(nn.Identity())
        self.block.gru = nn.GRU(8, 5, bidirectional=True, batch_first=True)
        self.head = nn.Linear(10, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.block.gru(y)
        return self.head(y)


def test_replace_rnns_keeps_parameters_and_optimizer():
    torch.manual_seed(0)
    model = _TwoRNNs()
    reference = copy.deepcopy(model)
    lstm, gru = model.lstm, model.block.gru
    params = list(model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)          # made before the swap
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)

    assert ftorch.replace_rnns(model) is model
    assert type(model.lstm) is ftorch.LSTM and type(model.block.gru) is ftorch.GRU
    assert model.lstm is lstm and model.block.gru is gru          # swapped in place
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert type(reference.lstm) is nn.LSTM

    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(2, 6, 3, generator=gen)
        target = torch.randn(2, 6, 2, generator=gen)
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            nn.functional.mse_loss(m(x), target).backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert rel_err(p.grad, q.grad) < 1e-4, name
        opt.step()
        ref_opt.step()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert rel_err(p, q) < 1e-5, name
    assert not torch.equal(model.lstm.weight_ih_l0, lstm.weight_ih_l0.new_zeros(1)) \
        and model.lstm.weight_ih_l0 is params[0]


def test_replace_rnns_edge_cases():
    rnn = nn.RNN(3, 4)
    assert type(ftorch.replace_rnns(rnn)) is ftorch.RNN            # the model itself
    assert type(ftorch.replace_rnns(rnn)) is ftorch.RNN            # twice: no change

    class MyLSTM(nn.LSTM):
        pass

    seq = nn.Sequential(MyLSTM(3, 4), nn.LSTMCell(3, 4))
    ftorch.replace_rnns(seq)
    assert type(seq[0]) is MyLSTM and type(seq[1]) is nn.LSTMCell
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        ftorch.replace_rnns([nn.LSTM(3, 4)])


def test_state_dict_round_trip_with_torch_nn():
    ref, _ = make_pair("lstm", torch.float32, input_size=3, hidden_size=4, num_layers=2)
    fast = ftorch.LSTM(3, 4, num_layers=2)
    fast.load_state_dict(ref.state_dict())
    back = nn.LSTM(3, 4, num_layers=2)
    back.load_state_dict(fast.state_dict())
    x = torch.randn(4, 2, 3)
    assert rel_err(fast(x)[0], back(x)[0]) < 1e-5


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("make,exc,match", [
    (lambda: ftorch.LSTM(4, 0), ValueError, "hidden_size must be greater than zero"),
    (lambda: ftorch.LSTM(0, 4), ValueError, "input_size must be greater than zero"),
    (lambda: ftorch.LSTM(4, 4, num_layers=0), ValueError, "num_layers must be greater"),
    (lambda: ftorch.LSTM(4, 4, proj_size=4), ValueError, "proj_size has to be smaller"),
    (lambda: ftorch.LSTM(4, 4, dropout=1.5), ValueError, "dropout should be a number"),
    (lambda: ftorch.LSTM(4, 4, bias=1), TypeError, "bias should be of type bool"),
    (lambda: ftorch.LSTM(4.0, 4), TypeError, "input_size should be of type int"),
    (lambda: ftorch.GRU(4, 4, proj_size=2), ValueError, "proj_size argument is only"),
    (lambda: ftorch.RNN(4, 4, nonlinearity="sigmoid"), ValueError, "Unknown nonlinearity"),
])
def test_constructor_errors_are_torch_nn_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_wrong_inputs():
    lstm = ftorch.LSTM(3, 4, num_layers=2)
    gru = ftorch.GRU(3, 4)
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        lstm(torch.randn(2, 3, 4, 3))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        lstm(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match="Expected hidden\\[0\\] size \\(2, 2, 4\\)"):
        lstm(torch.randn(5, 2, 3), (torch.zeros(2, 3, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(RuntimeError, match="Expected hidden\\[1\\] size"):
        lstm(torch.randn(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(RuntimeError, match="For batched 3-D input, hx should also be 3-D"):
        gru(torch.randn(5, 2, 3), torch.zeros(1, 4))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx and cx should"):
        lstm(torch.randn(5, 3), (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        gru(torch.randn(5, 2, 3), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="input dtype \\(torch.float64\\) does not match"):
        lstm(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="expected hx to be None or a tuple"):
        lstm(torch.randn(5, 2, 3), torch.zeros(2, 2, 4))
    with pytest.raises(TypeError, match="expected input to be a torch.Tensor"):
        lstm(np.zeros((5, 2, 3), np.float32))


def test_other_devices_fall_back_or_raise():
    """Meta tensors (any device but the CPU) run torch.nn's own forward by default, and are
    a clear error with torch_fallback = False; so are float16 / bfloat16 tensors."""
    lstm = ftorch.LSTM(3, 4, device="meta")
    y, (h, c) = lstm(torch.empty(5, 2, 3, device="meta"))        # torch.nn's forward
    assert y.device.type == "meta" and y.shape == (5, 2, 4) and h.shape == (1, 2, 4)
    lstm.torch_fallback = False
    with pytest.raises(RuntimeError, match="CPU tensors .* got a tensor on device meta"):
        lstm(torch.empty(5, 2, 3, device="meta"))
    half = ftorch.GRU(3, 4, dtype=torch.bfloat16)
    half.torch_fallback = False
    with pytest.raises(RuntimeError, match="float32 or float64 only, got dtype torch.bfloat16"):
        half(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    half.torch_fallback = True
    ref = nn.GRU(3, 4, dtype=torch.bfloat16)
    ref.load_state_dict(half.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.bfloat16)
    assert torch.equal(half(x)[0], ref(x)[0])                       # torch.nn's own result


def test_double_backward_and_torch_func_are_clear_errors():
    _, fast = make_pair("rnn_tanh", torch.float64, input_size=2, hidden_size=3)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    y, _ = fast(x)
    (gx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gx.sum().backward()
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.grad(lambda t: fast(t)[0].sum())(x.detach())


def test_import_fastlstm_does_not_import_torch():
    code = "import sys, fastlstm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_helper_smoke():
    from fastlstm.bench.torch_train import format, run

    before = torch.get_num_threads()
    r = run(threads=1, repeats=1, batches=2, shape=dict(T=6, B=3, I=4, H=8))
    assert torch.get_num_threads() == before
    assert r["losses_agree"] and r["threads"] == 1 and r["torch_s"] > 0 and r["fastlstm_s"] > 0
    text = format(r)
    assert "fastlstm.torch.LSTM" in text and "agree" in text
