"""The memory contracts and the empty cases, on every backend.

- Inputs are never modified; outputs never share memory with inputs (nor with each other), and
  the tape holds private copies (changing the inputs after forward does not change backward).
- T = 0 and B = 0 work and give the shapes the inputs imply.
"""
import numpy as np
import pytest

import fastlstm

from conftest import GRAD_NAMES, assert_close, make_problem, reference_result, tol_for

LAYOUTS = ["time_major", "batch_first", "unbatched"]


def _problem_for(layout, dtype, seed):
    B = 1 if layout == "unbatched" else 3
    return make_problem(5, B, 4, 6, dtype=dtype, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_inputs_unmodified(backend, dtype, layout, training):
    p = _problem_for(layout, dtype, 50)
    fargs, kwargs, grads_in = p.call_args(layout)
    copies = [a.copy() for a in fargs]
    grad_copies = [a.copy() for a in grads_in]
    out = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=training)
    if training:
        fastlstm.backward(out[2], *grads_in)
    for k, (a, a0) in enumerate(zip(fargs, copies)):
        np.testing.assert_array_equal(a, a0, err_msg=f"forward argument {k} was modified")
    for k, (a, a0) in enumerate(zip(grads_in, grad_copies)):
        np.testing.assert_array_equal(a, a0, err_msg=f"backward argument {k} was modified")


def _assert_no_sharing(outputs, inputs):
    for oname, out in outputs.items():
        for iname, arr in inputs.items():
            if out is not None and arr is not None:
                assert not np.shares_memory(out, arr), f"output {oname} shares memory with {iname}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_outputs_do_not_alias_inputs(backend, dtype, layout):
    p = _problem_for(layout, dtype, 51)
    fargs, kwargs, (dy, dh_n, dc_n) = p.call_args(layout)
    inputs = dict(zip(("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"), fargs))

    y, (h_n, c_n) = fastlstm.forward(*fargs, **kwargs, backend=backend)
    _assert_no_sharing(dict(y=y, h_n=h_n, c_n=c_n), inputs)

    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    fwd_out = dict(y=y, h_n=h_n, c_n=c_n)
    _assert_no_sharing(fwd_out, inputs)
    _assert_no_sharing({f"tape.{n}": getattr(tape, n) for n in ("x", "w_ih", "w_hh", "h", "c",
                                                                "gates")}, inputs)
    _assert_no_sharing(dict(y=y), dict(h_n=h_n, c_n=c_n))
    _assert_no_sharing(fwd_out, {f"tape.{n}": getattr(tape, n)
                                 for n in ("x", "w_ih", "w_hh", "h", "c", "gates")})

    g = fastlstm.backward(tape, dy, dh_n, dc_n)
    grads = {f"grad {n}": getattr(g, n) for n in GRAD_NAMES}
    _assert_no_sharing(grads, {**inputs, "dy": dy, "dh_n": dh_n, "dc_n": dc_n, **fwd_out})
    _assert_no_sharing(grads, {f"tape.{n}": getattr(tape, n)
                               for n in ("x", "w_ih", "w_hh", "h", "c", "gates")})
    names = list(grads)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.shares_memory(grads[a], grads[b]), f"{a} shares memory with {b}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tape_holds_private_copies(backend, dtype, layout):
    """Changing the inputs in place after forward does not change what backward returns."""
    p = _problem_for(layout, dtype, 52)
    fargs, kwargs, grads_in = p.call_args(layout)
    fargs = tuple(a.copy() for a in fargs)
    _, _, tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g1 = fastlstm.backward(tape, *grads_in)
    for a in fargs:
        a[...] = 7.0
    g2 = fastlstm.backward(tape, *grads_in)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name), err_msg=name)


def test_changing_outputs_does_not_change_tape(backend, dtype):
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=53)
    y, (h_n, c_n), tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    g1 = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    y[...] = 3.0
    h_n[...] = 3.0
    c_n[...] = 3.0
    g1.x[...] = 3.0
    g2 = fastlstm.backward(tape, p.dy, p.dh_n, p.dc_n)
    assert_close(g2.w_hh, g1.w_hh, 0, "grad w_hh")
    assert_close(g2.x, reference_result(p).grads["x"], tol_for(dtype), "grad x")


# ---------------------------------------------------------------- T = 0 and B = 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_zero_steps(backend, dtype, layout, training):
    B = 1 if layout == "unbatched" else 3
    I, H = 4, 6
    p = make_problem(0, B, I, H, dtype=dtype, seed=54)
    fargs, kwargs, (dy, dh_n, dc_n) = p.call_args(layout)
    x, _, _, _, _, h0, c0 = fargs
    out = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=training)
    y, (h_n, c_n) = out[:2]
    y_shape = {"time_major": (0, B, H), "batch_first": (B, 0, H), "unbatched": (0, H)}[layout]
    assert y.shape == y_shape and y.dtype == dtype
    assert h_n.shape == h0.shape and c_n.shape == c0.shape
    np.testing.assert_array_equal(h_n, h0)
    np.testing.assert_array_equal(c_n, c0)
    assert not np.shares_memory(h_n, h0) and not np.shares_memory(c_n, c0)
    if not training:
        return
    g = fastlstm.backward(out[2], dy, dh_n, dc_n)
    assert g.x.shape == x.shape and g.x.dtype == dtype
    for name, shape in (("w_ih", (4 * H, I)), ("w_hh", (4 * H, H)), ("b_ih", (4 * H,)),
                        ("b_hh", (4 * H,))):
        grad = getattr(g, name)
        assert grad.shape == shape and grad.dtype == dtype, name
        assert not np.any(grad), f"grad {name} is not zero with T = 0"
    # with no step, the state gradients pass straight through
    np.testing.assert_array_equal(g.h0, dh_n)
    np.testing.assert_array_equal(g.c0, dc_n)
    g0 = fastlstm.backward(out[2])
    assert not np.any(g0.h0) and not np.any(g0.c0) and g0.h0.shape == h0.shape


def test_zero_steps_without_state(backend, dtype):
    p = make_problem(0, 2, 3, 5, dtype=dtype, seed=55)
    y, (h_n, c_n), tape = fastlstm.forward(p.x, p.w_ih, p.w_hh, backend=backend,
                                           return_tape=True)
    assert y.shape == (0, 2, 5)
    assert h_n.shape == c_n.shape == (2, 5) and not np.any(h_n) and not np.any(c_n)
    g = fastlstm.backward(tape)
    assert g.b_ih is None and g.b_hh is None
    assert g.h0.shape == g.c0.shape == (2, 5)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_zero_batch(backend, dtype, batch_first, training):
    T, I, H = 4, 3, 5
    p = make_problem(T, 0, I, H, dtype=dtype, seed=56)
    x = p.x.transpose(1, 0, 2).copy() if batch_first else p.x
    out = fastlstm.forward(x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0, p.c0,
                           batch_first=batch_first, backend=backend, return_tape=training)
    y, (h_n, c_n) = out[:2]
    assert y.shape == ((0, T, H) if batch_first else (T, 0, H)) and y.dtype == dtype
    assert h_n.shape == c_n.shape == (0, H)
    if not training:
        return
    dy = np.zeros(y.shape, dtype)
    g = fastlstm.backward(out[2], dy, p.dh_n, p.dc_n)
    assert g.x.shape == x.shape
    assert g.h0.shape == g.c0.shape == (0, H)
    for name, shape in (("w_ih", (4 * H, I)), ("w_hh", (4 * H, H)), ("b_ih", (4 * H,)),
                        ("b_hh", (4 * H,))):
        grad = getattr(g, name)
        assert grad.shape == shape and grad.dtype == dtype, name
        assert not np.any(grad), f"grad {name} is not zero with B = 0"


def test_zero_steps_and_batch(backend, dtype):
    p = make_problem(0, 0, 3, 2, dtype=dtype, seed=57)
    y, (h_n, c_n), tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    assert y.shape == (0, 0, 2) and h_n.shape == (0, 2)
    g = fastlstm.backward(tape)
    assert g.x.shape == (0, 0, 3) and g.w_ih.shape == (8, 3) and not np.any(g.w_ih)
