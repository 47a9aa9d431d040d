"""Reduced-precision matrix products for inference: the math of int8 and bfloat16, written to be
read (SPEC.md section 8, "Reduced precision"). The kernels mirror these functions; the cells
(lstm.py, gru.py, rnn.py) call them through _math.affine when a weight is one of the two
classes below, so the pointwise math stays float32 and is written once.

int8, as ONNX Runtime's and PyTorch's dynamic quantization but with a scale per row: weights
symmetric, activations asymmetric (a zero point per row, so that a row of post-ReLU values
uses all the codes, not half):

    weights W (N, K):    s_w[n] = max_k |W[n, k]| / 127,   W_q[n, k] = rint(W[n, k] * (127 / max_k |W[n, k]|))
    activations x (M, K), at every product (for h_{t-1}: every step):
                         lo[m] = min(min_k x[m, k], 0),  hi[m] = max(max_k x[m, k], 0),
                         r = hi - lo,  s_x[m] = r / 254,  inv = 254 / r,
                         z_x[m] = rint(-127 - lo * inv)  (0 when inv is 0) (in [-127, 127])
                         x_q[m, k] = clip(rint(x[m, k] * inv) + z_x[m], -127, 127)
                         (x ~ s_x * (x_q - z_x); 0 is exactly the code z_x)
    product:             acc[m, n] = sum_k x_q[m, k] W_q[n, k] - z_x[m] * sum_k W_q[n, k]
                                                                          (exact: int32)
                         out[m, n] = float32(acc[m, n]) * (s_x[m] * s_w[n])

rint rounds half to even; every code is in [-127, 127] (-128 is never used, so the kernels'
AVX2 path can take |W_q| and sign-flip x_q without overflow). A row whose values are
symmetric about 0 (lo = -hi) gets z_x = 0 and s_x = max|x| / 127: the symmetric code. A row of
zeros has scale 0, zero point 0 and quantizes to zeros. An activation row holding NaN or an
infinity has scale NaN (so its outputs are NaN, as the float32 product's would be), zero
point 0, and quantizes to zeros. All of it is float32 arithmetic in the order written, so a
kernel that does the same operations gets the same bits; the integer sums are exact in any
order.

Calibrated rounding (m.quantize("int8", calibration=x)): the same scales, the same codes'
range and the same products; only the choice of each W_q[n, k] between its two neighbours
changes. Given the Gram matrix G = sum_i z_i z_i^T (K, K) of the inputs z_i that W meets on
calibration data, the codes are picked column after column to keep |(W - s_w W_q) z| small
over those inputs, not |W - s_w W_q| itself (GPTQ, Frantar et al. 2022): column k is rounded,
and its rounding error, scaled by the Cholesky factor U of (G + lambda I)^-1 (upper,
U^T U = (G + lambda I)^-1, lambda = damping * mean(diag G)), is taken off the columns not
yet rounded:

    for k in 0 .. K-1:
        W_q[:, k] = clip(rint(W'[:, k] / s_w), -127, 127)
        e = (W'[:, k] - s_w * W_q[:, k]) / U[k, k]
        W'[:, k+1:] -= e U[k, k+1:]          (W' starts as W, in float64)

Inputs never seen in calibration (G[k, k] = 0) get G[k, k] = 1: their columns round as
without calibration, and the earlier columns' errors are not pushed onto them.

bfloat16: W is stored as bfloat16 (the top 16 bits of a float32, rounded to nearest even), and
at every product the activations are rounded the same way. A product of two bfloat16 numbers
is exact in float32, so only the float32 sums round: kernels equal this to rounding.

Shapes: W (N, K); x (M, K); out (M, N) float32.
"""
import numpy as np

#: the largest magnitude of an int8 code (symmetric: -128 is never used)
QMAX = 127


def row_scales(a):
    """(scale (M,), inverse (M,)) of a (M, K) float32: max|a[m]| / 127 and 127 / max|a[m]|
    (0 and 0 for a row of zeros; NaN and 0 for a row that holds NaN or an infinity)."""
    amax = np.max(np.abs(a), axis=1) if a.shape[1] else np.zeros(a.shape[0], np.float32)
    amax = amax.astype(np.float32)
    finite = np.isfinite(amax)
    positive = finite & (amax > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(positive, np.float32(QMAX) / amax, np.float32(0)).astype(np.float32)
        scale = np.where(finite, amax / np.float32(QMAX), np.float32(np.nan)).astype(np.float32)
    return scale, inverse


def quantize_rows(a):
    """a (M, K) float32 -> (codes (M, K) int8 in [-127, 127], scale (M,) float32), as the module
    docstring says."""
    a = np.asarray(a, dtype=np.float32)
    scale, inverse = row_scales(a)
    with np.errstate(invalid="ignore"):
        codes = np.rint(a * inverse[:, None])
    codes = np.where(np.isfinite(codes), codes, 0)
    return np.clip(codes, -QMAX, QMAX).astype(np.int8), scale


#: the damping of calibrated rounding: lambda = CALIBRATION_DAMPING * mean(diag G); chosen
#: from 0.01, 0.1 and 1.0 by the error of silero VAD's LSTM with int8 weights and float32
#: activations, calibrated and scored on two different synthetic clips (a prototype outside
#: the repository; the bench's scored clip was not used to pick it)
CALIBRATION_DAMPING = 0.1


def calibrated_codes(w, gram, damping=CALIBRATION_DAMPING):
    """w (N, K) float32, gram (K, K) (the sum of z z^T over calibration inputs z (K,)) ->
    (codes (N, K) int8 in [-127, 127], scale (N,) float32): the scale of quantize_rows (max|w|
    / 127 per row), the codes picked as the module docstring says."""
    w = np.asarray(w, dtype=np.float32)
    scale, _ = row_scales(w)
    step = np.where(scale > 0, scale, np.float32(1)).astype(np.float64)
    gram = np.array(gram, dtype=np.float64)
    unseen = np.diag(gram) <= 0
    gram[unseen, unseen] = 1.0
    gram[np.diag_indices_from(gram)] += damping * np.mean(np.diag(gram))
    upper = np.linalg.cholesky(np.linalg.inv(gram)).T
    rest = w.astype(np.float64)
    codes = np.empty(w.shape, dtype=np.int8)
    for k in range(w.shape[1]):
        col = np.clip(np.rint(rest[:, k] / step), -QMAX, QMAX)
        codes[:, k] = col
        err = (rest[:, k] - col * step) / upper[k, k]
        rest[:, k + 1:] -= np.outer(err, upper[k, k + 1:])
    return codes, scale


#: steps between the activation codes -127 and 127
QSTEPS = 2 * QMAX


def quantize_activations(a):
    """a (M, K) float32 -> (codes (M, K) int8 in [-127, 127], scale (M,) float32, zero (M,)
    float32, integer-valued): the asymmetric code of the module docstring."""
    a = np.asarray(a, dtype=np.float32)
    M, K = a.shape
    if K:
        lo = np.minimum(a.min(axis=1), np.float32(0))
        hi = np.maximum(a.max(axis=1), np.float32(0))
    else:
        lo = hi = np.zeros(M, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(lo) & np.isfinite(hi)
        span = np.where(finite, hi - lo, np.float32(0)).astype(np.float32)
        positive = span > 0
        inverse = np.where(positive, np.float32(QSTEPS) / np.where(positive, span, 1),
                           np.float32(0)).astype(np.float32)
        scale = np.where(finite, span / np.float32(QSTEPS), np.float32(np.nan))
        zero = np.where(inverse > 0, np.rint(np.float32(-QMAX) - lo * inverse), np.float32(0))
        codes = np.rint(a * inverse[:, None]) + zero[:, None]
    codes = np.where(finite[:, None], codes, 0)
    return (np.clip(codes, -QMAX, QMAX).astype(np.int8), scale.astype(np.float32),
            zero.astype(np.float32))


def to_bfloat16(a):
    """a float32 -> bfloat16 bit patterns (uint16): rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) \
        >> np.uint32(16)
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    rounded = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded)
    return rounded.astype(np.uint16)


def from_bfloat16(bits):
    """bfloat16 bit patterns (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(
        np.float32)


def round_to_bfloat16(a):
    """a float32 rounded to the nearest bfloat16, as float32."""
    return from_bfloat16(to_bfloat16(a))


class Int8Matrix:
    """A weight W (N, K) in int8: codes (N, K) int8 in [-127, 127] and scale (N,) float32, one
    per output row, W ~ codes * scale[:, None]."""

    precision = "int8"

    def __init__(self, codes, scale):
        self.codes = np.ascontiguousarray(codes, dtype=np.int8)
        self.scale = np.ascontiguousarray(scale, dtype=np.float32)
        if self.codes.ndim != 2 or self.scale.shape != (self.codes.shape[0],):
            raise ValueError(f"Int8Matrix: expected codes (N, K) and scale (N,), got "
                             f"{self.codes.shape} and {self.scale.shape}")

    @classmethod
    def quantize(cls, w, gram=None):
        """Symmetric int8 with one scale per row of w (N, K) (finite float values); with the
        Gram matrix (K, K) of calibration inputs, the codes of calibrated_codes."""
        if gram is None:
            return cls(*quantize_rows(w))
        return cls(*calibrated_codes(w, gram))

    @property
    def shape(self):
        return self.codes.shape

    def rows(self, start, stop):
        """The Int8Matrix of rows start <= n < stop (a gate block)."""
        return Int8Matrix(self.codes[start:stop], self.scale[start:stop])

    def dequantized(self):
        """codes * scale (N, K) float32: what the int8 weight stands for."""
        return self.codes.astype(np.float32) * self.scale[:, None]

    def product(self, x):
        """x (M, K) float32 @ W^T -> (M, N) float32, the int8 way (module docstring)."""
        codes, scale, zero = quantize_activations(x.reshape(-1, x.shape[-1]))
        w = self.codes.astype(np.int32)
        acc = codes.astype(np.int32) @ w.T - zero.astype(np.int32)[:, None] * w.sum(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):   # a row's scale may be inf or NaN
            out = acc.astype(np.float32) * (scale[:, None] * self.scale[None, :])
        return out.reshape(x.shape[:-1] + (self.shape[0],))


class BFloat16Matrix:
    """A weight W (N, K) in bfloat16: bits (N, K) uint16 (bfloat16 bit patterns)."""

    precision = "bfloat16"

    def __init__(self, bits):
        self.bits = np.ascontiguousarray(bits, dtype=np.uint16)
        if self.bits.ndim != 2:
            raise ValueError(f"BFloat16Matrix: expected bits (N, K), got {self.bits.shape}")

    @classmethod
    def quantize(cls, w):
        """w (N, K) rounded to bfloat16 (nearest even)."""
        return cls(to_bfloat16(w))

    @property
    def shape(self):
        return self.bits.shape

    def rows(self, start, stop):
        return BFloat16Matrix(self.bits[start:stop])

    def dequantized(self):
        """The weight as float32 (exact)."""
        return from_bfloat16(self.bits)

    def product(self, x):
        """x (M, K) float32 rounded to bfloat16, @ W^T, sums in float32 -> (M, N) float32."""
        return round_to_bfloat16(x) @ self.dequantized().T


#: precision name -> weight class
MATRICES = {"int8": Int8Matrix, "bfloat16": BFloat16Matrix}
