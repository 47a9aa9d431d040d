"""Numba kernels for the training loop's per-parameter passes: Adam's update and the sum of
squares of gradient clipping, each one loop over the values instead of a dozen NumPy calls
(a small model's step spends more time in those calls' overhead than in their arithmetic).

adam_update mirrors fastlstm.training.optim.Adam._update (its NumPy expressions), operation
by operation: the scalars arrive already rounded to the arrays' dtype, as NumPy rounds a
Python float that meets a float32 array, and fastmath is off, so the results are bit for bit
NumPy's (tests/test_training_pieces.py checks this). sum_of_squares is clip_grad_norm's float64
sum of squares for the 2-norm, taken left to right (NumPy's np.sum adds in pairs: the two differ
by rounding, about 1e-16 of the sum). Every array is 1-D and C-contiguous (the callers pass
flat views).
"""
import numpy as np

from ._jit import jit


@jit
def adam_update(p, g, m, v, v_max, b1, c1, b2, c2, weight_decay, step_size, bias2_root, eps,
                amsgrad):
    """One Adam step in place over p (n,) with gradient g (n,), moments m, v (n,) and, when
    amsgrad, the running maximum v_max (n,) (else not read; any array). Scalars in the
    arrays' dtype: b1, b2 the betas, c1 = 1 - b1, c2 = 1 - b2 (rounded from float64 as NumPy
    rounds them), weight_decay (0: none), step_size = lr / (1 - b1^t), bias2_root =
    sqrt(1 - b2^t), eps. Per value, in NumPy's order:
        g' = g + weight_decay * p;  m = m * b1 + c1 * g';  v = v * b2 + c2 * (g' * g')
        p = p - step_size * (m / (sqrt(max(v_max, v)) / bias2_root + eps))"""
    for i in range(p.shape[0]):
        gi = g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        mi = m[i] * b1
        mi = mi + c1 * gi
        m[i] = mi
        vi = v[i] * b2
        vi = vi + c2 * (gi * gi)
        v[i] = vi
        if amsgrad:
            vm = v_max[i]
            if vm < vi or vi != vi:   # np.maximum: a NaN on either side wins
                vm = vi
            v_max[i] = vm
            vi = vm
        p[i] = p[i] - step_size * (mi / (np.sqrt(vi) / bias2_root + eps))


@jit
def sum_of_squares(a):
    """Sum over a (n,) of a[i]^2, in float64, left to right."""
    s = 0.0
    for i in range(a.shape[0]):
        x = np.float64(a[i])
        s += x * x
    return s
