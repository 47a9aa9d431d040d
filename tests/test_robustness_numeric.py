"""Non-finite and extreme inputs, memory layouts, and the memory contracts under them; every
backend, float32 and float64.

- NaN: a NaN in one batch row (of x, h0, c0 or dy) reaches that row's outputs and gradients and
  no other row's. The weight and bias gradients are sums over every row, so they are NaN too
  (all of them: that is the arithmetic, not a leak between rows).
- +-inf in x, h0 or c0: no crash; every output and gradient is non-finite exactly where the
  reference's is, the finite rest agrees with it, and the other rows stay finite. The NumPy
  backend may warn ("invalid value encountered", NumPy's inf * 0); the compiled ones do not.
- Magnitude 1e4 (inputs, weights, states, output gradients, each group and all at once, both
  signs): finite outputs and gradients, no overflow / invalid / divide warning, the reference's
  numbers (measured on the scale of unsaturated results, see the test).
- Magnitude 1e-3 and 1e-6 inputs from a zero state: the reference's relative accuracy.
- Layouts: C order, Fortran order, strided views, negative strides and transposed views give
  bitwise the same results as C-contiguous copies (the API copies them to one layout first).
- Inputs are never modified and outputs never share memory with them, whatever their memory
  layout, NaN and inf included.
"""
import warnings

import numpy as np
import pytest

import fastlstm

from conftest import (GRAD_NAMES, assert_close, make_problem, reference_result, rel_err,
                      tol_for)

T, B, I, H = 6, 4, 3, 5
ROW = 2    # the batch row that gets the NaN or inf
STEP = 3   # the time step that gets it (x, dy)


def _run(p, backend, args=None, grads_in=None):
    """forward (training) + backward; returns {name: array} for y, h_n, c_n and the gradients."""
    args = p.forward_args() if args is None else args
    grads_in = (p.dy, p.dh_n, p.dc_n) if grads_in is None else grads_in
    y, (h_n, c_n), tape = fastlstm.forward(*args, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, *grads_in)
    return dict(y=y, h_n=h_n, c_n=c_n, **{name: getattr(g, name) for name in GRAD_NAMES})


def _reference(p):
    ref = reference_result(p)
    return dict(y=ref.y, h_n=ref.h_n, c_n=ref.c_n, **ref.grads)


def _rows(name, arr, row):
    """(the given batch row, every other row) of a result array: batch axis 1 for y and x,
    0 for the states; None for the weight and bias gradients (no batch axis)."""
    axis = {"y": 1, "x": 1, "h_n": 0, "c_n": 0, "h0": 0, "c0": 0}.get(name)
    if axis is None:
        return None
    return np.take(arr, row, axis=axis), np.delete(arr, row, axis=axis)


def _quiet_run(p, backend):
    """_run with every warning recorded: (result, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run(p, backend)
    return result, caught


def _assert_warnings_allowed(caught, backend):
    """The compiled backends never warn; the NumPy reference may warn about inf * 0."""
    if backend != "numpy":
        assert not caught, f"warnings: {[str(w.message) for w in caught]}"
    for w in caught:
        assert issubclass(w.category, RuntimeWarning), f"unexpected warning {w.message}"


# ------------------------------------------------------------------------------------ NaN

NAN_PLACES = ["x", "h0", "c0", "dy"]


def _with_value(dtype, where, value=np.nan):
    p = make_problem(T, B, I, H, dtype=dtype, seed=70)
    if where in ("x", "dy"):
        getattr(p, where)[STEP, ROW, 0] = value
    else:
        getattr(p, where)[ROW, 1] = value
    return p


@pytest.mark.parametrize("where", NAN_PLACES)
def test_nan_stays_in_its_row(backend, dtype, where):
    p = _with_value(dtype, where)
    out = _run(p, backend)
    ref = _reference(p)

    # exactly the reference's NaNs, and its numbers elsewhere
    for name, got in out.items():
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref[name]), err_msg=name)
        assert_close(got, ref[name], tol_for(dtype), name)

    # no other row sees it: outputs, input and state gradients
    for name in ("y", "h_n", "c_n", "x", "h0", "c0"):
        _, others = _rows(name, out[name], ROW)
        assert np.all(np.isfinite(others)), f"{name}: NaN leaked into another batch row"
    row_y, _ = _rows("y", out["y"], ROW)
    row_dx, _ = _rows("x", out["x"], ROW)
    if where == "dy":
        # an output gradient changes no output; it flows back in time only
        for name in ("y", "h_n", "c_n"):
            assert np.all(np.isfinite(out[name])), name
        assert np.all(np.isnan(row_dx[:STEP + 1])) and np.all(np.isfinite(out["x"][STEP + 1:]))
    else:
        first = STEP if where == "x" else 0
        assert np.all(np.isfinite(out["y"][:first])), "NaN reached earlier steps"
        # from the step after the NaN on, the whole row is NaN (it enters every gate)
        assert np.all(np.isnan(row_y[first + 1:]))
        assert np.all(np.isnan(_rows("h_n", out["h_n"], ROW)[0]))
        assert np.all(np.isnan(row_dx)), "dx of the NaN row should be NaN at every step"
    assert np.all(np.isnan(_rows("h0", out["h0"], ROW)[0]))
    # the weight and bias gradients sum over every row: NaN, as in the reference
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert np.all(np.isnan(out[name])), f"grad {name}: expected NaN (a sum over the rows)"


def test_nan_inference_matches_training(backend, dtype):
    """The inference path (no tape, chunked projection, two cell-state slots) keeps NaN in its
    row as the training path does."""
    p = _with_value(dtype, "x")
    y, (h_n, c_n) = fastlstm.forward(*p.forward_args(), backend=backend)
    out = _run(p, backend)
    for name, got in (("y", y), ("h_n", h_n), ("c_n", c_n)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(out[name]), err_msg=name)
        assert_close(got, out[name], tol_for(dtype), name)


# ------------------------------------------------------------------------------------ inf


def _assert_close_nonfinite(got, want, tol, name):
    """Non-finite at the same places as `want`; the finite entries within tol of it."""
    bad = ~np.isfinite(got)
    np.testing.assert_array_equal(bad, ~np.isfinite(want), err_msg=f"{name}: non-finite places")
    assert_close(got[~bad], want[~bad], tol, name)


@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["inf", "-inf"])
@pytest.mark.parametrize("where", ["x", "h0", "c0"])
def test_inf_does_not_crash(backend, dtype, where, value):
    p = _with_value(dtype, where, value)
    out, caught = _quiet_run(p, backend)
    _assert_warnings_allowed(caught, backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's own inf * 0
        ref = _reference(p)
    for name, got in out.items():
        _assert_close_nonfinite(got, ref[name], tol_for(dtype), name)
    for name in ("y", "h_n", "c_n", "x", "h0", "c0"):
        _, others = _rows(name, out[name], ROW)
        assert np.all(np.isfinite(others)), f"{name}: inf leaked into another batch row"


# ------------------------------------------------------------------------ magnitude 1e4

SCALED = {
    "x": ("x",),
    "weights": ("w_ih", "w_hh", "b_ih", "b_hh"),
    "states": ("h0", "c0"),
    "output_grads": ("dy", "dh_n", "dc_n"),
    "everything": ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "dy", "dh_n", "dc_n"),
}


#: max |result - reference| / max(max |reference|, 1) at magnitude 1e4; float32: the NumPy
#: backend itself errs by up to 7.6e-4 there (60 seeds x the cases below), as the compiled ones
MAGNITUDE_TOL = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-10}


def _unit_scale_err(got, want):
    """max |got - want| / max(max |want|, 1)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want), initial=0) / max(np.max(np.abs(want), initial=0), 1))


@pytest.mark.parametrize("sign", [1, -1], ids=["plus", "minus"])
@pytest.mark.parametrize("group", list(SCALED))
def test_magnitude_1e4_is_finite_and_quiet(backend, dtype, group, sign):
    """Inputs of magnitude 1e4 saturate the gates: finite results, no overflow warning, and the
    float64 reference's numbers.

    Measured against the scale of the unsaturated results (1): saturated gates make many
    results 0 or subnormal exactly (sigmoid(-1e4) = exp(-1e4)), where a relative measure is
    meaningless: the compiled kernels clamp exp's argument, so they give exp(-87) = 1.6e-38
    (float32) or exp(-708) (float64) there instead of 0. In float32 an input of magnitude 1e4
    carries a rounding error of 1e-3, and 1 - sigmoid(a) near saturation loses most digits, so
    every backend, the NumPy one included, is off by up to 7.6e-4 on this scale.
    """
    p = make_problem(T, B, I, H, dtype=dtype, seed=71)
    for name in SCALED[group]:
        setattr(p, name, (getattr(p, name) * (sign * 1e4)).astype(dtype))
    with np.errstate(over="warn", invalid="warn", divide="warn"):
        out, caught = _quiet_run(p, backend)
    assert not caught, f"warnings: {[str(w.message) for w in caught]}"
    ref = _reference(p)
    tol = MAGNITUDE_TOL[np.dtype(dtype)]
    for name, got in out.items():
        assert np.all(np.isfinite(got)), f"{name}: not finite"
        if ref[name] is not None:
            err = _unit_scale_err(got, ref[name])
            assert err <= tol, f"{name}: error {err:.2e} exceeds {tol:.0e}"


@pytest.mark.parametrize("scale", [1e-3, 1e-6])
def test_small_inputs_keep_relative_accuracy(backend, dtype, scale):
    """Inputs of magnitude 1e-3 or 1e-6 from a zero state (no biases): every activation is
    small, and the results must still match the reference to the suite's relative tolerance,
    as the NumPy backend does (1e-7 in float32).

    Fails on the compiled backends: their tanh, 2 / (1 + exp(-2a)) - 1, cancels for small a, so
    its relative error grows as eps / |a| (float32: 2e-4 at a = 1e-4, 100% below 1e-8;
    float64: 1e-10 at 1e-6). Measured: float32 y off by 1.7e-4 at scale 1e-3, 16% at 1e-6;
    float64 by 3.4e-10 at 1e-6.
    """
    p = make_problem(5, 3, 4, 6, dtype=dtype, seed=77).without("b_ih", "b_hh", "h0", "c0")
    p.x = (p.x * scale).astype(dtype)
    out = _run(p, backend)
    ref = _reference(p)
    tol = tol_for(dtype)
    for name, got in out.items():
        if ref[name] is not None:
            assert_close(got, ref[name], tol, name)


# ---------------------------------------------------------------------------------- layouts


def _embed(arr, rng):
    """A strided view (every other element along every axis) holding arr's values."""
    big = rng.standard_normal(tuple(2 * n + 1 for n in arr.shape)).astype(arr.dtype)
    view = big[tuple(slice(1, None, 2) for _ in arr.shape)]
    view[...] = arr
    return view


def _in_layout(arr, kind, rng):
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "strided":
        return _embed(arr, rng)
    if kind == "reversed":
        index = tuple(slice(None, None, -1) for _ in arr.shape)
        return arr[index].copy()[index]
    if kind == "transposed":  # the transpose of a C-contiguous array of the transposed shape
        return np.ascontiguousarray(arr.T).T
    raise AssertionError(kind)


LAYOUT_KINDS = ["fortran", "strided", "reversed", "transposed"]


def _assert_same(got, want):
    for name in want:
        if want[name] is None:
            assert got[name] is None, name
        else:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("kind", LAYOUT_KINDS)
def test_forward_arguments_layout_independent(backend, dtype, kind):
    """x, the weights, the biases, h0 and c0 in another memory layout: bitwise the same."""
    p = make_problem(T, B, I, H, dtype=dtype, seed=72)
    rng = np.random.default_rng(0)
    args = tuple(_in_layout(a, kind, rng) for a in p.forward_args())
    if kind in ("fortran", "strided", "transposed"):
        assert not any(a.flags.c_contiguous for a in args if a.ndim > 1)
    _assert_same(_run(p, backend, args=args), _run(p, backend))
    y, (h_n, c_n) = fastlstm.forward(*args, backend=backend)
    y_c, (h_c, c_c) = fastlstm.forward(*p.forward_args(), backend=backend)
    _assert_same(dict(y=y, h_n=h_n, c_n=c_n), dict(y=y_c, h_n=h_c, c_n=c_c))


@pytest.mark.parametrize("kind", LAYOUT_KINDS)
def test_output_gradients_layout_independent(backend, dtype, kind):
    """dy, dh_n and dc_n in another memory layout: bitwise the same gradients.

    Fails on the compiled backends for Fortran-ordered or transposed dh_n / dc_n (B, H >= 2):
    see test_fortran_ordered_dh_n_dc_n below.
    """
    p = make_problem(T, B, I, H, dtype=dtype, seed=73)
    rng = np.random.default_rng(1)
    grads_in = tuple(_in_layout(a, kind, rng) for a in (p.dy, p.dh_n, p.dc_n))
    _assert_same(_run(p, backend, grads_in=grads_in), _run(p, backend))


@pytest.mark.parametrize("name", ["dh_n", "dc_n"])
def test_fortran_ordered_dh_n_dc_n(backend, dtype, name):
    """Regression: a Fortran-ordered dh_n or dc_n is a valid argument.

    fastlstm._api.backward copies them with np.array(dh_n, dtype), which keeps Fortran order,
    and hands the copy to kernels that need C order: the Cython kernel raises "ValueError:
    ndarray is not C-contiguous", the Numba one fails to compile (AssertionError inside Numba).
    """
    p = make_problem(3, 2, 2, 3, dtype=dtype, seed=74)
    _, _, tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    value = getattr(p, name)
    g_c = fastlstm.backward(tape, **{name: value})
    g_f = fastlstm.backward(tape, **{name: np.asfortranarray(value)})
    for grad in GRAD_NAMES:
        np.testing.assert_array_equal(getattr(g_f, grad), getattr(g_c, grad), err_msg=grad)


@pytest.mark.parametrize("layout", ["batch_first", "unbatched"])
def test_caller_layouts_agree_bitwise(backend, dtype, layout):
    """batch_first and unbatched give bitwise the time-major results (transposed / squeezed)."""
    p = make_problem(T, 1 if layout == "unbatched" else B, I, H, dtype=dtype, seed=75)
    fargs, kwargs, grads_in = p.call_args(layout)
    y, (h_n, c_n), tape = fastlstm.forward(*fargs, **kwargs, backend=backend, return_tape=True)
    g = fastlstm.backward(tape, *grads_in)
    want = _run(p, backend)
    if layout == "batch_first":
        np.testing.assert_array_equal(y, want["y"].transpose(1, 0, 2))
        np.testing.assert_array_equal(g.x, want["x"].transpose(1, 0, 2))
        np.testing.assert_array_equal(h_n, want["h_n"])
    else:
        np.testing.assert_array_equal(y, want["y"][:, 0])
        np.testing.assert_array_equal(g.x, want["x"][:, 0])
        np.testing.assert_array_equal(h_n, want["h_n"][0])
    for name in ("w_ih", "w_hh", "b_ih"):
        np.testing.assert_array_equal(getattr(g, name), want[name], err_msg=name)


# --------------------------------------------------------------- mutation and aliasing


@pytest.mark.parametrize("kind", ["C", "fortran", "strided", "reversed"])
def test_inputs_unchanged_and_unaliased(backend, dtype, kind):
    """With NaN and inf among the values, in any layout, forward and backward leave their
    inputs bit-for-bit unchanged and return arrays that share no memory with them (nor with
    each other's inputs through views)."""
    p = make_problem(T, B, I, H, dtype=dtype, seed=76)
    p.x[STEP, ROW, 0] = np.nan
    p.x[1, 0, 1] = np.inf
    p.c0[1, 2] = -np.inf
    p.dy[0, 3, 0] = np.nan
    rng = np.random.default_rng(2)
    place = (lambda a: a.copy()) if kind == "C" else (lambda a: _in_layout(a, kind, rng))
    args = tuple(place(a) for a in p.forward_args())
    # dh_n, dc_n strided rather than Fortran-ordered: see test_fortran_ordered_dh_n_dc_n
    grad_place = place if kind != "fortran" else (lambda a: _embed(a, rng))
    grads_in = tuple(grad_place(a) for a in (p.dy, p.dh_n, p.dc_n))
    inputs = args + grads_in
    before = [a.copy() for a in inputs]
    bases = [a if a.base is None else a.base for a in inputs]
    before_bases = [b.copy() for b in bases]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NumPy backend's inf * 0
        y, (h_n, c_n), tape = fastlstm.forward(*args, backend=backend, return_tape=True)
        y_inf, (h_inf, c_inf) = fastlstm.forward(*args, backend=backend)
        g = fastlstm.backward(tape, *grads_in)

    for k, (a, a0) in enumerate(zip(inputs, before)):
        np.testing.assert_array_equal(a, a0, err_msg=f"input {k} was modified")
    for k, (b, b0) in enumerate(zip(bases, before_bases)):
        # the whole buffer, not only the view: nothing written between the strides
        np.testing.assert_array_equal(b, b0, err_msg=f"the buffer under input {k} was modified")
    outputs = [y, h_n, c_n, y_inf, h_inf, c_inf, tape.x, tape.w_ih, tape.w_hh]
    outputs += [getattr(g, n) for n in GRAD_NAMES]
    for out in outputs:
        for base in bases:
            assert not np.shares_memory(out, base), "an output shares memory with an input"


def test_rel_err_sees_nan_mismatch():
    """The error measure the tests above rely on: NaN against a number is an infinite error."""
    assert rel_err(np.array([np.nan, 1.0]), np.array([0.0, 1.0])) == np.inf
    assert rel_err(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) == 0.0
