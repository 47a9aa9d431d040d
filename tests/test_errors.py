"""Argument errors: a wrong dtype or type is a TypeError naming the argument; a wrong shape a
ValueError naming the argument with the expected and the given shape; an unknown backend a
ValueError listing the available ones. Messages start with "<argument>:"."""
import re

import numpy as np
import pytest

import fastlstm

from conftest import make_problem

ARG_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
T, B, I, H = 4, 3, 2, 5


def _args(dtype=np.float64):
    p = make_problem(T, B, I, H, dtype=dtype, seed=60)
    return dict(zip(ARG_NAMES, p.forward_args()))


def _names(name):
    """pytest.raises `match` for a message that starts with the argument's name."""
    return rf"^{re.escape(name)}\b"


def _forward(args, **kwargs):
    return fastlstm.forward(*(args[n] for n in ARG_NAMES), **kwargs)


# ------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("name", ARG_NAMES)
@pytest.mark.parametrize("bad", ["int64", "int32", "complex128", "float16", "bool", "object"])
def test_bad_dtype_is_type_error(backend, name, bad):
    args = _args()
    args[name] = args[name].astype(bad)
    with pytest.raises(TypeError, match=_names(name)) as exc:
        _forward(args, backend=backend)
    assert str(np.dtype(bad)) in str(exc.value)


@pytest.mark.parametrize("name", ARG_NAMES[1:])
@pytest.mark.parametrize("x_dtype,other", [(np.float64, np.float32), (np.float32, np.float64)])
def test_mixed_float_dtypes_is_type_error(backend, name, x_dtype, other):
    args = _args(x_dtype)
    args[name] = args[name].astype(other)
    with pytest.raises(TypeError, match=_names(name)) as exc:
        _forward(args, backend=backend)
    assert str(np.dtype(other)) in str(exc.value)


@pytest.mark.parametrize("name", ARG_NAMES)
def test_non_array_is_type_error(name):
    args = _args()
    args[name] = "not an array"
    with pytest.raises(TypeError, match=_names(name)):
        _forward(args, backend="numpy")


def test_ragged_list_is_type_error():
    args = _args()
    args["w_ih"] = [[1.0, 2.0], [3.0]]
    with pytest.raises(TypeError, match=_names("w_ih")):
        _forward(args, backend="numpy")


@pytest.mark.parametrize("flag", ["batch_first", "return_tape"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_non_bool_flag_is_type_error(flag, value):
    with pytest.raises(TypeError, match=_names(flag)):
        _forward(_args(), backend="numpy", **{flag: value})


# ------------------------------------------------------------------------------ shapes

# name -> (a wrong shape, the expected shape spelled as in the message or None)
WRONG_SHAPES = [
    ("x", (T, I), None),            # 2-D x is unbatched: then h0 (B, H) is wrong, see below
    ("x", (T, B, I, 1), None),
    ("x", (T,), None),
    ("x", (T, B, 0), None),
    ("w_ih", (4 * H, I + 1), (4 * H, I)),
    ("w_ih", (4 * H + 4, I), (4 * H, I)),
    ("w_ih", (4 * H * I,), (4 * H, I)),
    ("w_hh", (4 * H, H + 1), None),
    ("w_hh", (H, H), None),
    ("w_hh", (4 * H,), None),
    ("w_hh", (0, 0), None),
    ("b_ih", (4 * H + 1,), (4 * H,)),
    ("b_ih", (1, 4 * H), (4 * H,)),
    ("b_hh", (H,), (4 * H,)),
    ("h0", (B, H + 1), (B, H)),
    ("h0", (H,), (B, H)),
    ("h0", (1, B, H), (B, H)),
    ("c0", (B + 1, H), (B, H)),
    ("c0", (H, B), (B, H)),
]


@pytest.mark.parametrize("name,shape,expected", WRONG_SHAPES,
                         ids=[f"{n}-{'x'.join(map(str, s))}" for n, s, _ in WRONG_SHAPES])
def test_wrong_shape_is_value_error(backend, name, shape, expected):
    args = _args()
    if name == "x" and len(shape) == 2:
        # unbatched x: the (B, H) states no longer fit; the error names h0
        args["x"] = np.ones(shape)
        name, shape, expected = "h0", (B, H), (H,)
    else:
        args[name] = np.ones(shape)
    with pytest.raises(ValueError, match=_names(name)) as exc:
        _forward(args, backend=backend)
    msg = str(exc.value)
    assert str(shape) in msg, f"given shape {shape} not in {msg!r}"
    if expected is not None:
        assert str(expected) in msg, f"expected shape {expected} not in {msg!r}"
    if name == "x" and len(shape) != 3:
        assert "(T, B, I)" in msg and "(T, I)" in msg, msg


def test_w_hh_message_spells_expected_shape():
    args = _args()
    args["w_hh"] = np.ones((4 * H, H + 1))
    with pytest.raises(ValueError, match=_names("w_hh")) as exc:
        _forward(args, backend="numpy")
    assert "(4*H, H)" in str(exc.value) and str((4 * H, H + 1)) in str(exc.value)


@pytest.mark.parametrize("batch_first", [False, True])
def test_state_shape_follows_layout(batch_first):
    """With batch_first the batch is x's first axis: h0 (T, H) is wrong when T != B."""
    args = _args()
    if batch_first:
        args["x"] = np.ascontiguousarray(args["x"].transpose(1, 0, 2))
    fastlstm.forward(*(args[n] for n in ARG_NAMES), batch_first=batch_first, backend="numpy")
    args["h0"] = np.ones((T, H))
    with pytest.raises(ValueError, match=_names("h0")) as exc:
        _forward(args, batch_first=batch_first, backend="numpy")
    assert str((T, H)) in str(exc.value) and str((B, H)) in str(exc.value)


def test_unbatched_rejects_torch_style_state():
    """Unbatched x (T, I) takes h0, c0 of shape (H,); torch's (1, H) is an error naming h0."""
    args = _args()
    args["x"] = args["x"][:, 0, :]
    args["h0"] = args["h0"][:1]
    args["c0"] = args["c0"][0]
    with pytest.raises(ValueError, match=_names("h0")) as exc:
        _forward(args, backend="numpy")
    assert str((1, H)) in str(exc.value) and str((H,)) in str(exc.value)


def test_errors_leave_nothing_half_done():
    """A shape error raised by the last argument's check leaves the other inputs untouched."""
    args = _args()
    copies = {n: a.copy() for n, a in args.items()}
    args["c0"] = np.ones((B, H + 2))
    with pytest.raises(ValueError, match=_names("c0")):
        _forward(args, backend="numpy")
    for n in ARG_NAMES[:-1]:
        np.testing.assert_array_equal(args[n], copies[n])


# ------------------------------------------------------------------------------ backends


@pytest.mark.parametrize("bad", ["bogus", "Numba", "", "torch", 3, None])
def test_unknown_backend_is_value_error(bad):
    with pytest.raises(ValueError, match=_names("backend")) as exc:
        _forward(_args(), backend=bad)
    msg = str(exc.value)
    for name in fastlstm.available_backends():
        assert repr(name) in msg, f"available backend {name!r} not listed in {msg!r}"
    if isinstance(bad, str) and bad:
        assert repr(bad) in msg


def test_unknown_backend_in_env_var_is_value_error(monkeypatch):
    monkeypatch.setenv("FASTLSTM_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"^\$FASTLSTM_BACKEND\b") as exc:
        _forward(_args())
    msg = str(exc.value)
    assert "'bogus'" in msg
    for name in fastlstm.available_backends():
        assert repr(name) in msg


def test_explicit_backend_ignores_bad_env_var(monkeypatch):
    monkeypatch.setenv("FASTLSTM_BACKEND", "bogus")
    _, _, tape = _forward(_args(), backend="numpy", return_tape=True)
    assert tape.backend == "numpy"


# ------------------------------------------------------------------------------ backward


@pytest.mark.parametrize("not_a_tape", [None, (1, 2, 3), {"x": 1}, "tape", np.zeros(3)])
def test_backward_without_tape_is_type_error(not_a_tape):
    with pytest.raises(TypeError, match=_names("tape")):
        fastlstm.backward(not_a_tape)


def test_backward_with_forward_result_is_type_error():
    """The common slip: passing forward's (y, (h_n, c_n)) instead of the tape."""
    out = _forward(_args(), backend="numpy")
    with pytest.raises(TypeError, match=_names("tape")):
        fastlstm.backward(out)


@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
@pytest.mark.parametrize("name", ["dy", "dh_n", "dc_n"])
def test_backward_wrong_shape_is_value_error(backend, layout, name):
    args = _args()
    kwargs = {}
    if layout == "batch_first":
        args["x"] = np.ascontiguousarray(args["x"].transpose(1, 0, 2))
        kwargs["batch_first"] = True
    elif layout == "unbatched":
        args["x"] = args["x"][:, 0, :]
        args["h0"], args["c0"] = args["h0"][0], args["c0"][0]
    y, (h_n, c_n), tape = _forward(args, backend=backend, return_tape=True, **kwargs)
    right = {"dy": y.shape, "dh_n": h_n.shape, "dc_n": c_n.shape}[name]
    for wrong in (right[:-1] + (right[-1] + 1,), right + (1,), right[::-1] if len(right) > 1
                  and right[0] != right[-1] else (right[0] + 2,) + right[1:]):
        with pytest.raises(ValueError, match=_names(name)) as exc:
            fastlstm.backward(tape, **{name: np.ones(wrong)})
        msg = str(exc.value)
        assert str(wrong) in msg and str(right) in msg, msg


def test_backward_time_major_dy_for_batch_first_tape():
    """dy must be in forward's layout: a time-major dy for a batch_first call is rejected."""
    args = _args()
    args["x"] = np.ascontiguousarray(args["x"].transpose(1, 0, 2))
    _, _, tape = _forward(args, batch_first=True, backend="numpy", return_tape=True)
    with pytest.raises(ValueError, match=_names("dy")):
        fastlstm.backward(tape, np.ones((T, B, H)))


@pytest.mark.parametrize("name", ["dy", "dh_n", "dc_n"])
@pytest.mark.parametrize("bad", ["float32", "int64", "complex128"])
def test_backward_wrong_dtype_is_type_error(name, bad):
    y, (h_n, c_n), tape = _forward(_args(), backend="numpy", return_tape=True)
    shape = {"dy": y.shape, "dh_n": h_n.shape, "dc_n": c_n.shape}[name]
    with pytest.raises(TypeError, match=_names(name)):
        fastlstm.backward(tape, **{name: np.ones(shape, dtype=bad)})
