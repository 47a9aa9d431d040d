"""Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (SPEC.md section 9).

    total_norm = clip_grad_norm(grads, max_norm)     # grads: a dict or a list of dicts

All gradients together are seen as one long vector g:

    ‖g‖ = (Σ_all |g_i|^p)^(1/p)          p = norm_type (2 by default; inf: max |g_i|)
    coef = max_norm / (‖g‖ + 1e-6)
    if coef < 1:  every gradient g ← g · coef     (in place)

so after clipping ‖g‖ is just below max_norm, and gradients already within it are left as they
are. As torch, a non-finite norm (inf or nan in a gradient) makes coef 0 or nan and the
gradients are multiplied by it; check the returned norm with math.isfinite to skip such a step.
"""
import math
import numbers
from collections.abc import Mapping

import numpy as np

from .optim import _fused_kernels


def _gradient_arrays(grads):
    """Every gradient array in `grads` (a dict, or a list / tuple of dicts); None skipped."""
    if isinstance(grads, Mapping):
        grads = [grads]
    elif not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads: expected a dict or a list of dicts, got {type(grads).__name__}")
    arrays = []
    for i, g in enumerate(grads):
        if not isinstance(g, Mapping):
            raise TypeError(f"grads[{i}]: expected a dict of gradient arrays, got "
                            f"{type(g).__name__}")
        for key, a in g.items():
            if a is None:
                continue
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                raise TypeError(f"grads[{i}][{key!r}]: expected a float ndarray (clipped in "
                                f"place), got {type(a).__name__}")
            arrays.append(a)
    return arrays


def _sum_of_squares(a):
    """Σ a_i² in float64: one pass of the Numba kernel (numba_optim.sum_of_squares) for a
    C-contiguous float32 / float64 array, else NumPy's."""
    kernel = _fused_kernels()
    if kernel is not None and a.flags.c_contiguous and a.dtype in (np.float32, np.float64):
        return kernel.sum_of_squares(a.reshape(-1))
    return float(np.sum(np.square(a.astype(np.float64))))


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale the gradients in place so that their global norm is at most max_norm.

    grads: a dict {key: ndarray} (as a module's backward returns) or a list of such dicts.
    max_norm: a number >= 0; norm_type: p of the p-norm (> 0, or math.inf).
    Returns the global norm before clipping, as a float (see the module docstring).
    """
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, numbers.Real) \
            or not max_norm >= 0:
        raise ValueError(f"max_norm: expected a number >= 0, got {max_norm!r}")
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real) \
            or not norm_type > 0:
        raise ValueError(f"norm_type: expected a number > 0 or math.inf, got {norm_type!r}")
    arrays = _gradient_arrays(grads)
    if not arrays:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):   # inf / nan pass through, as torch
        if math.isinf(norm_type):
            total = float(np.max([np.max(np.abs(a)) if a.size else 0.0 for a in arrays]))
        elif norm_type == 2:
            total = math.sqrt(sum(_sum_of_squares(a) for a in arrays))
        else:
            p = float(norm_type)
            total = sum(float(np.sum(np.abs(a.astype(np.float64)) ** p))
                        for a in arrays) ** (1 / p)
        coef = float(max_norm) / (total + 1e-6)
        if coef < 1.0 or math.isnan(coef):
            for a in arrays:
                a *= a.dtype.type(coef)
    return total
