"""The forward's matrix products in the Numba drivers, on weights packed into panels: the twin
of _gemm.h's panel products (numba_recurrent_forward.py).

    out[b, oc + c] (+)= sum_k a[b, ac + k] * w[q*H + p0*16 + c, k]     b < nb, c < width

w (n_blocks*H, K) is packed once per layer (pack_panels, kept in the layer's PackedLayer):
panels[q, p, k, :] holds columns p*16 .. p*16+15 of gate block q of w^T, zero-padded past H.
A tile of R rows by NP panels keeps its R x NP x 16 sums in vector registers across the whole
k loop: each step loads NP panel vectors and R values of `a` (broadcast) for R x NP vector
multiply-adds, and only the tile's start and end touch `out` (masked where the block ends).
LLVM cannot make this loop from plain Numba code (its SLP vectoriser is off in Numba, and a
loop over k of dot products pays a horizontal sum per output: such tiles, which these
replaced, reached about half of this one's rate), so the tile is written as LLVM IR (_tile):
64-byte vectors (16 float32 or 8 float64), which LLVM splits into the registers each
instruction set has.

Every output is one chain of fused multiply-adds over k = 0 .. K-1, in that order (in a
product of one row: two chains, even and odd k, then added), whatever the tile it falls in:
results do not depend on how the columns are shared out (the column split gives the same bits
on any number of threads). Groups of rows may differ from it by rounding where a group has one
running row and the batch more. NaN and inf propagate (llvm.fma).
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit, jit_inline
from .numba_cells import unowned

#: columns per panel (numba_recurrent_forward.UNIT_CHUNK is a multiple of it, so that every
#: thread's slice of units is whole panels)
PANEL = 16
#: the bytes of one vector of the tiles
VECTOR_BYTES = 64


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype), C-contiguous, starting on a VECTOR_BYTES boundary: the tiles'
    panel loads are whole vectors, and a panel that NumPy's allocator placed 16 or 48 bytes
    off a boundary makes each of them straddle two cache lines (GRU 100x1x32x64 took 68 us
    instead of 51 on such panels)."""
    size = math.prod(shape)
    dtype = np.dtype(dtype)
    # NumPy's blocks start on 16-byte boundaries, so the shift is whole elements
    buf = np.empty(size + VECTOR_BYTES // dtype.itemsize, dtype)
    start = -buf.__array_interface__["data"][0] % VECTOR_BYTES // buf.itemsize
    return buf[start:start + size].reshape(shape)


def pack_panels(w, n_blocks):
    """panels (n_blocks, ceil(H / PANEL), K, PANEL): panels[q, p, k, l] = w[q*H + p*PANEL + l, k]
    for p*PANEL + l < H, else 0; w (n_blocks*H, K), C-contiguous output of w's dtype, on a
    VECTOR_BYTES boundary."""
    w = np.asarray(w)
    G, K = w.shape
    H = G // n_blocks
    n_panels = -(-H // PANEL)
    padded = np.zeros((n_blocks, n_panels * PANEL, K), dtype=w.dtype)
    padded[:, :H] = w.reshape(n_blocks, H, K)
    out = aligned_empty((n_blocks, n_panels, K, PANEL), w.dtype)
    out[...] = padded.reshape(n_blocks, n_panels, PANEL, K).transpose(0, 1, 3, 2)
    return out


def _tile(R, NP, CHAINS=1):
    """The intrinsic tile(a, a0, lda, m, m0, pstride, out, o0, ldo, K, ncols, accumulate):
    out.flat[o0 + r*ldo + c] (+)= sum_k a.flat[a0 + r*lda + k] * M(k, c) for r < R and
    c < ncols <= NP*PANEL, where M(k, c) = m.flat[m0 + (c // PANEL)*pstride + k*PANEL
    + c % PANEL] (NP panels of pack_panels, pstride values apart). Offsets in elements.
    CHAINS: each output sums k = c, c + CHAINS, ... in chain c (chain 0 from the output's
    start), the chains then added in order: more independent multiply-adds in flight for a
    tile of one row, whose few chains would otherwise wait on each other's latency."""

    @intrinsic
    def tile(typingctx, a, a0, lda, m, m0, pstride, out, o0, ldo, K, ncols, accumulate):
        if not (isinstance(a, types.Array) and isinstance(m, types.Array)
                and isinstance(out, types.Array) and a.dtype == m.dtype == out.dtype
                and a.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(a, a0, lda, m, m0, pstride, out, o0, ldo, K, ncols, accumulate)

        def codegen(context, builder, signature, args):
            tys = signature.args
            i32, i64 = ir.IntType(32), ir.IntType(64)
            a0_, lda_, m0_, ps_, o0_, ldo_, K_, nc_ = (
                context.cast(builder, args[i], tys[i], types.intp)
                for i in (1, 2, 4, 5, 7, 8, 9, 10))
            acc = context.cast(builder, args[11], tys[11], types.boolean)
            acc = builder.icmp_unsigned("!=", acc, ir.Constant(acc.type, 0))
            ap, mp, op = (context.make_array(tys[i])(context, builder, args[i]).data
                          for i in (0, 3, 6))
            ft = context.get_data_type(tys[0].dtype)
            itemsize = 4 if tys[0].dtype == types.float32 else 8
            lanes = VECTOR_BYTES // itemsize
            per_panel = PANEL // lanes                  # vectors per panel
            V = NP * per_panel                          # vectors per row of the tile
            vt = ir.VectorType(ft, lanes)
            mt = ir.VectorType(ir.IntType(1), lanes)
            suffix = f"v{lanes}{'f32' if itemsize == 4 else 'f64'}"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.{suffix}")
            mload = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mt, vt]),
                f"llvm.masked.load.{suffix}.p0")
            mstore = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), i32, mt]),
                f"llvm.masked.store.{suffix}.p0")
            align = ir.Constant(i32, itemsize)
            zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * lanes)
            lane_ids = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))

            def const(v):
                return ir.Constant(i64, v)

            def splat(value, vtype):
                one = builder.insert_element(ir.Constant(vtype, ir.Undefined), value,
                                             ir.Constant(i32, 0))
                return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, lanes),
                                                                    [0] * lanes))

            def vector_at(base, offset):
                return builder.bitcast(builder.gep(base, [offset]), vt.as_pointer())

            # the tile's outputs: masked to the ncols that exist (a block's last panel)
            masks, out_ptrs, sums = [], [], []
            for v in range(V):
                left = builder.sub(nc_, const(v * lanes))
                masks.append(builder.icmp_signed("<", lane_ids,
                                                 splat(left, ir.VectorType(i64, lanes))))
            for r in range(R):
                row = builder.add(o0_, builder.mul(const(r), ldo_))
                for v in range(V):
                    p = vector_at(op, builder.add(row, const(v * lanes)))
                    out_ptrs.append(p)
                    start = builder.call(mload, [p, align, masks[v], zero])
                    sums.append(builder.select(acc, start, zero))
            def step(k, current):
                """current + a[:, k] (broadcast) * the panel vectors of row k."""
                krow = builder.add(m0_, builder.mul(k, const(PANEL)))
                panel_vectors = []
                for v in range(V):
                    offset = builder.add(krow, builder.add(
                        builder.mul(const(v // per_panel), ps_), const((v % per_panel) * lanes)))
                    panel_vectors.append(builder.load(vector_at(mp, offset), align=itemsize))
                new = []
                for r in range(R):
                    x = builder.load(builder.gep(ap, [builder.add(
                        a0_, builder.add(builder.mul(const(r), lda_), k))]))
                    xs = splat(x, vt)
                    for v in range(V):
                        new.append(builder.call(fma, [xs, panel_vectors[v], current[r * V + v]]))
                return new

            # for k in range(0, K - CHAINS + 1, CHAINS): chain c takes step k + c (chain 0
            # starts from the tile's sums, the others from 0)
            entry = builder.block
            head = builder.append_basic_block("tile.k")
            body = builder.append_basic_block("tile.body")
            done = builder.append_basic_block("tile.done")
            builder.branch(head)
            builder.position_at_end(head)
            k = builder.phi(i64)
            k.add_incoming(const(0), entry)
            phis = []
            for c in range(CHAINS):
                phis.append([])
                for start in (sums if c == 0 else [zero] * len(sums)):
                    phi = builder.phi(vt)
                    phi.add_incoming(start, entry)
                    phis[c].append(phi)
            builder.cbranch(builder.icmp_signed("<=", builder.add(k, const(CHAINS)), K_), body,
                            done)
            builder.position_at_end(body)
            new = [step(builder.add(k, const(c)), phis[c]) for c in range(CHAINS)]
            latch = builder.block
            k.add_incoming(builder.add(k, const(CHAINS)), latch)
            for chain_phis, chain_new in zip(phis, new):
                for phi, value in zip(chain_phis, chain_new):
                    phi.add_incoming(value, latch)
            builder.branch(head)
            builder.position_at_end(done)
            # the last K % CHAINS steps: step k + c into chain c; then the chains added in order
            results = [list(chain) for chain in phis]
            for c in range(CHAINS - 1):
                k_left = builder.add(k, const(c))
                before = builder.block
                with builder.if_then(builder.icmp_signed("<", k_left, K_)):
                    stepped = step(k_left, results[c])
                    stepped_block = builder.block
                for i, value in enumerate(stepped):
                    phi = builder.phi(vt)
                    phi.add_incoming(value, stepped_block)
                    phi.add_incoming(results[c][i], before)
                    results[c][i] = phi
            total = results[0]
            for c in range(1, CHAINS):
                total = [builder.fadd(x, y) for x, y in zip(total, results[c])]
            for r in range(R):
                for v in range(V):
                    builder.call(mstore, [total[r * V + v], out_ptrs[r * V + v], align,
                                          masks[v]])
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _has_avx512():
    """Whether the code Numba makes here may use AVX-512 (its target: the host CPU, or
    $NUMBA_CPU_NAME / $NUMBA_CPU_FEATURES)."""
    import llvmlite.binding as llvm
    from numba.core import config
    features = config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


#: the rows of the main tile: 6 x 2 panels (12 vector sums) where there are 32 vector
#: registers (AVX-512: 250-260 GFLOP/s on one Zen 5 core against 180-190 for 3 x 2), else
#: 3 x 2 (12 of the 16 registers; each 64-byte vector is two AVX2 registers)
TILE_ROWS = 6 if _has_avx512() else 3

_tile_6x2, _tile_6x1 = _tile(6, 2), _tile(6, 1)
_tile_3x2, _tile_2x2, _tile_1x2 = _tile(3, 2), _tile(2, 2), _tile(1, 2)
_tile_3x1, _tile_2x1, _tile_1x1 = _tile(3, 1), _tile(2, 1), _tile(1, 1)
_tile_1x4, _tile_1x2c, _tile_1x1c = _tile(1, 4, 2), _tile(1, 2, 2), _tile(1, 1, 2)


@jit_inline
def _rows(a, a0, lda, m, m0, ps, out, o0, ldo, K, ncols, acc, nb, NP):
    """Rows 0 .. nb-1 of one column tile of NP (1 or 2) panels: tiles of TILE_ROWS rows, then
    of 3, 2 or 1."""
    b = 0
    if TILE_ROWS == 6:
        while b + 6 <= nb:
            if NP == 2:
                _tile_6x2(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
            else:
                _tile_6x1(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
            b += 6
    while b + 3 <= nb:
        if NP == 2:
            _tile_3x2(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
        else:
            _tile_3x1(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
        b += 3
    if nb - b == 2:
        if NP == 2:
            _tile_2x2(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
        else:
            _tile_2x1(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
    elif nb - b == 1:
        if NP == 2:
            _tile_1x2(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)
        else:
            _tile_1x1(a, a0 + b * lda, lda, m, m0, ps, out, o0 + b * ldo, ldo, K, ncols, acc)


#: products deeper than this (the backward's weight gradients, K = the running rows) are
#: summed in slices of K_SLICE rows of the panels, each slice's sums stored and taken up again
#: by the next (the same chain of multiply-adds): a slice of a tile's panels stays in the L2
#: while every row of `a` passes over it
K_SLICE_ABOVE = 2048
K_SLICE = 512


@jit
def _panel_product_k(a, ac, panels, q, p0, width, k0, K, out, oc, nb, accumulate):
    """out[:nb, oc:oc+width] (+)= a[:nb, ac:ac+K] @ M[k0:k0+K], M the columns p0*PANEL ..
    p0*PANEL+width-1 of gate block q of w^T held by panels (n_blocks, n_panels, depth,
    PANEL) = pack_panels(w) (or pack_transposed, pack_rows: M is then w itself, or rows of an
    array).

    a (>= nb, >= ac+K), out (>= nb, >= oc+width): C-contiguous 2-D arrays of panels' dtype;
    width <= (n_panels - p0) * PANEL, k0 + K <= depth. One row: tiles of 4 panels whose
    outputs each sum even and odd k in two chains (8 independent chains in flight: one chain
    of K multiply-adds per output left a backward's dh product at B=1, H=128 waiting on their
    latency); more rows: _rows, one chain per output. Each output's sum depends only on nb
    being 1 or not, never on the tile it falls in or the columns asked for.
    """
    depth = panels.shape[2]
    n_panels = panels.shape[1]
    if (q < 0 or q >= panels.shape[0] or p0 < 0 or width < 0 or ac < 0 or oc < 0 or k0 < 0
            or K < 0 or k0 + K > depth or p0 * PANEL + width > n_panels * PANEL
            or ac + K > a.shape[1] or oc + width > out.shape[1] or a.shape[0] < nb
            or out.shape[0] < nb):
        raise ValueError("panel_product: incompatible shapes")
    if nb <= 0 or width <= 0:
        return
    # the tiles take the arrays' first elements and offsets from them (in elements)
    lda, ldo = a.strides[0] // a.itemsize, out.strides[0] // out.itemsize
    ps = depth * PANEL                              # values from one panel to the next
    base = (q * n_panels + p0) * ps
    kc = K if K <= K_SLICE_ABOVE else K_SLICE
    ks = k0
    while True:
        kn = min(kc, k0 + K - ks)
        acc = accumulate != 0 or ks > k0
        a0, m0 = ac + ks - k0, base + ks * PANEL
        c = 0
        if nb == 1:     # tiles of two chains (every column: the same sums on any team)
            while c + 4 * PANEL <= width:
                _tile_1x4(a, a0, lda, panels, m0 + (c // PANEL) * ps, ps, out, oc + c, ldo, kn,
                          4 * PANEL, acc)
                c += 4 * PANEL
            while c < width:
                m, ncols = m0 + (c // PANEL) * ps, min(2 * PANEL, width - c)
                if ncols > PANEL:
                    _tile_1x2c(a, a0, lda, panels, m, ps, out, oc + c, ldo, kn, ncols, acc)
                else:
                    _tile_1x1c(a, a0, lda, panels, m, ps, out, oc + c, ldo, kn, ncols, acc)
                c += 2 * PANEL
        while c < width:
            NP = 2 if width - c > PANEL else 1
            _rows(a, a0, lda, panels, m0 + (c // PANEL) * ps, ps, out, oc + c, ldo, kn,
                  min(NP * PANEL, width - c), acc, nb, NP)
            c += NP * PANEL
        ks += kn
        if ks >= k0 + K:
            break


@jit_inline
def panel_product_k(a, ac, panels, q, p0, width, k0, K, out, oc, nb, accumulate):
    """out[:nb, oc:oc+width] (+)= a[:nb, ac:ac+K] @ M[k0:k0+K] (_panel_product_k), inlined
    into its callers: the arrays go on as views that hold no reference (numba_cells.unowned),
    so that the call does not touch their reference counts."""
    _panel_product_k(unowned(a), ac, unowned(panels), q, p0, width, k0, K, unowned(out), oc,
                     nb, accumulate)


@jit_inline
def panel_product(a, ac, panels, q, p0, width, out, oc, nb, accumulate):
    """panel_product_k over the panels' whole depth: out[:nb, oc:oc+width] (+)=
    a[:nb, ac:ac+depth] @ (columns p0*PANEL .. p0*PANEL+width-1 of gate block q of w^T)."""
    panel_product_k(a, ac, panels, q, p0, width, 0, panels.shape[2], out, oc, nb, accumulate)


def pack_transposed(w):
    """panels (1, ceil(N / PANEL), K, PANEL) of w (K, N) itself (pack_panels(w.T, 1), made
    without the transposed copy): panels[0, p, k, l] = w[k, p*PANEL + l], 0 past N; on a
    VECTOR_BYTES boundary."""
    w = np.asarray(w)
    K, N = w.shape
    n_panels = -(-N // PANEL)
    padded = w
    if N % PANEL:
        padded = np.zeros((K, n_panels * PANEL), dtype=w.dtype)
        padded[:, :N] = w
    out = aligned_empty((1, n_panels, K, PANEL), w.dtype)
    out[0] = padded.reshape(K, n_panels, PANEL).transpose(1, 0, 2)
    return out


@jit
def pack_rows(src, rows, v0, v1, c0, n, panels):
    """panels[0, p, v, l] = src[rows[v], c0 + p*PANEL + l] for v0 <= v < v1 (0 where
    p*PANEL + l >= n): rows of src (R, >= c0+n) as the panels of a product's right side (the
    backward's x, h_prev and m of the running rows, against dA^T). rows (V,) intp, panels
    (1, ceil(n / PANEL), >= V, PANEL)."""
    n_panels = panels.shape[1]
    for v in range(v0, v1):
        row = rows[v]
        for p in range(n_panels):
            width = min(PANEL, n - p * PANEL)
            for lane in range(width):
                panels[0, p, v, lane] = src[row, c0 + p * PANEL + lane]
            for lane in range(width, PANEL):
                panels[0, p, v, lane] = 0
