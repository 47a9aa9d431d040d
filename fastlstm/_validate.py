"""Argument checks for the public API: every check runs before any kernel does.

Errors name the argument: a wrong dtype or type is a TypeError, a wrong shape a ValueError
with the expected and the given shape.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(name, value, dtype=None):
    """`value` as an ndarray of float32 or float64 (and of `dtype` when given); never copies."""
    if type(value) is np.ndarray and value.dtype == dtype and dtype is not None:
        return value   # the common case, first (dtype is one of FLOAT_DTYPES: x's)
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists, objects NumPy cannot convert
            raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(
            f"{name}: dtype {arr.dtype} differs from x's dtype {dtype}; "
            "all arrays of one call must share one dtype"
        )
    return arr


def check_shape(name, arr, expected, what=""):
    """Raise ValueError unless arr.shape == expected; `what` spells the expected shape symbolically."""
    if arr.shape != expected and arr.shape != tuple(expected):
        spelled = f"{what} = {tuple(expected)}" if what else f"{tuple(expected)}"
        raise ValueError(f"{name}: expected shape {spelled}, got {arr.shape}")


def optional_array(name, value, dtype, expected, what=""):
    """None, or `value` checked for dtype and shape."""
    if value is None:
        return None
    arr = as_float_array(name, value, dtype)
    check_shape(name, arr, expected, what)
    return arr


def check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_choice(name, value, choices):
    """`value` when it is one of the strings `choices`: else a TypeError (not a string) or a
    ValueError naming `name`, the choices and the value."""
    expected = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {expected}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name}: expected one of {expected}, got {value!r}")
    return value


def check_positive_int(name, value):
    """`value` as an int >= 1 (a constructor's size); anything else is a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_float_dtype(dtype):
    """`dtype` (a name, type or np.dtype) as np.dtype float32 or float64; else a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return dt
