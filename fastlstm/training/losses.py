"""Loss functions that return the loss and its gradient (SPEC.md section 9).

    loss, dpred   = mse_loss(pred, target, reduction="mean")
    loss, dlogits = cross_entropy(logits, labels, lengths=None, reduction="mean")

Each returns the loss as a Python float and the gradient of the loss with respect to its first
argument, a new array shaped like it and of its dtype: that gradient is what the model's
backward takes (`dout`).

Masking variable-length sequences: with `lengths` (B,), the arguments are per step, time-major
(T, B, ...) (or (B, T, ...) with batch_first=True), and step t of row b counts only when
t < lengths[b]; the other steps get a zero gradient and are not counted by "mean". When
nothing counts (all lengths 0, or an empty array), "mean" gives 0.0 and a zero gradient
(torch gives nan).
"""
import numpy as np

from .._checks import check_lengths
from .._validate import as_float_array, check_flag


def _check_reduction(reduction, allowed):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction: expected one of {', '.join(map(repr, allowed))}, "
                         f"got {reduction!r}")
    return reduction


def _step_mask(shape, lengths, batch_first, what):
    """The (T, B) (or (B, T) with batch_first) boolean mask t < lengths[b] for an array of
    `shape` whose first two axes are time and batch; None when lengths is None."""
    if lengths is None:
        return None
    if len(shape) < 2:
        raise ValueError(f"lengths: needs {what} with a time and a batch axis, (T, B, ...) or "
                         f"(B, T, ...) with batch_first=True; got shape {shape}")
    T, B = (shape[1], shape[0]) if batch_first else (shape[0], shape[1])
    lengths = check_lengths(lengths, T, B, unbatched=False)
    mask = np.arange(T)[:, None] < lengths[None, :]          # (T, B)
    return mask.T if batch_first else mask


def mse_loss(pred, target, reduction="mean", *, lengths=None, batch_first=False):
    """Squared error between pred and target (any shape, the same for both).

    With e = pred − target:
        "mean":     L = Σ e² / n       dL/dpred = 2 e / n     (n = number of elements counted;
                                                               torch's F.mse_loss)
        "sum":      L = Σ e²           dL/dpred = 2 e
        "half_sum": L = ½ Σ e²         dL/dpred = e           (SPEC.md's worked example)

    lengths (B,) (optional): pred and target are (T, B, ...) ((B, T, ...) with batch_first) and
    only the steps t < lengths[b] count (see the module docstring).
    Returns (loss: float, dpred: array like pred).
    """
    reduction = _check_reduction(reduction, ("mean", "sum", "half_sum"))
    batch_first = check_flag("batch_first", batch_first)
    pred = as_float_array("pred", pred)
    target = as_float_array("target", target)
    if target.shape != pred.shape:
        raise ValueError(f"target: expected the shape of pred {pred.shape}, got {target.shape}")
    e = pred - target.astype(pred.dtype, copy=False)
    mask = _step_mask(pred.shape, lengths, batch_first, "pred")
    if mask is not None:
        mask = mask.reshape(mask.shape + (1,) * (pred.ndim - 2))
        e = e * mask                                   # padded steps: no error, no gradient
        n = int(mask.sum()) * int(np.prod(pred.shape[2:], dtype=np.int64))
    else:
        n = e.size
    sq = float(np.sum(np.square(e, dtype=np.float64)))
    if reduction == "half_sum":
        return 0.5 * sq, e
    if reduction == "sum":
        return sq, 2 * e
    if n == 0:
        return 0.0, np.zeros_like(pred)
    return sq / n, e * pred.dtype.type(2.0 / n)


def _log_softmax(z):
    """log softmax over the last axis, stable: z − max − log Σ exp(z − max)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits, labels, lengths=None, reduction="mean", *, batch_first=False,
                  ignore_index=None):
    """Softmax cross-entropy with integer class labels, over the last axis of logits.

    Shapes (C classes):
        logits (N, C),    labels (N,)       one label per row (lengths must be None)
        logits (T, B, C), labels (T, B)     one label per step; (B, T, C) and (B, T) with
                                            batch_first=True; lengths (B,) masks the steps
                                            t >= lengths[b]
    With p = softmax(z) per row and the rows that count (n of them):
        "mean": L = −(1/n) Σ log p[label]     dL/dz = (p − onehot(label)) / n
        "sum":  L = −Σ log p[label]           dL/dz = p − onehot(label)
    Rows that do not count (masked by lengths, or whose label equals ignore_index, as torch's
    ignore_index) get a zero gradient; their labels are not checked. log p is computed as
    z − max z − log Σ exp(z − max z), so large logits do not overflow.

    Returns (loss: float, dlogits: array like logits). Wrong shapes and labels out of
    [0, C) are a ValueError, non-integer labels a TypeError, each naming the argument.
    """
    reduction = _check_reduction(reduction, ("mean", "sum"))
    batch_first = check_flag("batch_first", batch_first)
    logits = as_float_array("logits", logits)
    if logits.ndim not in (2, 3) or logits.shape[-1] < 1:
        raise ValueError(f"logits: expected shape (N, C) or (T, B, C) ((B, T, C) with "
                         f"batch_first), C >= 1; got {logits.shape}")
    C = logits.shape[-1]
    labels = np.asarray(labels)
    if labels.dtype == np.bool_ or not (np.issubdtype(labels.dtype, np.integer)
                                        or labels.size == 0):
        raise TypeError(f"labels: expected integer class indices, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels: expected shape {logits.shape[:-1]} (logits' shape without "
                         f"the class axis), got {labels.shape}")
    if lengths is not None and logits.ndim != 3:
        raise ValueError("lengths: only for per-step logits (T, B, C) ((B, T, C) with "
                         f"batch_first); got logits of shape {logits.shape}")
    counts = np.ones(labels.shape, dtype=bool)
    mask = _step_mask(labels.shape, lengths, batch_first, "logits")
    if mask is not None:
        counts &= mask
    if ignore_index is not None:
        counts &= labels != ignore_index
    bad = counts & ((labels < 0) | (labels >= C))
    if bad.any():
        raise ValueError(f"labels: each label must be in [0, C) = [0, {C}), got "
                         f"{labels[bad][0]}")

    safe = np.where(counts, labels, 0)                       # any valid index where masked
    logp = _log_softmax(logits)                              # (..., C)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    total = -float(np.sum(picked[counts], dtype=np.float64))
    dlogits = np.exp(logp)                                   # softmax p
    np.put_along_axis(dlogits, safe[..., None],
                      np.take_along_axis(dlogits, safe[..., None], axis=-1) - 1, axis=-1)
    dlogits *= counts[..., None]                             # rows that do not count: 0
    if reduction == "sum":
        return total, dlogits
    n = int(counts.sum())
    if n == 0:
        return 0.0, np.zeros_like(logits)
    return total / n, dlogits * logits.dtype.type(1.0 / n)
