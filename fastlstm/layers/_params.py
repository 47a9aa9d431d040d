"""Parameter names, shapes and initialisation of a stack, under PyTorch's state_dict names.

Per layer l and direction (suffix "" forward, "_reverse" backward), in torch's order:
    weight_ih_l{l}{sfx}  (G*H, I_l)     I_0 = input_size, I_l = D * H_out for l > 0
    weight_hh_l{l}{sfx}  (G*H, H_out)
    bias_ih_l{l}{sfx}    (G*H,)         only with bias=True
    bias_hh_l{l}{sfx}    (G*H,)         only with bias=True
    weight_hr_l{l}{sfx}  (P, H)         LSTM with proj_size = P > 0 only
    weight_peephole_l{l}{sfx} (3, H)    LSTM with peepholes=True only (fastlstm's own key, not
                                        torch's): rows p_i, p_f, p_o (SPEC.md section 4)
G = 4 (LSTM, gates i, f, g, o), 3 (GRU, r, z, n), 1 (RNN); H_out = P if P > 0 else H.
"""
from collections import OrderedDict

import numpy as np

from .._checks import GATE_BLOCKS


def direction_suffixes(bidirectional):
    return ("", "_reverse") if bidirectional else ("",)


def param_shapes(kind, input_size, hidden_size, num_layers, bias, bidirectional, proj_size,
                 peepholes=False):
    """OrderedDict {state_dict key: shape} in torch's order (see the module docstring)."""
    G = GATE_BLOCKS[kind] * hidden_size
    H_out = proj_size if proj_size > 0 else hidden_size
    D = 2 if bidirectional else 1
    shapes = OrderedDict()
    for layer in range(num_layers):
        I_l = input_size if layer == 0 else D * H_out
        for sfx in direction_suffixes(bidirectional):
            shapes[f"weight_ih_l{layer}{sfx}"] = (G, I_l)
            shapes[f"weight_hh_l{layer}{sfx}"] = (G, H_out)
            if bias:
                shapes[f"bias_ih_l{layer}{sfx}"] = (G,)
                shapes[f"bias_hh_l{layer}{sfx}"] = (G,)
            if proj_size > 0:
                shapes[f"weight_hr_l{layer}{sfx}"] = (proj_size, hidden_size)
            if peepholes:
                shapes[f"weight_peephole_l{layer}{sfx}"] = (3, hidden_size)
    return shapes


def init_params(shapes, hidden_size, dtype, rng):
    """Every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch.nn does, with `rng`
    (a numpy Generator); returns OrderedDict {key: ndarray of `dtype`}."""
    bound = 1.0 / np.sqrt(hidden_size)
    return OrderedDict((key, rng.uniform(-bound, bound, size=shape).astype(dtype))
                       for key, shape in shapes.items())


def _as_array(key, value):
    """`value` (a NumPy array, a torch tensor or anything array-like) as an ndarray."""
    if hasattr(value, "detach"):   # a torch tensor: no torch import needed
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"state_dict[{key!r}]: expected a float array, got "
                        f"{type(value).__name__}") from exc


def check_state_dict(state_dict, shapes, dtype):
    """The values of `state_dict` checked against `shapes` (OrderedDict key -> shape) and
    converted to `dtype` (new arrays, never sharing memory with the inputs).

    A missing or unexpected key is a KeyError, a wrong shape a ValueError, a value that is
    not a float array a TypeError; each names the key, what was expected and what was given.
    """
    if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
        raise TypeError(f"state_dict: expected a mapping of parameter names to arrays, got "
                        f"{type(state_dict).__name__}")
    given = list(state_dict.keys())
    missing = [k for k in shapes if k not in state_dict]
    unexpected = [k for k in given if k not in shapes]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key(s) {missing}")
        if unexpected:
            parts.append(f"unexpected key(s) {unexpected}")
        raise KeyError(f"state_dict: {'; '.join(parts)}; expected keys {list(shapes)}")
    out = OrderedDict()
    for key, shape in shapes.items():
        arr = _as_array(key, state_dict[key])
        if arr.dtype.kind != "f":
            raise TypeError(f"state_dict[{key!r}]: expected a float array of dtype "
                            f"{np.dtype(dtype)}, got dtype {arr.dtype}")
        if arr.shape != tuple(shape):
            raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(shape)}, "
                             f"got {arr.shape}")
        out[key] = np.array(arr, dtype=dtype, order="C", copy=True)
    return out
