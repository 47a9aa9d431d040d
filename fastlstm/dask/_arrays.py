"""Checks of the dask arrays fastlstm.dask takes: a dask array, chunked along the batch axis
only, with the targets and lengths chunked as the inputs are. Each error is a TypeError or
ValueError naming the argument and saying how to fix it."""
import math

import numpy as np


def check_dask_array(name, value, hint=""):
    """value, when it is a dask array; else a TypeError naming `name`."""
    import dask.array as da

    if not isinstance(value, da.Array):
        raise TypeError(f"{name}: expected a dask array (dask.array.Array), got "
                        f"{type(value).__name__}{hint}; wrap a NumPy array with "
                        f"dask.array.from_array({name.split(' ')[0]}, chunks=...) or load it "
                        f"with dask.array")
    return value


def check_numbers(name, arr, integers=False):
    kind = arr.dtype.kind
    if integers:
        if kind not in "iu" or arr.dtype == np.bool_:
            raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    elif arr.dtype == np.bool_ or kind not in "iuf":
        raise TypeError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")


def _axis_label(axis, batch_axis, ndim, time_axis):
    if axis == time_axis:
        return "time"
    if axis == ndim - 1 and ndim >= 3:
        return "features"
    return "a non-batch axis"


def check_batch_chunks(name, arr, batch_axis, time_axis=None, min_ndim=1):
    """arr (a dask array) chunked along batch_axis only; returns its chunks on that axis."""
    if arr.ndim < max(min_ndim, batch_axis + 1):
        raise ValueError(f"{name}: expected at least {max(min_ndim, batch_axis + 1)} "
                         f"dimensions with the batch on axis {batch_axis}, got shape "
                         f"{arr.shape}")
    for axis, chunks in enumerate(arr.chunks):
        if axis != batch_axis and len(chunks) > 1:
            label = _axis_label(axis, batch_axis, arr.ndim, time_axis)
            raise ValueError(
                f"{name}: chunked along axis {axis} ({label}) into {len(chunks)} chunks; "
                f"fastlstm.dask needs {name} chunked along the batch axis (axis {batch_axis}) "
                f"only, each sequence whole in one chunk: {name}.rechunk({{{axis}: -1}})")
    return arr.chunks[batch_axis]


def check_known_chunks(name, chunks, batch_axis):
    if any(isinstance(c, float) and math.isnan(c) for c in chunks):
        raise ValueError(f"{name}: its chunk sizes along the batch axis (axis {batch_axis}) "
                         f"are unknown; call {name}.compute_chunk_sizes() first")


def check_aligned(name, arr, axis, ref_name, ref_chunks, ref_axis):
    """arr's chunks along `axis` equal ref_chunks (the inputs' along ref_axis)."""
    known = not any(isinstance(c, float) and math.isnan(c) for c in ref_chunks)
    if arr.ndim <= axis or (known and arr.shape[axis] != sum(ref_chunks)):
        raise ValueError(f"{name}: expected {sum(ref_chunks)} samples on axis {axis} (as "
                         f"{ref_name} has on axis {ref_axis}), got shape {arr.shape}")
    if tuple(arr.chunks[axis]) != tuple(ref_chunks):
        raise ValueError(f"{name}: its chunks along axis {axis} {tuple(arr.chunks[axis])} are "
                         f"not aligned with {ref_name}'s along axis {ref_axis} "
                         f"{tuple(ref_chunks)}; rechunk it as {ref_name}: "
                         f"{name}.rechunk({{{axis}: {ref_name}.chunks[{ref_axis}]}})")


def as_lengths(name, lengths, ref_name, ref_chunks, ref_axis):
    """lengths as a dask array (N,) of integers chunked as the inputs' batch axis, or None.
    A NumPy array is cut into the inputs' chunks."""
    import dask.array as da

    if lengths is None:
        return None
    if not isinstance(lengths, da.Array):
        try:
            arr = np.asarray(lengths)
        except Exception as exc:
            raise TypeError(f"{name}: expected None, a dask array or a NumPy array of "
                            f"integers, got {type(lengths).__name__}") from exc
        check_numbers(name, arr, integers=True)
        if arr.ndim != 1 or arr.shape[0] != sum(ref_chunks):
            raise ValueError(f"{name}: expected shape (N,) = ({sum(ref_chunks)},), one length "
                             f"per sequence, got {arr.shape}")
        lengths = da.from_array(arr, chunks=(tuple(ref_chunks),))
    check_numbers(name, lengths, integers=True)
    if lengths.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,), one length per sequence, got "
                         f"{lengths.shape}")
    check_aligned(name, lengths, 0, ref_name, ref_chunks, ref_axis)
    return lengths
