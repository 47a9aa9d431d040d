"""Where int8's error on silero VAD's LSTM comes from, and what other int8 schemes would give.

    python scripts/silero_int8_sources.py          (needs silero-vad, onnx, onnxruntime)

Runs the NumPy reference (fastlstm.reference.sequence_forward) on the LSTM input that the bench
captures (fastlstm.bench.quantized.silero_capture: 4 s of synthetic audio), with weight
classes that vary the int8 scheme one part at a time, and prints each one's max abs error
against float32 (the issue's target: below 0.05):

- weights: symmetric int8 per gate row with scale max|w| / 127 (what quantize("int8") does);
  the scale per row that minimises the row's squared rounding error (searched over 0.5-1.0 of
  max / 127, clipping the largest values); or rint with each row's sum of codes kept equal to
  the sum of its exact values (the rounding of the nearest-to-half values flipped), which
  removes the rounding's mean from a product with non-negative inputs.
- or calibrated rounding (quantize("int8", calibration=...): reference.quantized.
  calibrated_codes, from the Gram matrices of a run on another clip, bench.quantized.
  calibration_audio).
- activations (x_t and h_{t-1}): float32 (the weights' share alone); int8 per row with a zero
  point (quantize("int8"): 254 steps over [min(x, 0), max(x, 0)]); symmetric int8 per row
  (max|x| / 127, what quantize("int8") did before the zero point); asymmetric uint8 per row
  (255 steps over [min, max]).

Every scheme stays what the issue asks for: int8 weights with one scale per gate row.
"""
import sys

import numpy as np

from fastlstm.bench.quantized import _lstm_input, calibration_audio, errors, silero_capture
from fastlstm.layers._calibration import input_grams
from fastlstm.reference import sequence_forward
from fastlstm.reference.quantized import QMAX, Int8Matrix, quantize_rows


def max_scale_codes(w):
    """quantize("int8")'s codes: the reference's rounding."""
    return Int8Matrix.quantize(w)


def mse_scale_codes(w, fractions=np.linspace(0.5, 1.0, 51)):
    """Per row, the scale (a fraction of max|w| / 127) with the least squared rounding
    error; codes clipped to [-127, 127]."""
    codes = np.empty(w.shape, np.int8)
    scales = np.empty(w.shape[0], np.float32)
    for n, row in enumerate(w):
        amax = np.abs(row).max()
        best = None
        for f in fractions:
            s = np.float32(amax * f / QMAX) if amax > 0 else np.float32(1)
            q = np.clip(np.rint(row / s), -QMAX, QMAX)
            err = float(np.sum((q * s - row) ** 2))
            if best is None or err < best[0]:
                best = (err, q, s)
        codes[n], scales[n] = best[1], best[2]
    return Int8Matrix(codes, scales)


def sum_keeping_codes(w):
    """The reference's scale; rint, then in each row the values nearest to a half step are
    rounded the other way until the row's codes sum to its exact values' sum (rounded)."""
    base = Int8Matrix.quantize(w)
    exact = w / np.where(base.scale > 0, base.scale, 1)[:, None]
    codes = base.codes.astype(np.int32)
    for n in range(w.shape[0]):
        residual = exact[n] - codes[n]
        need = int(np.rint(residual.sum()))
        if need:
            order = np.argsort(-residual * np.sign(need))[:abs(need)]
            codes[n, order] += np.sign(need)
    return Int8Matrix(np.clip(codes, -QMAX, QMAX), base.scale)


class FloatActivations(Int8Matrix):
    """int8 weights (dequantized) times float32 activations."""

    def product(self, x):
        return x @ self.dequantized().T


class SymmetricActivations(Int8Matrix):
    """int8 weights times activations in symmetric int8 per row (scale max|x| / 127, no zero
    point): the integer sums scaled."""

    def product(self, x):
        codes, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
        acc = codes.astype(np.int32) @ self.codes.T.astype(np.int32)
        out = acc.astype(np.float32) * (scale[:, None] * self.scale[None, :])
        return out.reshape(x.shape[:-1] + (self.shape[0],))


class AsymmetricActivations(Int8Matrix):
    """int8 weights times activations in uint8 per row with a zero point: scale (max - min) /
    255 over [min(x, 0), max(x, 0)], codes rint(x / scale) + zero point in [0, 255]; the
    product's integer sums less zero point * the weights' row sums, as kernels would do it."""

    def product(self, x):
        lo = np.minimum(x.min(axis=-1, keepdims=True), 0)
        hi = np.maximum(x.max(axis=-1, keepdims=True), 0)
        scale = ((hi - lo) / 255).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1))
        zero_point = np.rint(-lo / scale)
        codes = np.clip(np.rint(x / scale) + zero_point, 0, 255)
        acc = (codes - zero_point) @ self.codes.T.astype(np.float64)
        return (acc * scale * self.scale[None, :]).astype(np.float32)


ACTIVATIONS = {"float32": FloatActivations, "int8, zero point": Int8Matrix,
               "symmetric int8": SymmetricActivations,
               "asymmetric uint8": AsymmetricActivations}
WEIGHTS = {"max / 127 (quantize)": max_scale_codes, "least-squares scale": mse_scale_codes,
           "sum-keeping rounding": sum_keeping_codes, "calibrated": Int8Matrix.quantize}


def main():
    cap = silero_capture()
    if "skipped" in cap:
        print(f"skipped: {cap['skipped']}")
        return 1
    module, x, h0, c0 = cap["module"], cap["x"], cap["h0"][0], cap["c0"][0]
    sd = module.state_dict()
    params = {"w_ih": sd["weight_ih_l0"], "w_hh": sd["weight_hh_l0"], "b_ih": sd["bias_ih_l0"],
              "b_hh": sd["bias_hh_l0"]}
    y32 = sequence_forward("lstm", params, x, (h0, c0))[0]
    print(f"silero VAD's LSTM {tuple(x.shape)}: max abs error of int8 schemes against float32 "
          f"(reference math); quantize('int8') = max / 127 weights, int8 activations with a "
          f"zero point")
    print(f"{'weights':<24} " + " ".join(f"{a:>18}" for a in ACTIVATIONS))
    _, x_cal, _ = _lstm_input(cap["session"], calibration_audio(), module.hidden_size)
    grams = input_grams(module, x_cal)
    grams = {"w_ih": grams["weight_ih_l0"], "w_hh": grams["weight_hh_l0"]}
    for wname, make in WEIGHTS.items():
        rounded = {k: make(params[k], grams[k]) if wname == "calibrated" else make(params[k])
                   for k in ("w_ih", "w_hh")}
        cells = []
        for act in ACTIVATIONS.values():
            q = {k: act(m.codes, m.scale) for k, m in rounded.items()}
            y = sequence_forward("lstm", {**params, **q}, x, (h0, c0))[0]
            cells.append(f"{errors(y, y32)[0]:>18.4f}")
        print(f"{wname:<24} " + " ".join(cells))
    codes, _ = quantize_rows(x[:, 0])
    print(f"x: min {x.min():.2f}, max {x.max():.2f}, {np.mean(x == 0):.0%} zeros "
          f"(post-ReLU: a symmetric code uses half its range; {np.mean(codes == 0):.0%} of "
          f"x's symmetric int8 codes are 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
