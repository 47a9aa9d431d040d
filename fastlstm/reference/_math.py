"""Small helpers shared by the reference cells."""
import numpy as np
from scipy.special import expit as sigmoid  # noqa: F401  (re-exported: the logistic sigmoid)


def split_gates(a, n):
    """Split a stacked (..., n*H) array into its n (..., H) blocks, in the stacked order."""
    return np.split(a, n, axis=-1)


def affine(x, w, b=None):
    """x (B, K) @ w.T (w (G, K)) + b (G,) or nothing: one gate block's pre-activation."""
    out = x @ w.T
    return out if b is None else out + b
