"""Argument checks of the functional API, per cell: every check runs before any kernel does.

Each returns the arrays (never copied) and the sizes; errors name the argument (TypeError for
a wrong type or dtype, ValueError for a wrong shape or value) with the expected and given.
"""
import numpy as np

from ._validate import as_float_array, check_flag, check_shape, optional_array

#: gate blocks per weight matrix
GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}


def check_x(x, batch_first):
    """x -> (array, unbatched, (T, B, I))."""
    x = as_float_array("x", x)
    if x.ndim not in (2, 3):
        raise ValueError(
            "x: expected 3 dimensions (T, B, I), (B, T, I) with batch_first, or 2 (T, I) "
            f"unbatched; got shape {x.shape}"
        )
    unbatched = x.ndim == 2
    if unbatched:
        (T, I), B = x.shape, 1
    elif batch_first:
        B, T, I = x.shape
    else:
        T, B, I = x.shape
    if I < 1:
        raise ValueError(f"x: input size must be at least 1, got shape {x.shape}")
    return x, unbatched, (T, B, I)


def check_lengths(lengths, T, B, unbatched, name="lengths"):
    """None, or lengths as (B,) int64 with 0 <= lengths[b] <= T (a new array); errors name
    the argument `name` (ONNX's is "sequence_lens")."""
    if lengths is None:
        return None
    if isinstance(lengths, np.ndarray):
        arr = lengths
    else:
        try:
            arr = np.asarray(lengths)
        except Exception as exc:
            raise TypeError(f"{name}: expected a list or array of integers, got "
                            f"{type(lengths).__name__}") from exc
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    expected = (1,) if unbatched else (B,)
    if unbatched and arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.shape != expected:
        raise ValueError(f"{name}: expected shape (B,) = {expected}, got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > T):   # before any conversion
        bad = arr[(arr < 0) | (arr > T)][0]
        raise ValueError(f"{name}: each length must be in [0, T] = [0, {T}], got {bad}")
    return arr.astype(np.int64)


#: how the errors spell the weights' shapes, per number of gate blocks
_SPELLED = {n: {"w_ih": f"({rows}, I)", "bias": f"({rows},)"}
            for n, rows in ((4, "4*H"), (3, "3*H"), (1, "H"))}


def check_weights(cell, x, w_ih, w_hh, b_ih, b_hh, I, w_hr=None, peepholes=None):
    """The weights of one layer -> (w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, H, H_out)."""
    n = GATE_BLOCKS[cell]
    dtype = x.dtype
    w_hh = as_float_array("w_hh", w_hh, dtype)
    if w_hr is not None:
        w_hr = as_float_array("w_hr", w_hr, dtype)
        if w_hr.ndim != 2 or min(w_hr.shape) < 1:
            raise ValueError(f"w_hr: expected shape (P, H) with P, H >= 1, got {w_hr.shape}")
        P, H = w_hr.shape
        check_shape("w_hh", w_hh, (n * H, P), f"({n}*H, P) with (P, H) = w_hr.shape")
    else:
        if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != n * w_hh.shape[1]:
            what = "(H, H)" if n == 1 else f"({n}*H, H)"
            raise ValueError(f"w_hh: expected shape {what} with H >= 1, got {w_hh.shape}")
        H = P = w_hh.shape[1]
    spelled = _SPELLED[n]
    w_ih = as_float_array("w_ih", w_ih, dtype)
    check_shape("w_ih", w_ih, (n * H, I), spelled["w_ih"])
    b_ih = optional_array("b_ih", b_ih, dtype, (n * H,), spelled["bias"])
    b_hh = optional_array("b_hh", b_hh, dtype, (n * H,), spelled["bias"])
    peepholes = optional_array("peepholes", peepholes, dtype, (3, H), "(3, H)")
    return w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, H, P


def check_state(name, value, dtype, B, n, unbatched, size="H"):
    """None, or an initial state of `n` features: (B, n), or (n,) unbatched; `size` spells n."""
    if value is None:
        return None
    return optional_array(name, value, dtype, (n,) if unbatched else (B, n),
                          f"({size},)" if unbatched else f"(B, {size})")


def check_nonlinearity(nonlinearity):
    if not isinstance(nonlinearity, str) or nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


__all__ = ["GATE_BLOCKS", "check_flag", "check_lengths", "check_nonlinearity", "check_state",
           "check_weights", "check_x"]
