"""Small helpers shared by the reference cells."""
import numpy as np
from scipy.special import expit as sigmoid  # noqa: F401  (re-exported: the logistic sigmoid)


def split_gates(a, n):
    """Split a stacked (..., n*H) array into its n (..., H) blocks, in the stacked order."""
    return np.split(a, n, axis=-1)


def affine(x, w, b=None):
    """x (B, K) @ w.T (w (G, K)) + b (G,) or nothing: one gate block's pre-activation.

    w may also be a reduced-precision weight (quantized.py's Int8Matrix or BFloat16Matrix),
    whose own product then runs: the cells' math is the same at every precision."""
    out = x @ w.T if isinstance(w, np.ndarray) else w.product(x)
    return out if b is None else out + b


def row_blocks(w, n):
    """The n row blocks (G/n, K) of a stacked weight w (G, K), in the stacked order (plain
    arrays or reduced-precision weights, whose scales are per row)."""
    size = w.shape[0] // n
    if isinstance(w, np.ndarray):
        return [w[k * size:(k + 1) * size] for k in range(n)]
    return [w.rows(k * size, (k + 1) * size) for k in range(n)]
