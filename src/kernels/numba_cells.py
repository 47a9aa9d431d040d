"""The pointwise math of every cell for the Numba drivers (numba_recurrent_forward.py,
numba_recurrent_backward.py): the twin of _lstm_cell.pxd, _gru_cell.pxd and _rnn_cell.pxd.

Each function works on the `nb` active rows of one step (rows 0 .. nb-1 of its 2-D arguments,
which may have more rows; the others are not touched) and mirrors one function of
fastlstm.reference around the matrix products, which the drivers do. Cell codes and buffer
layouts are those of src/kernels/CONTRACT.md: gates rows are LSTM [i, f, g, o], GRU
[r, z, n, m], RNN h_t. H is the hidden size, Gs the saved gate width (4H, or H for the RNN).

Every loop is a plain pass over contiguous memory with the vectorisable activations of
numba_activations.py, so LLVM vectorises it. A new cell adds only its pointwise math here.
"""
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

from ._jit import jit, jit_inline
from .numba_activations import one_minus, sigmoid, tanh_

#: cell codes (CONTRACT.md)
LSTM = 0
GRU_LINEAR_BEFORE_RESET = 1
GRU_RESET_BEFORE = 2
RNN_TANH = 3
RNN_RELU = 4


def zero_of(x):
    """0 in x's own float type; compiled per dtype inside Numba code only."""
    raise NotImplementedError("zero_of runs inside Numba-compiled code")


@overload(zero_of, inline="always")
def _zero_of_impl(x):
    if isinstance(x, types.Float):
        zero = np.float32(0.0) if x == types.float32 else 0.0

        def zero_of_impl(x):
            return zero

        return zero_of_impl
    return None


@jit
def gate_width(cell, H):
    """G, the rows of w_ih and w_hh: 4H (LSTM), 3H (GRU), H (RNN)."""
    if cell == LSTM:
        return 4 * H
    if cell == GRU_LINEAR_BEFORE_RESET or cell == GRU_RESET_BEFORE:
        return 3 * H
    return H


# --------------------------------------------------------------------------------------------
# LSTM


@intrinsic
def row_slice(typingctx, arr, row, start, n):
    """arr[row, start:start+n] of a C-contiguous 2-D array, as a 1-D array that holds no
    reference (no NRT meminfo), for the pointwise loops, which take such views of every row at
    every step: a view made by slicing increments and decrements the parent's reference count,
    an atomic operation on one cache line that the threads of a team all write (their steps
    ran 0.8x as fast on two threads as on one). Valid while arr is; start, n >= 0."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and arr.layout == "C"
            and all(isinstance(t, types.Integer) for t in (row, start, n))):
        return None
    view = types.Array(arr.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        arr_type = signature.args[0]
        parent = context.make_array(arr_type)(context, builder, args[0])
        row_, start_, n_ = (context.cast(builder, v, t, types.intp)
                            for v, t in zip(args[1:], signature.args[1:]))
        data = cgutils.get_item_pointer(context, builder, arr_type, parent, [row_, start_])
        itemsize = context.get_constant(
            types.intp, context.get_abi_sizeof(context.get_data_type(arr_type.dtype)))
        out = context.make_array(view)(context, builder)
        populate_array(out, data=data, shape=cgutils.pack_array(builder, [n_]),
                       strides=cgutils.pack_array(builder, [itemsize]), itemsize=itemsize,
                       meminfo=None)
        return out._getvalue()

    return view(arr, row, start, n), codegen


@intrinsic
def unowned(typingctx, arr):
    """arr itself (any array type) as a view that holds no reference (no NRT meminfo), for
    the array arguments of a compiled helper called at every step: passing an array
    increments and decrements its reference count, atomic operations (3-4 calls a step with
    three arrays each cost an LSTM 0.15 us a step at H=64). Valid while arr is."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        ty = signature.args[0]
        src = context.make_array(ty)(context, builder, args[0])
        out = context.make_array(ty)(context, builder)
        populate_array(out, data=src.data, shape=src.shape, strides=src.strides,
                       itemsize=src.itemsize, meminfo=None)
        return out._getvalue()

    return arr(arr), codegen


@jit_inline
def _blocks(a, b, H, u0, n):
    """Views of units u0 .. u0+n-1 in the first four blocks of H of row b of a (the gates'
    rows; a row of 3 blocks gives an empty fourth). Inlined into its callers at Numba's IR
    level: a call would pass `a`, which increments and decrements its reference count."""
    W = a.shape[1]
    return (row_slice(a, b, u0, n), row_slice(a, b, H + u0, n),
            row_slice(a, b, 2 * H + u0, min(n, max(0, W - 2 * H - u0))),
            row_slice(a, b, 3 * H + u0, min(n, max(0, W - 3 * H - u0))))


@jit
def _bias_blocks(bias, H, u0, n):
    """The slices of units u0 .. u0+n-1 in the blocks of H of a bias vector (3 or 4 blocks;
    once per call: a slice of a 1-D array)."""
    W = bias.shape[0]
    return (bias[u0:u0 + n], bias[H + u0:H + u0 + n], bias[2 * H + u0:2 * H + u0 + n],
            bias[min(W, 3 * H + u0):min(W, 3 * H + u0 + n)])


@jit
def lstm_forward_rows(g, bias, peep, c_prev, c_next, out, nb, u0, n):
    """Mirrors reference.lstm.lstm_cell_forward after `a` (its products), for the units
    u0 <= u < u0 + n (all of them: u0 = 0, n = H; the column split gives each thread its own).

    g (>= nb, 4H) IN/OUT: x_t W_ih^T + h_{t-1} W_hh^T (no bias) on entry, [i, f, g, o] on
    return; bias (4H,) = b_ih + b_hh; peep (3, H) = [p_i, p_f, p_o] or (0, H) for none (i, f
    look at c_prev, o at the new c); c_prev (>= nb, H) IN; c_next (>= nb, H) OUT (another
    buffer); out (>= nb, H) OUT: o * tanh(c_t), which is h_t, or what the projection multiplies.
    """
    H = c_prev.shape[1]
    has_peep = peep.shape[0] > 0
    b_i, b_f, b_g, b_o = _bias_blocks(bias, H, u0, n)
    for b in range(nb):
        # every loop runs over views from 0: with an index u0 + q (or a range from u0) Numba
        # keeps its negative-index wrap, which stops LLVM from vectorising (3-5x slower); the
        # views hold no reference (row_slice)
        gi, gf, gg, go = _blocks(g, b, H, u0, n)
        cp = row_slice(c_prev, b, u0, n)
        cn = row_slice(c_next, b, u0, n)
        hn = row_slice(out, b, u0, n)
        if has_peep:                                    # i, f look at c_{t-1}
            p_i = peep[0, u0:u0 + n]
            p_f = peep[1, u0:u0 + n]
            for j in range(n):
                gi[j] = gi[j] + p_i[j] * cp[j]
                gf[j] = gf[j] + p_f[j] * cp[j]
        for j in range(n):
            gi[j] = sigmoid(gi[j] + b_i[j])
        for j in range(n):
            gf[j] = sigmoid(gf[j] + b_f[j])
        for j in range(n):
            gg[j] = tanh_(gg[j] + b_g[j])
        for j in range(n):
            cn[j] = gf[j] * cp[j] + gi[j] * gg[j]
        if has_peep:                                    # o looks at c_t
            p_o = peep[2, u0:u0 + n]
            for j in range(n):
                go[j] = go[j] + p_o[j] * cn[j]
        for j in range(n):
            go[j] = sigmoid(go[j] + b_o[j])
        for j in range(n):                              # a loop of its own: it vectorises
            hn[j] = go[j] * tanh_(cn[j])


@jit
def lstm_backward_rows(g, peep, c_prev, c_t, dh, dc, dA, nb, u0, n):
    """Mirrors reference.lstm.lstm_cell_backward between its products (after dh @ w_hr,
    before dA @ w_hh), for the units u0 <= u < u0 + n (their columns of dc and dA).

    g (>= nb, 4H) IN: [i, f, g, o]; peep (3, H) or (0, H); c_prev, c_t (>= nb, H) IN;
    dh (>= nb, H) IN: the whole gradient reaching o * tanh(c_t); dc (>= nb, H) IN/OUT: the
    gradient reaching c_t from step t+1 on entry, the one reaching c_{t-1} on return;
    dA (>= nb, 4H) OUT: [da_i, da_f, da_g, da_o].
    """
    H = c_t.shape[1]
    has_peep = peep.shape[0] > 0
    for b in range(nb):
        # views from u0 (as in lstm_forward_rows), and one output per loop: a loop that wrote
        # several views of dA's row while reading another was left scalar (3.5x slower)
        gi, gf, gg, go = _blocks(g, b, H, u0, n)
        da_i, da_f, da_g, da_o = _blocks(dA, b, H, u0, n)
        dcb = row_slice(dc, b, u0, n)
        cp = row_slice(c_prev, b, u0, n)
        ct = row_slice(c_t, b, u0, n)
        dhb = row_slice(dh, b, u0, n)
        for j in range(n):                              # tanh(c_t), parked in da_o's place
            da_o[j] = tanh_(ct[j])
        for j in range(n):                              # da_o, and dc_t into dc
            tc = da_o[j]
            o = go[j]
            dh_t = dhb[j]
            d_o = dh_t * tc * o * one_minus(o)
            dc_t = dcb[j] + dh_t * o * one_minus(tc * tc)
            if has_peep:
                dc_t = dc_t + d_o * peep[2, u0 + j]
            da_o[j] = d_o
            dcb[j] = dc_t
        for j in range(n):
            da_i[j] = dcb[j] * gg[j] * gi[j] * one_minus(gi[j])
        for j in range(n):
            da_f[j] = dcb[j] * cp[j] * gf[j] * one_minus(gf[j])
        for j in range(n):
            da_g[j] = dcb[j] * gi[j] * one_minus(gg[j] * gg[j])
        for j in range(n):                              # the gradient reaching c_{t-1}
            dcb[j] = dcb[j] * gf[j]
        if has_peep:
            p_i = peep[0, u0:u0 + n]
            p_f = peep[1, u0:u0 + n]
            for j in range(n):
                dcb[j] = dcb[j] + da_i[j] * p_i[j] + da_f[j] * p_f[j]


# --------------------------------------------------------------------------------------------
# GRU


@jit
def gru_forward_rows(g, rec, bias0, bias1, h_prev, h_next, nb, u0, n):
    """Linear before reset (code 1); mirrors reference.gru.gru_cell_forward with
    linear_before_reset=True after its products, for the units u0 <= u < u0 + n.

    g (>= nb, 4H) IN/OUT: x_t W_ih^T in [0, 3H) on entry, [r, z, n, m] on return;
    rec (>= nb, >= 3H) IN: h_{t-1} W_hh^T in [0, 3H); bias0 (3H,) = [b_ir + b_hr, b_iz + b_hz,
    b_in]; bias1 (3H,) whose n block is b_hn; h_prev (>= nb, H) IN; h_next (>= nb, H) OUT.
    """
    H = h_prev.shape[1]
    b_r, b_z, b_n, _ = _bias_blocks(bias0, H, u0, n)
    b_hn = bias1[2 * H + u0:2 * H + u0 + n]
    for b in range(nb):
        gr, gz, gn, gm = _blocks(g, b, H, u0, n)
        rr, rz, rn, _ = _blocks(rec, b, H, u0, n)
        hp = row_slice(h_prev, b, u0, n)
        hn = row_slice(h_next, b, u0, n)
        for j in range(n):
            gr[j] = sigmoid(gr[j] + rr[j] + b_r[j])
        for j in range(n):
            gz[j] = sigmoid(gz[j] + rz[j] + b_z[j])
        for j in range(n):                              # m = h W_hn^T + b_hn
            gm[j] = rn[j] + b_hn[j]
        # the argument of tanh first, then tanh in place: one loop that wrote n while reading
        # r and m (views of the same row) through tanh was left scalar (6x slower)
        for j in range(n):
            gn[j] = gn[j] + b_n[j] + gr[j] * gm[j]
        for j in range(n):
            gn[j] = tanh_(gn[j])
        for j in range(n):
            hn[j] = one_minus(gz[j]) * gn[j] + gz[j] * hp[j]


@jit
def gru_reset_rows(g, rec, bias0, h_prev, nb, u0, n):
    """Reset before the product (code 2), first part; mirrors reference.gru.gru_cell_forward
    with linear_before_reset=False up to m = r * h, for the units u0 <= u < u0 + n.

    g (>= nb, 4H) IN/OUT: x_t W_ih^T in [0, 3H) on entry; r, z written to [0, 2H) and
    m = r * h_{t-1} to [3H, 4H); rec (>= nb, >= 2H) IN: h_{t-1} [W_hr; W_hz]^T in [0, 2H);
    bias0 (3H,) = b_ih + b_hh; h_prev (>= nb, H) IN.
    """
    H = h_prev.shape[1]
    b_r, b_z, _, _ = _bias_blocks(bias0, H, u0, n)
    for b in range(nb):
        gr, gz, _, gm = _blocks(g, b, H, u0, n)
        rr, rz, _, _ = _blocks(rec, b, H, u0, n)
        hp = row_slice(h_prev, b, u0, n)
        for j in range(n):
            gr[j] = sigmoid(gr[j] + rr[j] + b_r[j])
        for j in range(n):
            gz[j] = sigmoid(gz[j] + rz[j] + b_z[j])
        for j in range(n):
            gm[j] = gr[j] * hp[j]


@jit
def gru_new_rows(g, rec, bias0, h_prev, h_next, nb, u0, n):
    """Reset before the product (code 2), second part: n and h_t, for the units
    u0 <= u < u0 + n.

    g (>= nb, 4H) IN/OUT: as gru_reset_rows left it; n written to [2H, 3H);
    rec (>= nb, >= 3H) IN: (r * h_{t-1}) W_hn^T in [2H, 3H); bias0 (3H,) = b_ih + b_hh;
    h_prev (>= nb, H) IN; h_next (>= nb, H) OUT: (1 - z) n + z h_{t-1}.
    """
    H = h_prev.shape[1]
    b_n = bias0[2 * H + u0:2 * H + u0 + n]
    for b in range(nb):
        _, gz, gn, _ = _blocks(g, b, H, u0, n)
        rn = row_slice(rec, b, 2 * H + u0, n)
        hp = row_slice(h_prev, b, u0, n)
        hn = row_slice(h_next, b, u0, n)
        for j in range(n):
            gn[j] = tanh_(gn[j] + rn[j] + b_n[j])
        for j in range(n):
            hn[j] = one_minus(gz[j]) * gn[j] + gz[j] * hp[j]


@jit
def gru_backward_rows(g, h_prev, dh, dA, linear_before_reset, nb, u0, n):
    """Mirrors reference.gru.gru_cell_backward before its products, for the units
    u0 <= u < u0 + n (their columns of dh and dA).

    g (>= nb, 4H) IN: [r, z, n, m]; h_prev (>= nb, H) IN; dh (>= nb, H) IN/OUT: the whole
    gradient reaching h_t on entry, its direct part dh * z on return; dA (>= nb, 4H) OUT:
    da_z, da_n, and for linear before reset da_r and dm = da_n * r; for reset before,
    dm = da_n (da_r needs the product da_n W_hn: gru_reset_backward_rows).
    """
    H = h_prev.shape[1]
    for b in range(nb):
        # views from u0, one output per loop, da_n recomputed rather than read back from dA
        # (as lstm_backward_rows: loops that wrote several views of dA's row were left scalar)
        gr, gz, gn, gm = _blocks(g, b, H, u0, n)
        da_r, da_z, da_n, dm = _blocks(dA, b, H, u0, n)
        hp = row_slice(h_prev, b, u0, n)
        dhb = row_slice(dh, b, u0, n)
        for j in range(n):
            da_n[j] = dhb[j] * one_minus(gz[j]) * one_minus(gn[j] * gn[j])
        for j in range(n):
            da_z[j] = dhb[j] * (hp[j] - gn[j]) * gz[j] * one_minus(gz[j])
        if linear_before_reset:
            for j in range(n):
                d_n = dhb[j] * one_minus(gz[j]) * one_minus(gn[j] * gn[j])
                da_r[j] = d_n * gm[j] * gr[j] * one_minus(gr[j])
            for j in range(n):
                dm[j] = dhb[j] * one_minus(gz[j]) * one_minus(gn[j] * gn[j]) * gr[j]
        else:
            for j in range(n):
                dm[j] = dhb[j] * one_minus(gz[j]) * one_minus(gn[j] * gn[j])
        for j in range(n):
            dhb[j] = dhb[j] * gz[j]


@jit
def gru_reset_backward_rows(g, h_prev, dm, dh, dA, nb, u0, n):
    """Reset before the product (code 2), after the product dm = da_n W_hn (the gradient of
    m = r * h_{t-1}); mirrors the rest of reference.gru.gru_cell_backward's else branch, for
    the units u0 <= u < u0 + n.

    g (>= nb, 4H) IN; h_prev (>= nb, H) IN; dm (>= nb, H) IN; dh (>= nb, H) IN/OUT: dm * r
    added; dA (>= nb, 4H) OUT: da_r into [0, H).
    """
    for b in range(nb):     # views from u0, one output per loop (lstm_backward_rows)
        gr = row_slice(g, b, u0, n)
        da_r = row_slice(dA, b, u0, n)
        hp = row_slice(h_prev, b, u0, n)
        dmb = row_slice(dm, b, u0, n)
        dhb = row_slice(dh, b, u0, n)
        for j in range(n):
            da_r[j] = dmb[j] * hp[j] * gr[j] * one_minus(gr[j])
        for j in range(n):
            dhb[j] = dhb[j] + dmb[j] * gr[j]


# --------------------------------------------------------------------------------------------
# RNN


@jit
def rnn_forward_rows(g, bias, h_next, relu, nb, u0, n):
    """Mirrors reference.rnn.rnn_cell_forward after its products, for the units
    u0 <= u < u0 + n.

    g (>= nb, H) IN/OUT: x_t W_ih^T + h_{t-1} W_hh^T on entry, h_t on return; bias (H,) =
    b_ih + b_hh; h_next (>= nb, H) OUT: h_t; relu: relu (code 4) or tanh (code 3).
    """
    bb = bias[u0:u0 + n]
    for b in range(nb):
        row = row_slice(g, b, u0, n)
        hn = row_slice(h_next, b, u0, n)
        if relu:
            for j in range(n):
                a = row[j] + bb[j]
                zero = zero_of(a)
                a = zero if a < zero else a             # a select: NaN stays NaN (np.maximum)
                row[j] = a
                hn[j] = a
        else:
            for j in range(n):
                a = tanh_(row[j] + bb[j])
                row[j] = a
                hn[j] = a


@jit
def rnn_backward_rows(g, dh, dA, relu, nb, u0, n):
    """Mirrors reference.rnn.rnn_cell_backward before its products (relu's derivative at 0
    is 0), for the units u0 <= u < u0 + n.

    g (>= nb, H) IN: h_t; dh (>= nb, H) IN: the whole gradient reaching h_t; dA (>= nb, H) OUT.
    """
    for b in range(nb):     # views from u0 (lstm_backward_rows)
        row = row_slice(g, b, u0, n)
        da = row_slice(dA, b, u0, n)
        dhb = row_slice(dh, b, u0, n)
        if relu:
            for j in range(n):
                zero = zero_of(row[j])
                da[j] = dhb[j] * (one_minus(zero) if row[j] > zero else zero)
        else:
            for j in range(n):
                da[j] = dhb[j] * one_minus(row[j] * row[j])
