"""The functional API's packed weights (fastlstm.forward, gru_forward, rnn_forward): a small
cache of PackedLayers, so that a loop that calls forward with the same weight arrays copies,
folds and packs them once rather than at every call.

Safe by content, not by name. An entry is found by the identity of the call's weight arrays
(cell, dtype and the id of each of w_ih, w_hh, b_ih, b_hh, w_hr, peepholes), and then used
only when every one of those arrays still holds, bit for bit, the values the entry was made
from (its own copies, compared byte for byte: one read of the weights, cheaper than packing
them). So an array written in place, a recycled id, or a new array at an old address is never
served stale weights: on any difference the layer is packed again and the entry replaced.
Results are the same bits with or without the cache: it only skips repeating the packing.

Bounded: at most MAX_ENTRIES layers, each of at most MAX_LAYER_BYTES of weights, and at most
MAX_TOTAL_BYTES of weights in all (the oldest entries dropped first); larger layers, and
weights given as arrays that are not C-contiguous, are packed at every call as before. An
entry holds about twice its weights' bytes (the packed panels and the copies compared with).
Comparing costs less than packing: at I = H = 512 (8 MiB of LSTM weights) packing took 0.62 ms
a call and comparing 0.18 ms (AMD EPYC, 2 threads). The cache holds copies, never the caller's
arrays, and nothing a call returns shares memory with it (a tape shares the PackedLayer's
arrays, which are never written after they are made).
"""
import numpy as np

#: layers kept (the oldest is dropped first)
MAX_ENTRIES = 4
#: bytes of weights (all of a layer's arrays together) up to which a layer is kept
MAX_LAYER_BYTES = 16 << 20
#: bytes of weights of all the entries together (the oldest are dropped first)
MAX_TOTAL_BYTES = 32 << 20

_entries = {}


def packed_layer(cell, dtype, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, all_same, make_layer):
    """The PackedLayer of these checked weights (b_ih, b_hh, w_hr, peepholes may be None), of
    `dtype`: the cache's when it still matches them, else a new one (kept when it may be).
    all_same(values, copies): whether each array of the tuple `values` is C-contiguous with
    the dtype, shape and bytes of the one at its place in `copies` (None where that is None:
    fastlstm._backends.all_same_function()); make_layer: fastlstm._api.PackedLayer."""
    arrays = (w_ih, w_hh, b_ih, b_hh, w_hr, peepholes)
    # (no array has id(None): the key also says which arguments are None)
    key = (cell, dtype, id(w_ih), id(w_hh), id(b_ih), id(b_hh), id(w_hr), id(peepholes))
    entry = _entries.get(key)
    if entry is not None and all_same(arrays, entry[1]):
        return entry[0]
    packed = make_layer(cell, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes, dtype)
    if all(a is None or a.flags.c_contiguous for a in arrays) and \
            _weight_bytes(arrays) <= MAX_LAYER_BYTES:
        # the copies to compare with: the PackedLayer's own, the biases apart (it folds them)
        copies = (packed.w_ih, packed.w_hh, None if b_ih is None else b_ih.copy(),
                  None if b_hh is None else b_hh.copy(), None if w_hr is None else packed.w_hr,
                  None if peepholes is None else packed.peep)
        _entries.pop(key, None)
        _entries[key] = (packed, copies, _weight_bytes(arrays))
        while len(_entries) > MAX_ENTRIES or (
                len(_entries) > 1 and sum(e[2] for e in list(_entries.values()))
                > MAX_TOTAL_BYTES):
            try:
                _entries.pop(next(iter(_entries)), None)
            except (StopIteration, RuntimeError):   # emptied or changed by another thread
                break
    return packed


def _weight_bytes(arrays):
    return sum(a.nbytes for a in arrays if a is not None)


def kept_bytes():
    """The bytes of weights the entries hold together (at most MAX_TOTAL_BYTES)."""
    return sum(e[2] for e in list(_entries.values()))


def numpy_all_same(values, copies):
    """all_same without the Cython kernels: NumPy compares the bytes."""
    for value, kept in zip(values, copies):
        if kept is None:
            if value is not None:
                return False
        elif not (isinstance(value, np.ndarray) and value.flags.c_contiguous
                  and value.dtype == kept.dtype and value.shape == kept.shape
                  and numpy_same_bytes(value, kept)):
            return False
    return len(values) == len(copies)


def numpy_same_bytes(a, b):
    """same_bytes without the Cython kernels: the arrays' bytes compared by NumPy."""
    return a.nbytes == b.nbytes and np.array_equal(a.reshape(-1).view(np.uint8),
                                                   b.reshape(-1).view(np.uint8))


def clear():
    """Drop every entry (tests; nothing else needs to)."""
    _entries.clear()
