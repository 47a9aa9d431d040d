"""Direction and variable lengths, handled once for every cell and backend (SPEC.md section 7).

The kernels always run forward in time over *loop order*: loop step s of a row reads that
row's s-th valid step (its len - 1 - s-th with reverse=True), and its rows are arranged so
that lengths never increase inside each group of rows one thread runs (src/kernels/
CONTRACT.md). At step s a group's active rows are then a prefix of it, so a kernel simply
shrinks the rows it works on: padding costs no arithmetic.

Shapes: (T, B, n) time-major arrays in the caller's time order ("time order") or the
kernels' ("loop order"); perm (B,): loop row k holds caller row perm[k].
"""
import numpy as np


class LoopOrder:
    """How caller rows and steps map to the kernels' rows and steps.

    perm (B,) int64: loop row k is caller row perm[k]; lengths (B,) int64: the lengths of the
    loop rows (all T without lengths); reverse: each row read from its last valid step;
    identity: no permutation, no flip and no padding (the arrays pass through as they are).
    Not to be changed once made (a plain class with slots: made at every call, so cheap).
    """

    __slots__ = ("T", "perm", "lengths", "reverse", "padded", "identity")

    def __init__(self, T, perm, lengths, reverse, padded):
        self.T, self.perm, self.lengths = T, perm, lengths
        self.reverse, self.padded = reverse, padded
        self.identity = not padded and not reverse and perm is None

    def __repr__(self):
        return (f"LoopOrder(T={self.T}, perm={self.perm}, lengths={self.lengths}, "
                f"reverse={self.reverse}, padded={self.padded})")

    def _valid(self):
        """(T, B) bool: loop step s of loop row k holds data (s < its length)."""
        return np.arange(self.T)[:, None] < self.lengths[None, :]

    def _time_steps(self, valid):
        """(T, B): the time-order step of each loop step of each loop row (0 where not
        valid)."""
        s = np.arange(self.T)[:, None]
        return np.where(valid, self.lengths[None, :] - 1 - s, 0) if self.reverse else s

    def gather(self, a, out=None, copy_rows=None):
        """a (T, B, n) in time order -> a (T, B, n) C-contiguous array in loop order, zeros
        past each row's length: `out` when given (a C-contiguous array of a's shape and
        dtype, not used when the order is the identity), else a new array (or `a` itself
        when it is C-contiguous and the order the identity). copy_rows(src, index, dst):
        fastlstm._backends.copy_rows_function()'s, bound to a thread count, or None (NumPy
        moves the rows)."""
        if self.identity:
            return np.ascontiguousarray(a)
        if out is None:
            out = np.empty(a.shape, a.dtype)
        if not self.padded and self.perm is None:   # reverse of full rows: a flip in time
            np.copyto(out, a[::-1])
            return out
        valid = self._valid()
        if copy_rows is not None and a.flags.c_contiguous:   # one pass, zeros included
            T, B, n = a.shape
            index = np.where(valid, self._time_steps(valid) * B + self.perm[None, :], -1)
            copy_rows(a.reshape(T * B, n), index.reshape(-1).astype(np.int64, copy=False),
                      out.reshape(T * B, n))
            return out
        if self.reverse:
            out[...] = a[self._time_steps(valid), self.perm[None, :]]
        else:   # the rows permuted, steps in place: one take along the batch axis
            np.take(a, self.perm, axis=1, out=out)
        out[~valid] = 0
        return out

    def scatter(self, a, copy_rows=None):
        """a (T, B, n) in loop order -> (T, B, n) in time order, zeros past each row's length
        (the inverse of gather). May return `a` itself when the order is the identity.
        copy_rows: as in gather."""
        if self.identity:
            return a
        if not self.padded and self.perm is None:
            return np.ascontiguousarray(a[::-1])
        if copy_rows is not None and a.flags.c_contiguous:
            T, B, n = a.shape
            inverse = np.argsort(self.perm)     # caller row r is loop row inverse[r]
            lengths = self.lengths[inverse]     # caller row r's length
            t = np.arange(T)[:, None]
            s = lengths[None, :] - 1 - t if self.reverse else t   # its loop step at time t
            index = np.where(t < lengths[None, :], s * B + inverse[None, :], -1)
            out = np.empty(a.shape, a.dtype)
            copy_rows(a.reshape(T * B, n), index.reshape(-1).astype(np.int64, copy=False),
                      out.reshape(T * B, n))
            return out
        if self.reverse:
            valid = self._valid()
            t = np.where(valid, self.lengths[None, :] - 1 - np.arange(self.T)[:, None], 0)
            perm = np.arange(a.shape[1]) if self.perm is None else self.perm
            out = np.zeros_like(a)
            out[t[valid], np.broadcast_to(perm, t.shape)[valid]] = a[valid]
            return out
        inverse = np.argsort(self.perm)          # caller row r is loop row inverse[r]
        out = np.take(a, inverse, axis=1)
        out[~self._valid()[:, inverse]] = 0
        return out

    def rows_to_loop(self, a):
        """(B, n) caller rows -> loop rows (a new array, or `a` itself when no row moves)."""
        return a if self.perm is None else a[self.perm]

    def rows_from_loop(self, a):
        """(B, n) loop rows -> caller rows (a new array)."""
        if self.perm is None:
            return np.array(a, order="C")
        out = np.empty_like(a)
        out[self.perm] = a
        return out


def arrange(T, B, lengths, reverse, n_groups):
    """The LoopOrder for `lengths` ((B,) int64 or None) and `n_groups` groups of rows
    (group g: loop rows [g*B//n_groups, (g+1)*B//n_groups)).

    Rows are sorted by length, longest first, and dealt to the groups in turn, so that every
    group gets a fair share of the work and its lengths never increase.
    """
    if lengths is None or np.all(lengths == T):
        full = np.empty(B, np.int64)
        full.fill(T)
        return LoopOrder(T, None, full, reverse, padded=False)
    order = np.argsort(-lengths, kind="stable")
    bounds = [g * B // n_groups for g in range(n_groups + 1)]
    slots = [list(range(bounds[g], bounds[g + 1])) for g in range(n_groups)]
    perm = np.empty(B, np.int64)
    g = 0
    for row in order:
        while not slots[g]:
            g = (g + 1) % n_groups
        perm[slots[g].pop(0)] = row
        g = (g + 1) % n_groups
    return LoopOrder(T, perm, np.ascontiguousarray(lengths[perm], dtype=np.int64), reverse,
                     padded=True)
