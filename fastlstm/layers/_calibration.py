"""Calibration data for m.quantize("int8", calibration=x): the Gram matrices of the inputs that
each weight matrix of the float module meets when it runs on x (fastlstm/reference/quantized.py,
calibrated_codes, picks the int8 codes from them).

    grams = input_grams(module, x, lengths)     # {state_dict key: (K, K) float64}

    weight_ih_l{l}{sfx}   the layer's input at every valid step (x for layer 0; for the others
                          the layer below's outputs, both directions side by side), K = its width
    weight_hh_l{l}{sfx}   h_{t-1} at every valid step: the direction's outputs (T, B, H_out)
                          but each row's last one in the direction's order (h_0 is zeros, which
                          adds nothing), K = H_out
(A projection LSTM's W_hr meets o * tanh(c), which is not kept: quantize refuses to calibrate
one; its W_hh would meet the projected h_{t-1}.)

Steps at or past a row's length are left out. The module runs in inference mode (no dropout)
on its own backend; x is read in its layout (batch_first or not, or unbatched (T, I)).
"""
import numpy as np

from .._checks import check_lengths, check_x
from ._stack import stack_forward


def _checked(module, x):
    try:
        x, unbatched, shape = check_x(x, module.batch_first)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"calibration: {exc}") from None
    if shape[2] != module.input_size:
        raise ValueError(f"calibration: expected input size (last axis) input_size = "
                         f"{module.input_size}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("calibration: holds NaN or infinite values")
    return x.astype(module.dtype, copy=False), unbatched, shape


def input_grams(module, x, lengths=None):
    """{state_dict key: Gram matrix (K, K) float64} of the float stack `module` on calibration
    data x (its input layout) with lengths (B,) or None (see the module docstring)."""
    x, unbatched, (T, B, _) = _checked(module, x)
    lengths = check_lengths(lengths, T, B, unbatched, name="calibration_lengths")
    if unbatched:
        x_tm = x[:, None, :]
    else:
        x_tm = x.transpose(1, 0, 2) if module.batch_first else x
    steps = np.arange(T)[:, None]
    n = np.full(B, T) if lengths is None else lengths
    valid = steps < n[None, :]                                   # (T, B)
    grams = {}

    def observe(layer, sfx, reverse, inp, y):
        name = f"_l{layer}{sfx}"
        z = inp[valid].astype(np.float64)
        grams["weight_ih" + name] = z.T @ z
        last = (steps == 0) if reverse else (steps == n[None, :] - 1)
        h = y[valid & ~last].astype(np.float64)
        grams["weight_hh" + name] = h.T @ h

    stack_forward(module, module._params, np.ascontiguousarray(x_tm), None, None, lengths,
                  None, False, observe=observe)
    return grams
