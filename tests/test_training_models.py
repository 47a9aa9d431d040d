"""The ready structures (ManyToMany, ManyToOne, OneToMany), truncated BPTT over a layer, the
SPEC's worked example, and a short training run (SPEC.md sections 6, 7 and 9).

Forward passes are checked against a computation by hand from the layer and the head,
gradients against finite differences (float64, numpy backend) and every backend against numpy.
"""
import numpy as np
import pytest
from conftest import assert_close, numeric_grad, require_backend

import fastlstm
from fastlstm.training.linear import Linear
from fastlstm.training.losses import cross_entropy, mse_loss
from fastlstm.training.optim import SGD, Adam
from fastlstm.training.structures import ManyToMany, ManyToOne, OneToMany
from fastlstm.training.tbptt import detach_state, run_windows, tbptt_windows, window_lengths

LAYERS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}


def make_rnn(kind, I, H, backend="numpy", dtype="float64", seed=0, **options):
    return LAYERS[kind](I, H, dtype=dtype, seed=seed, backend=backend, **options)


def check_finite_differences(model, run, x, grads, dx, per_array=10, seed=0):
    """run() -> the scalar loss. Compares grads {"rnn": ..., "head": ...} and dx with central
    differences at up to `per_array` random entries of every parameter and of x."""
    rng = np.random.default_rng(seed)
    arrays = [(f"{part}.{k}", p, grads[part][k]) for part, module in
              (("rnn", model.rnn), ("head", model.head))
              for k, p in module.named_parameters().items()]
    arrays.append(("x", x, dx))
    for name, arr, g in arrays:
        assert g.shape == arr.shape, name
        entries = rng.choice(arr.size, size=min(per_array, arr.size), replace=False)
        num = numeric_grad(run, arr, entries=entries).reshape(-1)[entries]
        assert_close(g.reshape(-1)[entries], num, 1e-6, name)


# ============================================================================================
# forward against a hand computation


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_many_to_many_forward_is_head_of_each_step(kind, batch_first):
    rnn = make_rnn(kind, 3, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    head = Linear(8, 5, dtype="float64", seed=1)
    model = ManyToMany(rnn, head)
    rng = np.random.default_rng(0)
    T, B = 6, 3
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    lengths = [6, 2, 4]
    out = model(x, lengths=lengths)
    y, _ = rnn(x, lengths=lengths)
    assert out.shape == ((B, T, 5) if batch_first else (T, B, 5))
    expected = np.einsum("...h,ch->...c", y, head.weight) + head.bias
    assert_close(out, expected, 1e-13, "out")
    # steps past a row's end: y is 0 there, so out is the head's bias
    pad = out[1, 2:] if batch_first else out[2:, 1]
    assert_close(pad, np.broadcast_to(head.bias, pad.shape), 0, "padded steps")


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_many_to_one_uses_each_rows_last_valid_step(kind):
    """Bidirectional 2-layer: the feature is the forward direction's output at the row's last
    valid step and the backward direction's output at step 0; and each row alone, cut to its
    own length, gives the same output."""
    H, T, B = 4, 7, 4
    rnn = make_rnn(kind, 3, H, num_layers=2, bidirectional=True)
    head = Linear(2 * H, 3, dtype="float64", seed=2)
    model = ManyToOne(rnn, head)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([7, 3, 1, 5])
    out = model(x, lengths=lengths)
    assert out.shape == (B, 3)
    y, _ = rnn(x, lengths=lengths)
    feature = np.stack([np.concatenate([y[lengths[b] - 1, b, :H], y[0, b, H:]])
                        for b in range(B)])
    assert_close(out, feature @ head.weight.T + head.bias, 1e-13, "from y")
    for b in range(B):
        alone = model(x[:lengths[b], b:b + 1])
        assert_close(out[b], alone[0], 1e-13, f"row {b} alone")
    # unidirectional, batch_first, with a row of length 0 (its state stays h0 = 0)
    rnn1 = make_rnn(kind, 3, H, batch_first=True)
    m1 = ManyToOne(rnn1, Linear(H, 2, dtype="float64", seed=3))
    xb = x.transpose(1, 0, 2).copy()
    out1 = m1(xb, lengths=[7, 0, 2, 5])
    y1, _ = rnn1(xb, lengths=[7, 0, 2, 5])
    assert_close(out1[2], m1.head(y1[2, 1]), 1e-13, "row 2")
    assert_close(out1[1], m1.head.bias, 0, "length 0: head(h0 = 0)")


def test_one_to_many_forward_by_hand():
    """A tanh RNN with its cell written out here: h = tanh(W_ih x + b_ih + W_hh h + b_hh),
    o = W h + b, and o is the next x."""
    I, H, B, steps = 3, 5, 2, 6
    rnn = make_rnn("rnn", I, H)
    head = Linear(H, I, dtype="float64", seed=4)
    model = OneToMany(rnn, head)
    p = rnn.state_dict()
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((B, I))
    h0 = rng.standard_normal((1, B, H))
    x, h, expected = x0, h0[0], []
    for _ in range(steps):
        h = np.tanh(x @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T
                    + p["bias_hh_l0"])
        x = h @ head.weight.T + head.bias
        expected.append(x)
    out, h_n = model.forward(x0, steps, hx=h0, return_state=True)
    assert out.shape == (steps, B, I)
    assert_close(out, np.stack(expected), 1e-13, "out")
    assert_close(h_n[0], h, 1e-13, "final state")
    assert_close(model.generate(x0, steps, hx=h0), out, 0, "generate")
    # batch_first: (B, steps, C); unbatched x0 (I,): (steps, C)
    rnn_bf = make_rnn("rnn", I, H, batch_first=True)
    out_bf = OneToMany(rnn_bf, head).generate(x0, steps, hx=h0)
    assert_close(out_bf, out.transpose(1, 0, 2), 1e-14, "batch_first")
    out_1 = model.generate(x0[1], steps, hx=h0[:, 1])
    assert_close(out_1, out[:, 1], 1e-14, "unbatched")


def test_many_to_one_matches_torch_packed_sequence():
    """ManyToOne(LSTM bidirectional, Linear) + cross_entropy against the torch idiom:
    pack_padded_sequence, h_n's last two rows concatenated, nn.Linear, F.cross_entropy."""
    torch = pytest.importorskip("torch")
    tl = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    th = torch.nn.Linear(8, 5).double()
    rnn = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    model = ManyToOne(rnn.load_state_dict(tl.state_dict()), Linear(8, 5, dtype="float64"))
    model.head.load_state_dict(th.state_dict())
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 4, 3))
    lengths = np.array([6, 1, 4, 3])
    labels = rng.integers(0, 5, size=4)
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                     enforce_sorted=False)
    _, (h_n, _) = tl(packed)
    logits = th(torch.cat([h_n[-2], h_n[-1]], dim=1))
    lt = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    lt.backward()
    out, tape = model.forward(x, lengths=lengths, return_tape=True)
    loss, dout = cross_entropy(out, labels)
    dx, grads = model.backward(tape, dout)
    assert_close(out, logits.detach().numpy(), 1e-12, "logits")
    assert abs(loss - lt.item()) < 1e-12
    assert_close(dx, xt.grad.numpy(), 1e-11, "dx")
    for key, p in tl.named_parameters():
        assert_close(grads["rnn"][key], p.grad.numpy(), 1e-11, key)
    for key, p in th.named_parameters():
        assert_close(grads["head"][key], p.grad.numpy(), 1e-11, key)


# ============================================================================================
# gradients: finite differences (float64, numpy backend)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("structure", ["many_to_many", "many_to_one"])
def test_structure_gradients_finite_differences(kind, structure):
    rnn = make_rnn(kind, 3, 3, num_layers=2, bidirectional=True)
    head = Linear(6, 4, dtype="float64", seed=5)
    cls = ManyToMany if structure == "many_to_many" else ManyToOne
    model = cls(rnn, head)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 3))
    lengths = [5, 2, 3]
    hx0 = rng.standard_normal((4, 3, 3)) * 0.5
    hx = (hx0, hx0 * 0.3) if kind == "lstm" else hx0
    out, tape = model.forward(x, lengths=lengths, hx=hx, return_tape=True)
    if structure == "many_to_many":
        labels = rng.integers(0, 4, size=(5, 3))

        def loss_of(o):
            return cross_entropy(o, labels, lengths)
    else:
        target = rng.standard_normal(out.shape)

        def loss_of(o):
            return mse_loss(o, target)
    _, dout = loss_of(out)
    dx, grads = model.backward(tape, dout)
    assert list(grads) == ["rnn", "head"]
    assert list(grads["rnn"]) == list(rnn.state_dict())
    assert list(grads["head"]) == ["weight", "bias"]
    check_finite_differences(model, lambda: loss_of(model(x, lengths=lengths, hx=hx))[0],
                             x, grads, dx)
    # dx past a row's end is 0
    assert not dx[2:, 1].any()


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_one_to_many_backward_finite_differences(kind):
    I, H, B, steps = 3, 4, 2, 5
    rnn = make_rnn(kind, I, H, num_layers=2)
    head = Linear(H, I, dtype="float64", seed=6)
    model = OneToMany(rnn, head)
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((B, I))
    R = rng.standard_normal((steps, B, I))
    out, tape = model.forward(x0, steps, return_tape=True)
    dx0, grads = model.backward(tape, R)        # loss = Σ out · R
    assert dx0.shape == x0.shape
    check_finite_differences(model, lambda: float(np.sum(model(x0, steps) * R)), x0, grads,
                             dx0)


@pytest.mark.parametrize("structure", ["many_to_many", "many_to_one", "one_to_many"])
def test_structure_layouts_give_the_same_gradients(structure):
    """batch_first and unbatched inputs give the time-major results, transposed or cut."""
    rng = np.random.default_rng(12)
    T, B, I, H = 4, 2, 3, 3

    def build(batch_first):
        rnn = make_rnn("lstm", I, H, batch_first=batch_first)
        head = Linear(H, I, dtype="float64", seed=8)
        cls = {"many_to_many": ManyToMany, "many_to_one": ManyToOne,
               "one_to_many": OneToMany}[structure]
        return cls(rnn, head)

    def run(model, x, dout):
        if structure == "one_to_many":
            out, tape = model.forward(x, T, return_tape=True)
        else:
            out, tape = model.forward(x, return_tape=True)
        return (out,) + model.backward(tape, dout)

    x = rng.standard_normal((B, I) if structure == "one_to_many" else (T, B, I))
    dout_shape = (B, I) if structure == "many_to_one" else (T, B, I)
    dout = rng.standard_normal(dout_shape)
    out, dx, grads = run(build(False), x, dout)
    seq_out = structure != "many_to_one"
    seq_in = structure != "one_to_many"
    # batch_first
    tr = (lambda a: a.transpose(1, 0, 2).copy())
    out_b, dx_b, grads_b = run(build(True), tr(x) if seq_in else x,
                               tr(dout) if seq_out else dout)
    assert_close(out_b, tr(out) if seq_out else out, 1e-14, "batch_first out")
    assert_close(dx_b, tr(dx) if seq_in else dx, 1e-14, "batch_first dx")
    # unbatched: row 1 alone
    row = (lambda a: a[:, 1].copy()) if seq_in else (lambda a: a[1].copy())
    out_u, dx_u, grads_u = run(build(False), row(x),
                               dout[:, 1].copy() if seq_out else dout[1].copy())
    assert_close(out_u, out[:, 1] if seq_out else out[1], 1e-14, "unbatched out")
    # ... and its gradients are those of a batch of that one row
    one = (lambda a: a[:, 1:2].copy()) if seq_in else (lambda a: a[1:2].copy())
    _, dx_1, grads_1 = run(build(False), one(x),
                           dout[:, 1:2].copy() if seq_out else dout[1:2].copy())
    assert_close(dx_u, dx_1[:, 0] if seq_in else dx_1[0], 1e-14, "unbatched dx")
    for part in ("rnn", "head"):
        for k, g in grads[part].items():
            assert_close(grads_b[part][k], g, 1e-13, f"batch_first {part}.{k}")
            assert_close(grads_u[part][k], grads_1[part][k], 1e-13, f"unbatched {part}.{k}")


# ============================================================================================
# every backend against numpy


def _structure_setup(backend, structure, kind, dtype="float64"):
    """model, out, tape, dout of one structure on fixed numbers, with `backend`'s rnn."""
    I, H, B, T = 3, 6, 3, 7
    rng = np.random.default_rng(5)
    bidir = structure != "one_to_many"
    rnn = make_rnn(kind, I, H, backend=backend, dtype=dtype, num_layers=2, bidirectional=bidir)
    rnn.load_state_dict(make_rnn(kind, I, H, num_layers=2, bidirectional=bidir).state_dict())
    D = 2 if bidir else 1
    head = Linear(D * H, I, dtype=dtype, seed=7)
    if structure == "one_to_many":
        model = OneToMany(rnn, head)
        x = rng.standard_normal((B, I)).astype(dtype)
        out, tape = model.forward(x, 4, return_tape=True)
    else:
        model = (ManyToMany if structure == "many_to_many" else ManyToOne)(rnn, head)
        x = rng.standard_normal((T, B, I)).astype(dtype)
        out, tape = model.forward(x, lengths=[7, 3, 5], return_tape=True)
    dout = np.random.default_rng(6).standard_normal(out.shape).astype(dtype)
    return model, out, tape, dout


def _structure_run(backend, structure, kind, dtype="float64"):
    """out, dx and grads of one structure on fixed numbers, with `backend`'s rnn."""
    model, out, tape, dout = _structure_setup(backend, structure, kind, dtype)
    dx, grads = model.backward(tape, dout)
    return out, dx, grads


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
@pytest.mark.parametrize("structure", ["many_to_many", "many_to_one", "one_to_many"])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_structures_every_backend_matches_numpy(backend_name, structure, kind):
    require_backend(backend_name)
    ref = _structure_run("numpy", structure, kind)
    got = _structure_run(backend_name, structure, kind)
    assert_close(got[0], ref[0], 1e-10, "out")
    assert_close(got[1], ref[1], 1e-10, "dx")
    for part in ("rnn", "head"):
        for k, g in ref[2][part].items():
            assert_close(got[2][part][k], g, 1e-10, f"{part}.{k}")


@pytest.mark.parametrize("backend_name", ["numpy", "cython", "numba"])
@pytest.mark.parametrize("structure", ["many_to_many", "many_to_one", "one_to_many"])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_structure_backward_without_input_gradient(backend_name, structure, kind):
    """backward(tape, dout, input_grad=False), as fit calls it: dx is None, and every
    parameter's gradient is bit for bit the full backward's (two layers, bidirectional but
    for OneToMany, whose inner steps still need their input gradients)."""
    require_backend(backend_name)
    model, _, tape, dout = _structure_setup(backend_name, structure, kind, "float32")
    dx, grads = model.backward(tape, dout)
    none, grads_part = model.backward(tape, dout, input_grad=False)
    assert dx is not None and none is None
    for part in ("rnn", "head"):
        assert list(grads_part[part]) == list(grads[part])
        for k, g in grads[part].items():
            np.testing.assert_array_equal(grads_part[part][k], g, err_msg=f"{part}.{k}")
    with pytest.raises(TypeError, match="input_grad"):
        model.backward(tape, dout, input_grad="no")


# ============================================================================================
# structures: parts, state_dict, errors


def test_structure_modules_state_dict_and_optimizer():
    rnn = make_rnn("gru", 3, 4)
    head = Linear(4, 2, dtype="float64", seed=0)
    model = ManyToOne(rnn, head)
    assert model.modules == [rnn, head]
    sd = model.state_dict()
    assert list(sd) == [f"rnn.{k}" for k in rnn.state_dict()] + ["head.weight", "head.bias"]
    assert model.eval() is model and not rnn.training and not head.training
    assert model.train() is model and rnn.training
    # an optimizer over model.modules updates both parts in place
    x = np.random.default_rng(7).standard_normal((5, 2, 3))
    out, tape = model.forward(x, return_tape=True)
    _, grads = model.backward(tape, np.ones_like(out))
    SGD(model.modules, lr=0.5).step([grads["rnn"], grads["head"]])
    after = model.state_dict()
    assert_close(after["head.bias"], sd["head.bias"] - 0.5 * grads["head"]["bias"], 1e-15, "b")
    assert_close(after["rnn.weight_hh_l0"],
                 sd["rnn.weight_hh_l0"] - 0.5 * grads["rnn"]["weight_hh_l0"], 1e-15, "w_hh")
    # load_state_dict restores; a bad key changes nothing
    model.load_state_dict(sd)
    assert_close(model.state_dict()["rnn.weight_hh_l0"], sd["rnn.weight_hh_l0"], 0, "loaded")
    bad = dict(sd)
    bad["head.bias"] = np.zeros(3)
    rnn.named_parameters()["weight_hh_l0"][:] = 0
    snapshot = model.state_dict()
    with pytest.raises(ValueError, match=r"state_dict\['bias'\]"):
        model.load_state_dict(bad)
    assert_close(model.state_dict()["rnn.weight_hh_l0"], snapshot["rnn.weight_hh_l0"], 0,
                 "unchanged after a failed load")
    with pytest.raises(KeyError, match="unexpected key 'body.w'"):
        model.load_state_dict(dict(sd, **{"body.w": np.zeros(1)}))


def test_structure_errors():
    rnn = make_rnn("lstm", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match=r"head.in_features: expected .* = 2 \* 4 = 8, got 4"):
        ManyToOne(rnn, Linear(4, 2, dtype="float64"))
    with pytest.raises(TypeError, match="head.dtype"):
        ManyToMany(rnn, Linear(8, 2, dtype="float32"))
    with pytest.raises(TypeError, match="head: expected"):
        ManyToMany(rnn, object())
    with pytest.raises(TypeError, match="rnn: expected"):
        ManyToMany(object(), Linear(8, 2, dtype="float64"))
    with pytest.raises(ValueError, match="rnn: OneToMany .* bidirectional"):
        OneToMany(rnn, Linear(8, 3, dtype="float64"))
    with pytest.raises(ValueError, match="head.out_features: .* rnn.input_size = 3; got 2"):
        OneToMany(make_rnn("gru", 3, 4), Linear(4, 2, dtype="float64"))
    m = OneToMany(make_rnn("gru", 3, 4), Linear(4, 3, dtype="float64"))
    with pytest.raises(ValueError, match="steps"):
        m.generate(np.zeros((1, 3)), 0)
    out, tape = m.forward(np.zeros((1, 3)), 3, return_tape=True)
    with pytest.raises(ValueError, match="dout"):
        m.backward(tape, np.zeros((2, 1, 3)))
    m2o = ManyToOne(rnn, Linear(8, 2, dtype="float64"))
    with pytest.raises(TypeError, match="tape"):
        m2o.backward(tape, np.zeros((1, 2)))


# ============================================================================================
# truncated BPTT


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_run_windows_equals_one_long_call(kind, batch_first):
    rnn = make_rnn(kind, 3, 5, num_layers=2, batch_first=batch_first, backend="auto")
    rng = np.random.default_rng(8)
    T, B = 11, 4
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    lengths = np.array([11, 0, 4, 9])
    h0 = rng.standard_normal((2, B, 5))
    hx = (h0, -h0) if kind == "lstm" else h0
    y, hx_n = rnn(x, hx, lengths)
    for k in (1, 3, 4, 11, 20):
        y_w, hx_w = run_windows(rnn, x, k, hx=hx, lengths=lengths)
        assert_close(y_w, y, 1e-12, f"y, k={k}")
        for a, b in zip(*(((s,) if kind != "lstm" else s) for s in (hx_w, hx_n))):
            assert_close(a, b, 1e-12, f"final state, k={k}")
    # and without lengths, unbatched
    y1, h1 = rnn(x[0] if batch_first else x[:, 0])
    y1_w, h1_w = run_windows(rnn, x[0] if batch_first else x[:, 0], 4)
    assert_close(y1_w, y1, 1e-12, "unbatched y")
    assert_close(h1_w[0] if kind == "lstm" else h1_w, h1[0] if kind == "lstm" else h1, 1e-12,
                 "unbatched h_n")
    with pytest.raises(ValueError, match="module: truncated BPTT needs a unidirectional"):
        run_windows(make_rnn(kind, 3, 5, bidirectional=True), x, 4)


def test_tbptt_training_windows_with_many_to_many():
    """The loop of tbptt.py's docstring: the forward outputs over the windows equal one long
    call, and each window's gradient equals the gradient of that window run on its own from
    the carried state (nothing flows back across windows)."""
    rnn = make_rnn("lstm", 2, 3)
    model = ManyToMany(rnn, Linear(3, 4, dtype="float64", seed=1))
    rng = np.random.default_rng(9)
    T, B, k = 9, 2, 4
    x = rng.standard_normal((T, B, 2))
    labels = rng.integers(0, 4, size=(T, B))
    lengths = np.array([9, 6])
    full = model(x, lengths=lengths)
    hx, outs = None, []
    for w in tbptt_windows(T, k):
        lw = window_lengths(lengths, w)
        out, hx_n, tape = model.forward(x[w], lengths=lw, hx=hx, return_state=True,
                                        return_tape=True)
        _, dout = cross_entropy(out, labels[w], lengths=lw)
        dx, grads = model.backward(tape, dout)
        # the same window alone, from a copy of the state: the same gradients
        out2, tape2 = model.forward(x[w].copy(), lengths=lw, hx=detach_state(hx),
                                    return_tape=True)
        dx2, grads2 = model.backward(tape2, dout)
        assert_close(out2, out, 0, "window alone: out")
        assert_close(dx2, dx, 0, "window alone: dx")
        for key, g in grads["rnn"].items():
            assert_close(g, grads2["rnn"][key], 0, key)
        outs.append(out)
        hx = detach_state(hx_n)
    assert_close(np.concatenate(outs), full, 1e-12, "windows vs one call")


# ============================================================================================
# SPEC.md section 6: the worked example, and a short training run


def test_spec_worked_example_lstm_mse_sgd():
    lstm = fastlstm.LSTM(2, 1, dtype="float64", backend="numpy")
    lstm.load_state_dict({
        "weight_ih_l0": np.array([[0.95, 0.8], [0.7, 0.45], [0.45, 0.25], [0.6, 0.4]]),
        "weight_hh_l0": np.array([[0.8], [0.1], [0.15], [0.25]]),
        "bias_ih_l0": np.array([0.65, 0.15, 0.2, 0.1]),
        "bias_hh_l0": np.zeros(4)})
    x = np.array([[[1.0, 2.0]], [[0.5, 3.0]]])                    # (T=2, B=1, I=2)
    target = np.array([[[0.5]], [[1.25]]])
    y, (h_n, c_n), tape = lstm.forward(x, return_tape=True)
    assert_close(y[:, 0, 0], [0.53631, 0.77198], 1e-5, "h_1, h_2")
    assert abs(c_n[0, 0, 0] - 1.51763) < 1e-5
    loss, dy = mse_loss(y, target, "half_sum")
    assert abs(loss - 0.5 * ((0.53631 - 0.5) ** 2 + (0.77198 - 1.25) ** 2)) < 1e-5
    assert_close(dy, y - target, 0, "dL/dy = y - target")
    _, _, grads = lstm.backward(tape, dy)
    before = lstm.state_dict()
    SGD(lstm, lr=0.1).step(grads)
    for key, g in grads.items():
        assert_close(lstm.state_dict()[key], before[key] - 0.1 * g, 1e-15, key)
    # one step of gradient descent lowers the loss
    assert mse_loss(lstm(x)[0], target, "half_sum")[0] < loss


def test_training_many_to_one_lstm_with_adam_learns():
    """A tiny task that needs memory: the class of a sequence is the sign of its first
    element, the rest is noise. Adam on a ManyToOne LSTM brings the loss well down."""
    rng = np.random.default_rng(10)
    T, B = 6, 64
    x = rng.standard_normal((T, B, 1)).astype(np.float32)
    labels = (x[0, :, 0] > 0).astype(np.int64)
    lengths = rng.integers(2, T + 1, size=B)
    model = ManyToOne(fastlstm.LSTM(1, 8, seed=0), Linear(8, 2, seed=1))
    opt = Adam(model.modules, lr=0.03)
    losses = []
    for _ in range(60):
        out, tape = model.forward(x, lengths=lengths, return_tape=True)
        loss, dout = cross_entropy(out, labels)
        _, grads = model.backward(tape, dout)
        opt.step([grads["rnn"], grads["head"]])
        losses.append(loss)
    assert losses[0] > 0.6                      # about log 2 at the start
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    accuracy = np.mean(model.eval()(x, lengths=lengths).argmax(1) == labels)
    assert accuracy > 0.95
