"""The internal buffers of an inference call kept for the next call of the same packed layer.

An inference call whose rows are reordered, padded or read backwards (lengths=, reverse=)
needs the input in loop order, the kernels' h (T+1, B, H_out) and their gate scratch, and
returns none of them: y, h_n and c_n are copies taken from them. Allocated afresh at every
call, these few MiB come back from the operating system as new pages each time (glibc hands
large blocks back when they are freed), and faulting them in costs more than the copies
themselves: about 40% of the call at T=200, B=32, H=128. So a PackedLayer (and a
ReducedLayer) keeps one block of at most MAX_BYTES for its next such call (`spare`, a Spare:
a list of at most one array, copied and pickled empty). A call takes it (or makes a larger one), carves its buffers from it,
and gives it back at the end; two threads calling one layer at once cannot get the same
block (list.pop and append are atomic), the second just allocates its own.

Nothing returned to the caller, and nothing a tape holds, ever lies in a kept block (with a
tape, or when y is h itself, the call allocates as before); the results do not depend on
the block's old contents (the kernels write every value they read, CONTRACT.md).
"""
import numpy as np

class Spare(list):
    """Where a layer keeps its block: a list that a copy or a pickle does not carry (the
    copy makes its own block at its first call)."""

    __slots__ = ()

    def __reduce__(self):
        return (Spare, ())


#: the largest block a layer keeps (larger calls allocate at every call, as before)
MAX_BYTES = 8 << 20
#: buffers start at multiples of this many values (64 bytes for float32)
_ALIGN = 16


def carve(spare, dtype, shapes):
    """C-contiguous arrays of `shapes` and `dtype`, carved from the block in `spare` (a list
    of at most one 1-D array) when it is large enough, else from a new one; returns (block,
    arrays): hand the block to give_back once the arrays are no longer used."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    starts, total = [], 0
    for n in sizes:
        starts.append(total)
        total += -(-n // _ALIGN) * _ALIGN
    try:
        block = spare.pop()
    except IndexError:
        block = None
    if block is None or block.size < total or block.dtype != dtype:
        block = np.empty(total, dtype)
    return block, [block[s:s + n].reshape(shape) for s, n, shape in zip(starts, sizes, shapes)]


def give_back(spare, block):
    """Keep `block` for the layer's next call, when it is small enough and no other is kept."""
    if block.nbytes <= MAX_BYTES and not spare:
        spare.append(block)
