"""One layer's weights at reduced precision (int8, bfloat16) in the kernels' form, and the
packing that src/kernels/_qgemm.h reads.

    layer = ReducedLayer(cell, precision, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes)
    layer.w_ih, layer.w_hh, layer.w_hr: reference.quantized weights (Int8Matrix or
        BFloat16Matrix), what the NumPy reference multiplies with; layer.panels: the same
        packed for the Cython driver (recurrent_quantized.pyx), made once

Packing (_qgemm.h): a weight (blocks * n, K) is cut into its gate blocks of n rows (4 for the
LSTM, 3 for the GRU, 1 for the RNN and the projection), each block's rows padded with zeros
to whole panels of 16 and K to a whole group (4 int8 values, 2 bfloat16); panel p, group g
holds the 16 x 4 (16 x 2) values W[16p + r, 4g + kk] row after row. For int8 the rows' scales
and code sums (for vpdpbusd's unsigned operand) are padded the same way. A thread of the
column split then finds the panels of its units in every gate block at block * chunks + c.
"""
import numpy as np

from . import _api, _spare_buffers
from ._checks import GATE_BLOCKS
from .reference.quantized import MATRICES

#: output rows per panel (recurrent_quantized.PANEL_ROWS, _qgemm.h FL_QR)
PANEL_ROWS = 16
#: values per group of k: int8 (vpdpbusd sums 4), bfloat16 (vdpbf16ps sums 2)
GROUP = {"int8": 4, "bfloat16": 2}
#: the kernels' precision codes
PRECISION_CODES = {"int8": 0, "bfloat16": 1}


def _padded(a, rows, cols):
    out = np.zeros((rows, cols), a.dtype)
    out[:a.shape[0], :a.shape[1]] = a
    return out


def pack(matrix, blocks):
    """(panels (bytes,) uint8, scale (R,) float32, sums (R,) int32) of a reference.quantized
    weight matrix (blocks * n, K) as the module docstring says; R = blocks * padded n (empty
    scale and sums for bfloat16)."""
    N, K = matrix.shape
    n = N // blocks
    n16 = -(-n // PANEL_ROWS) * PANEL_ROWS
    group = GROUP[matrix.precision]
    Kp = -(-K // group) * group
    values = matrix.codes if matrix.precision == "int8" else matrix.bits
    parts, scales, sums = [], [], []
    for q in range(blocks):
        block = _padded(values[q * n:(q + 1) * n], n16, Kp)
        # (panels, 16, groups, group) -> (panels, groups, 16, group)
        tiles = block.reshape(n16 // PANEL_ROWS, PANEL_ROWS, Kp // group, group)
        parts.append(np.ascontiguousarray(tiles.transpose(0, 2, 1, 3)).reshape(-1))
        if matrix.precision == "int8":
            scale = np.zeros(n16, np.float32)
            scale[:n] = matrix.scale[q * n:(q + 1) * n]
            scales.append(scale)
            sums.append(block.astype(np.int32).sum(axis=1))
    panels = np.concatenate(parts).view(np.uint8) if parts else np.zeros(0, np.uint8)
    if matrix.precision == "int8":
        return panels, np.concatenate(scales), np.concatenate(sums).astype(np.int32)
    return panels, np.zeros(0, np.float32), np.zeros(0, np.int32)


class ReducedLayer:
    """One layer and direction at reduced precision: what fastlstm._api.run_layer takes as a
    PackedLayer (never changed after it is made).

    w_ih (G, I), w_hh (G, H_out), w_hr (P, H) or a (0, H) float32 array: reference.quantized
    weights; peep (3, H) or (0, H) and bias (2, G) (folded as CONTRACT.md says): float32;
    panels: {"ih" | "hh" | "hr": (panels, scale, sums)} for the Cython driver.
    """

    __slots__ = ("cell", "precision", "w_ih", "w_hh", "w_hr", "peep", "bias", "has_b_ih",
                 "has_b_hh", "panels", "dtype", "scratch", "spare")

    def __init__(self, cell, precision, w_ih, w_hh, b_ih, b_hh, w_hr, peepholes):
        """w_ih, w_hh, w_hr: float arrays to quantize, or reference.quantized weights as they
        are (an imported quantized model's); w_hr, peepholes, b_ih, b_hh may be None."""
        matrix = MATRICES[precision]
        as_matrix = (lambda w: w if isinstance(w, matrix)
                     else matrix.quantize(np.asarray(w, np.float32)))
        G = w_ih.shape[0]
        H = G // GATE_BLOCKS[_api._KIND_OF_CELL[cell]]
        self.cell, self.precision, self.dtype = cell, precision, np.dtype(np.float32)
        self.w_ih, self.w_hh = as_matrix(w_ih), as_matrix(w_hh)
        self.w_hr = np.zeros((0, H), np.float32) if w_hr is None else as_matrix(w_hr)
        self.peep = (np.zeros((0, H), np.float32) if peepholes is None
                     else np.array(peepholes, dtype=np.float32, order="C"))
        self.bias = _api._fold_biases(cell, b_ih, b_hh, G, np.dtype(np.float32))
        self.has_b_ih, self.has_b_hh = b_ih is not None, b_hh is not None
        blocks = GATE_BLOCKS[_api._KIND_OF_CELL[cell]]
        self.panels = {"ih": pack(self.w_ih, blocks), "hh": pack(self.w_hh, blocks),
                       "hr": (pack(self.w_hr, 1) if w_hr is not None else
                              (np.zeros(0, np.uint8), np.zeros(0, np.float32),
                               np.zeros(0, np.int32)))}
        self.scratch = {}
        self.spare = _spare_buffers.Spare()   # an inference call's buffers, kept for the next
