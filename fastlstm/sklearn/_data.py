"""Reading X for the estimators: every accepted form of X becomes one padded batch of sequences.

    x, lengths = as_sequences(X, dtype=np.float32)

The forms of X (N sequences; T steps; I features per step):

    (N, T, I) array               as it is; lengths None (every sequence has T steps)
    (N, T) array (or a table:     N univariate sequences of T steps: x (N, T, 1); lengths None
      a DataFrame, a list of
      equal-length rows)
    a list (or tuple) of N        padded with zeros to T = max T_i: x (N, T, I), lengths (N,)
      (T_i, I) arrays             int64 = the T_i (fastlstm skips the padded steps); None
                                  when every T_i = T
    a list of N 1-D arrays of     univariate sequences of different lengths: x (N, T, 1),
      different lengths T_i       lengths (N,) = the T_i (equal lengths read as an (N, T)
                                  table, above)

x is a new C-contiguous array of `dtype` (or X itself when it already is one); lengths is None
or (N,) int64 with 1 <= T_i <= T.

Errors name the argument (`name`, "X" by default): a sparse matrix is a TypeError ("sparse
input is not supported"); complex numbers a ValueError; values that are not numbers a
TypeError (with NumPy's "float() argument must be a string or a real number" message); a
1-D array, more than 3 dimensions, no sequences, no steps or no features a ValueError; NaN or
infinity (also from a float64 value too large for float32) a ValueError ("Input X contains
NaN"), as scikit-learn's validation words it.

NumPy only (no scikit-learn), so that fastlstm.dask can read X the same way.
"""
from collections import namedtuple

import numpy as np

#: what _read returns: x (N, T, I), lengths (N,) int64 or None, and which form X had:
#: "table" (2-D), "array" (3-D) or "list" (sequences of different lengths)
Sequences = namedtuple("Sequences", ["x", "lengths", "form"])

_FORMS = ("a 3-D array (N, T, I) of sequences, a 2-D array (N, T) of univariate sequences, "
          "or a list of (T_i, I) arrays")


def as_sequences(X, *, dtype=np.float32, name="X"):
    """X in any accepted form (see the module docstring) -> (x (N, T, I) of `dtype`, lengths
    (N,) int64 or None). dtype: "float32" or "float64"."""
    seqs = _read(X, dtype=dtype, name=name)
    return seqs.x, seqs.lengths


def _read(X, *, dtype=np.float32, name="X"):
    """X -> Sequences(x, lengths, form); see the module docstring."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    if _is_sparse(X):
        raise TypeError(f"{name}: sparse input is not supported (a sequence model reads dense "
                        f"arrays); convert it with {name}.toarray()")
    if isinstance(X, (list, tuple)) and len(X) > 0:
        ragged = _read_list(X, dtype, name)
        if ragged is not None:
            return ragged
    arr = _numbers(name, X, dtype)
    if arr.ndim == 2:
        x, form = arr[:, :, None], "table"
    elif arr.ndim == 3:
        x, form = arr, "array"
    elif arr.ndim < 2:
        raise ValueError(f"{name}: expected {_FORMS}; got a {arr.ndim}-D array of shape "
                         f"{arr.shape}. Reshape your data: X.reshape(1, -1) for a single "
                         f"univariate sequence, X.reshape(-1, 1) for sequences of one step")
    else:
        raise ValueError(f"{name}: expected {_FORMS}; got a {arr.ndim}-D array of shape "
                         f"{arr.shape}")
    N, T, I = x.shape
    if N == 0:
        raise ValueError(f"{name}: found array with 0 sample(s) (shape={arr.shape}) while "
                         f"a minimum of 1 is required.")
    if T == 0 and form == "table":         # scikit-learn's words for a table
        raise ValueError(f"{name}: found array with 0 feature(s) (shape={arr.shape}) while "
                         f"a minimum of 1 is required.")
    if T == 0:
        raise ValueError(f"{name}: found array with 0 steps (shape={arr.shape}) while a "
                         f"minimum of 1 is required.")
    if I == 0:
        raise ValueError(f"{name}: found array with 0 feature(s) per step (shape="
                         f"{arr.shape}) while a minimum of 1 is required.")
    x = np.ascontiguousarray(x, dtype=dtype)
    _check_finite(name, x)
    return Sequences(x, None, form)


def _is_sparse(X):
    if not (hasattr(X, "tocsr") or hasattr(X, "tocoo")):    # cheap test before the import
        return False
    from scipy import sparse

    return sparse.issparse(X)


def _numbers(name, value, dtype):
    """value as an ndarray of real numbers (bool and integers become floats later)."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:              # ragged nested lists
        raise ValueError(f"{name}: expected {_FORMS}; could not read it as an array: "
                         f"{exc}") from exc
    if arr.dtype.kind == "c":
        raise ValueError(f"{name}: Complex data not supported (dtype {arr.dtype})")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: expected numbers, got dtype {arr.dtype} with a value "
                            f"that is not one: {exc}") from exc
    return arr


def _read_list(X, dtype, name):
    """A list of (T_i, I) arrays, or of 1-D arrays of different lengths -> Sequences; None when
    X is something else (a table given as a list of equal rows, say)."""
    items = []
    for item in X:
        if _is_sparse(item) or np.ndim(item) not in (1, 2):
            return None
        items.append(item)
    ndims = {np.ndim(item) for item in items}
    if ndims == {1}:
        if len({len(item) for item in items}) == 1:
            return None                    # equal rows: an (N, T) table
        items = [np.asarray(item)[:, None] for item in items]
    elif ndims != {2}:
        return None
    arrays = []
    for i, item in enumerate(items):
        arr = _numbers(f"{name}[{i}]", item, dtype)
        if arr.shape[0] == 0:
            raise ValueError(f"{name}[{i}]: a sequence needs at least one step, got shape "
                             f"{arr.shape}")
        arrays.append(arr)
    sizes = {arr.shape[1] for arr in arrays}
    if len(sizes) != 1:
        first = arrays[0].shape[1]
        bad = next(i for i, arr in enumerate(arrays) if arr.shape[1] != first)
        raise ValueError(f"{name}: every sequence needs the same number of features per step; "
                         f"{name}[0] has {first}, {name}[{bad}] has {arrays[bad].shape[1]}")
    I = sizes.pop()
    if I == 0:
        raise ValueError(f"{name}: found sequences with 0 feature(s) per step while a minimum "
                         f"of 1 is required")
    lengths = np.array([arr.shape[0] for arr in arrays], dtype=np.int64)
    x = np.zeros((len(arrays), int(lengths.max()), I), dtype=dtype)
    for row, arr in zip(x, arrays):
        row[:arr.shape[0]] = arr           # the padded steps stay 0 (never read)
    _check_finite(name, x)
    if (lengths == x.shape[1]).all():      # no padding: no lengths needed
        lengths = None
    return Sequences(x, lengths, "list")


def _check_finite(name, x):
    """x (a float array): ValueError when it holds NaN or infinity (scikit-learn's words)."""
    if np.isfinite(x).all():
        return
    what = "NaN" if np.isnan(x).any() else f"infinity or a value too large for {x.dtype!r}"
    raise ValueError(f"{name}: Input {name} contains {what}.")


def check_lengths(lengths, seqs, name="lengths"):
    """lengths given by the caller for an (N, T, I) or (N, T) array -> (N,) int64 with
    1 <= lengths[b] <= T; a list X carries its own lengths, so lengths must be None there."""
    if lengths is None:
        return seqs.lengths
    if seqs.form == "list":
        raise ValueError(f"{name}: a list X of sequences carries its own lengths; give "
                         f"lengths only with an (N, T, I) or (N, T) array")
    arr = np.asarray(lengths)
    N, T = seqs.x.shape[:2]
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.shape != (N,):
        raise ValueError(f"{name}: expected shape (N,) = ({N},), one length per sequence, got "
                         f"{arr.shape}")
    if arr.min() < 1 or arr.max() > T:
        bad = arr[(arr < 1) | (arr > T)][0]
        raise ValueError(f"{name}: each length must be in [1, T] = [1, {T}], got {bad}")
    return arr.astype(np.int64)


__all__ = ["as_sequences"]
