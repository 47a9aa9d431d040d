"""Packed weights kept across calls: a layer stack's PackedLayer per layer and direction
(fastlstm._api.PackedLayer: the weights copied into the kernels' form, the biases folded, the
Cython kernels' panels), made once and reused until the weights change.

How a change is never missed. The module has a generation number, bumped by every path that
replaces or may write its parameter arrays:
- load_state_dict (and so the importers, which load through it): new arrays;
- named_parameters() and parameters(): they hand out the module's own arrays, which the
  caller (an optimizer: fastlstm.SGD / Adam ask for them at every step) may then write in
  place.
A PackedLayer made at another generation is never used. And once the module's own arrays have
been handed out, a write through them can come at any later time, with no call to see it: so
from then on (until load_state_dict puts new arrays in place) every call also compares the
arrays with the copies the PackedLayer was made from, bit for bit (one read of the weights,
less than packing them), and packs again on any difference. Every other view of
the parameters is read-only (m.weight_ih_l0) or a copy (state_dict()).

Shapes: as fastlstm.layers._params (per layer l and suffix sfx).
"""
import numpy as np

from .. import _api
from .._backends import same_bytes_function
from ._stack import _layer_params


def cell_code(module):
    """The kernels' cell code (CONTRACT.md) of a stack."""
    if module.kind == "lstm":
        return _api.LSTM
    if module.kind == "gru":
        return _api.GRU_LINEAR_BEFORE_RESET if module.linear_before_reset else \
            _api.GRU_RESET_BEFORE
    return _api.RNN_TANH if module.nonlinearity == "tanh" else _api.RNN_RELU


class PackCache:
    """{(layer, suffix): (generation, PackedLayer, the parameter copies it was made from)}
    for one module (see the module docstring)."""

    __slots__ = ("entries",)

    def __init__(self):
        self.entries = {}

    def layer(self, module, layer, sfx):
        """The PackedLayer for layer `layer`, direction suffix `sfx`, valid for the module's
        current parameters."""
        key = (layer, sfx)
        entry = self.entries.get(key)
        if entry is not None and entry[0] == module._generation and not module._exposed:
            return entry[1]
        params = _layer_params(module._params, layer, sfx)
        if entry is not None and entry[0] == module._generation and _same(entry[2], params):
            return entry[1]
        packed = _api.PackedLayer(cell_code(module), params["w_ih"], params["w_hh"],
                                  params["b_ih"], params["b_hh"], params["w_hr"],
                                  params["peepholes"], module.dtype)
        # the copies to compare with: the PackedLayer's own where it kept the values as
        # they are, the biases apart (it keeps them folded)
        copies = {"w_ih": packed.w_ih, "w_hh": packed.w_hh,
                  "w_hr": packed.w_hr if params["w_hr"] is not None else None,
                  "peepholes": packed.peep if params["peepholes"] is not None else None,
                  "b_ih": None if params["b_ih"] is None else params["b_ih"].copy(),
                  "b_hh": None if params["b_hh"] is None else params["b_hh"].copy()}
        self.entries[key] = (module._generation, packed, copies)
        return packed

    def clear(self):
        self.entries.clear()

    # A copy (pickle, copy.deepcopy) starts empty: the Cython kernels find their packed panels
    # at the first 64-byte boundary of a PackedLayer's scratch, which moves when the array is
    # copied to other memory, so copied scratch would be read at the wrong offset. The copy
    # packs again at its first call.
    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.entries = {}


def _same(copies, params):
    """Whether every parameter still holds its copy's bits (so -0.0 and 0.0 differ, and a
    NaN equals itself)."""
    same_bytes = same_bytes_function()
    for name, value in params.items():
        kept = copies[name]
        if (value is None) != (kept is None):
            return False
        if value is not None and (value.shape != kept.shape
                                  or not same_bytes(np.ascontiguousarray(value), kept)):
            return False
    return True
