/* The body of _gemm.h for one element type: include with FL_T (float or double) and FL_SUF
 * (f or d) defined. Every name gets the suffix, e.g. fl_gemm_f and fl_gemm_d. */
#define FL_CAT2(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT2(a, b)
#define FL_NAME(name) FL_CAT(name, FL_SUF)
#define FL_VEC FL_NAME(fl_vec)
#define FL_UVEC FL_NAME(fl_uvec)
#define FL_LANES ((ptrdiff_t)(FL_VBYTES / sizeof(FL_T)))
#define FL_NR (FL_NV * FL_LANES)

typedef FL_T FL_VEC __attribute__((vector_size(FL_VBYTES)));
/* the same vector at any element-aligned address */
typedef FL_T FL_UVEC __attribute__((vector_size(FL_VBYTES), aligned(sizeof(FL_T)), may_alias));

/* Columns per panel. */
static inline ptrdiff_t FL_NAME(fl_panel_width)(void) { return FL_NR; }

/* Length of the packed form of a (k, n) matrix. */
static inline ptrdiff_t FL_NAME(fl_packed_length)(ptrdiff_t k, ptrdiff_t n)
{
    return (n + FL_NR - 1) / FL_NR * FL_NR * k;
}

#ifdef FL_HAVE_SHUFFLE
#define FL_IVEC FL_NAME(fl_ivec)
typedef FL_ITYPE FL_IVEC __attribute__((vector_size(FL_VBYTES)));

/* Transposes the LANES x LANES tile whose rows are v[0 : LANES], in place: in round s = 1, 2,
 * 4, ... the off-diagonal s x s blocks of every 2s x 2s block trade places, by lane shuffles
 * of row pairs (i, i + s). */
static inline __attribute__((always_inline)) void FL_NAME(fl_transpose_tile)(FL_VEC* v)
{
#pragma GCC unroll 8
    for (int s = 1; s < FL_LANES; s *= 2) {
        FL_IVEC keep, take;
#pragma GCC unroll 16
        for (int p = 0; p < FL_LANES; p++) {
            keep[p] = (p & s) ? FL_LANES + p - s : p;  /* row i: a's lane, or b's s lanes back */
            take[p] = (p & s) ? FL_LANES + p : p + s;  /* row i+s: a's lane s ahead, or b's */
        }
#pragma GCC unroll 16
        for (int i = 0; i < FL_LANES; i++) {
            if (i & s) continue;
            FL_VEC a = v[i], b = v[i + s];
            v[i] = __builtin_shuffle(a, b, keep);
            v[i + s] = __builtin_shuffle(a, b, take);
        }
    }
}
#undef FL_IVEC
#endif

/* fl_pack for B stored along its columns (element (q, j) at b[q + j*bcs], e.g. B = W^T for a
 * row-major W): whole LANES x LANES tiles go through vector registers and a transpose. */
static void FL_NAME(fl_pack_columns)(ptrdiff_t k, ptrdiff_t n, const FL_T* b, ptrdiff_t bcs,
                                     FL_T* out, ptrdiff_t panel_stride)
{
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_NR) {
        FL_T* panel = out + j0 / FL_NR * panel_stride;
        ptrdiff_t nc = n - j0 < FL_NR ? n - j0 : FL_NR;
        ptrdiff_t jt = 0;
#ifdef FL_HAVE_SHUFFLE
        for (; jt + FL_LANES <= nc; jt += FL_LANES) {
            const FL_T* col = b + (j0 + jt) * bcs;
            ptrdiff_t q = 0;
            for (; q + FL_LANES <= k; q += FL_LANES) {
                FL_VEC v[FL_LANES];
#pragma GCC unroll 16
                for (int i = 0; i < FL_LANES; i++) v[i] = *(const FL_UVEC*)(col + i * bcs + q);
                FL_NAME(fl_transpose_tile)(v);
#pragma GCC unroll 16
                for (int i = 0; i < FL_LANES; i++) *(FL_UVEC*)(panel + (q + i) * FL_NR + jt) = v[i];
            }
            for (; q < k; q++)
                for (ptrdiff_t i = 0; i < FL_LANES; i++) panel[q * FL_NR + jt + i] = col[i * bcs + q];
        }
#endif
        for (ptrdiff_t q = 0; q < k; q++) {
            for (ptrdiff_t j = jt; j < nc; j++) panel[q * FL_NR + j] = b[q + (j0 + j) * bcs];
            for (ptrdiff_t j = nc; j < FL_NR; j++) panel[q * FL_NR + j] = 0;
        }
    }
}

/* Packs rows [0, k) of B (element (q, j) at b[q*brs + j*bcs], n columns) into `out`, whose
 * panels are `panel_stride` values apart (the full k of the packed matrix times NR), so that a
 * range of rows can be packed by passing b and out advanced to its first row. */
static __attribute__((unused)) void FL_NAME(fl_pack)(ptrdiff_t k, ptrdiff_t n, const FL_T* b,
                                                     ptrdiff_t brs, ptrdiff_t bcs, FL_T* out,
                                                     ptrdiff_t panel_stride)
{
    if (brs == 1 && bcs != 1) {
        FL_NAME(fl_pack_columns)(k, n, b, bcs, out, panel_stride);
        return;
    }
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_NR) {
        FL_T* panel = out + j0 / FL_NR * panel_stride;
        ptrdiff_t nc = n - j0 < FL_NR ? n - j0 : FL_NR;
        for (ptrdiff_t q = 0; q < k; q++) {
            const FL_T* src = b + q * brs + j0 * bcs;
            FL_T* dst = panel + q * FL_NR;
            ptrdiff_t j = 0;
            for (; j < nc; j++) dst[j] = src[j * bcs];
            for (; j < FL_NR; j++) dst[j] = 0;
        }
    }
}

/* C[0:mr, 0:nv*LANES] (+)= A[0:mr, 0:k] @ panel[0:k, 0:nv*LANES], mr <= MR, nv <= NV (the
 * first nv vectors of each panel row: a panel whose last columns are empty costs only the
 * vectors that hold columns). Inlined with constant mr and nv, so that the accumulators
 * become registers. Each element of C is one running sum over k in order, whatever nv. */
static inline __attribute__((always_inline)) void
FL_NAME(fl_block)(const int mr, const int nv, ptrdiff_t k, const FL_T* a, ptrdiff_t ars,
                  ptrdiff_t acs, const FL_T* panel, FL_T* c, ptrdiff_t ldc, int load_c)
{
    FL_VEC acc[FL_MR][FL_NV];
#pragma GCC unroll 8
    for (int r = 0; r < FL_MR; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < FL_NV; v++) {
            if (r < mr && v < nv)
                acc[r][v] = load_c ? (FL_VEC)*(const FL_UVEC*)(c + r * ldc + v * FL_LANES)
                                   : (FL_VEC){0};
        }
    }
    for (ptrdiff_t q = 0; q < k; q++) {
        FL_VEC bv[FL_NV];
#pragma GCC unroll 8
        for (int v = 0; v < FL_NV; v++) {
            if (v < nv) {
                bv[v] = *(const FL_UVEC*)(panel + q * FL_NR + v * FL_LANES);
                if (mr > 2 && mr < FL_MR) FL_IN_REGISTER(bv[v]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < FL_MR; r++) {
            if (r < mr) {
                FL_T s = a[r * ars + q * acs];
#pragma GCC unroll 8
                for (int v = 0; v < FL_NV; v++)
                    if (v < nv) acc[r][v] += s * bv[v];
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < FL_MR; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < FL_NV; v++) {
            if (r < mr && v < nv) *(FL_UVEC*)(c + r * ldc + v * FL_LANES) = acc[r][v];
        }
    }
}

/* fl_block for a constant mr and a run-time nv (1 ... NV). */
#define FL_BLOCK_NV(mr)                                                                   \
    switch (nv) {                                                                         \
    case 1: FL_NAME(fl_block)(mr, 1, k, a, ars, acs, panel, dst, ldd, load_c); break;     \
    case 2: FL_NAME(fl_block)(mr, 2 < FL_NV ? 2 : FL_NV, k, a, ars, acs, panel, dst, ldd, \
                              load_c); break;                                             \
    case 3: FL_NAME(fl_block)(mr, 3 < FL_NV ? 3 : FL_NV, k, a, ars, acs, panel, dst, ldd, \
                              load_c); break;                                             \
    default: FL_NAME(fl_block)(mr, FL_NV, k, a, ars, acs, panel, dst, ldd, load_c); break; \
    }

/* fl_block for a run-time mr (1 ... MR) and the first nc <= NR columns of C: only the
 * vectors that hold columns are computed (a narrow product, e.g. H = 32 against a 64-column
 * AVX-512 panel, does half the work, not all of it). */
static void FL_NAME(fl_block_any)(int mr, ptrdiff_t nc, ptrdiff_t k, const FL_T* a,
                                  ptrdiff_t ars, ptrdiff_t acs, const FL_T* panel, FL_T* c,
                                  ptrdiff_t ldc, int load_c)
{
    FL_T edge[FL_MR * FL_NR];
    FL_T* dst = c;
    ptrdiff_t ldd = ldc;
    int nv = (int)((nc + FL_LANES - 1) / FL_LANES);
    if (nc < nv * FL_LANES) {  /* a partial vector: work on a copy, nv vectors wide */
        for (int r = 0; r < mr; r++)
            for (ptrdiff_t j = 0; j < nv * FL_LANES; j++)
                edge[r * FL_NR + j] = (load_c && j < nc) ? c[r * ldc + j] : 0;
        dst = edge;
        ldd = FL_NR;
        load_c = 1;
    }
    switch (mr) {
    case 1: FL_BLOCK_NV(1); break;
    case 2: FL_BLOCK_NV(2); break;
    case 3: FL_BLOCK_NV(3); break;
    case 4: FL_BLOCK_NV(4); break;
    case 5: FL_BLOCK_NV(5); break;
    default: FL_BLOCK_NV(FL_MR); break;
    }
    if (dst == edge) {
        for (int r = 0; r < mr; r++)
            for (ptrdiff_t j = 0; j < nc; j++) c[r * ldc + j] = edge[r * FL_NR + j];
    }
}
#undef FL_BLOCK_NV

/* One or two rows of C against pw <= FL_WIDE / mr whole panels at once: C[0:mr, panels' columns]
 * (+)= A[0:mr, 0:k] @ those panels (panel p at panel + p * pstride). A single row against one
 * panel is a chain of NV dependent multiply-adds per step of k, so it waits on the latency of
 * each one; over several panels the chains interleave. Each element of C is still one running
 * sum over k in order: the same arithmetic as fl_block. */
#define FL_WIDE 4
static inline __attribute__((always_inline)) void
FL_NAME(fl_block_wide)(const int mr, const int pw, ptrdiff_t k, const FL_T* a, ptrdiff_t ars,
                       ptrdiff_t acs, const FL_T* panel, ptrdiff_t pstride, FL_T* c,
                       ptrdiff_t ldc, int load_c)
{
    FL_VEC acc[2][FL_WIDE][FL_NV];
#pragma GCC unroll 8
    for (int r = 0; r < 2; r++)
#pragma GCC unroll 8
        for (int p = 0; p < FL_WIDE; p++)
#pragma GCC unroll 8
            for (int v = 0; v < FL_NV; v++)
                if (r < mr && p < pw)
                    acc[r][p][v] = load_c ? (FL_VEC)*(const FL_UVEC*)(c + r * ldc + p * FL_NR
                                                                       + v * FL_LANES)
                                          : (FL_VEC){0};
    for (ptrdiff_t q = 0; q < k; q++) {
        FL_T s0 = a[q * acs];
        FL_T s1 = mr > 1 ? a[ars + q * acs] : 0;
#pragma GCC unroll 8
        for (int p = 0; p < FL_WIDE; p++) {
#pragma GCC unroll 8
            for (int v = 0; v < FL_NV; v++) {
                if (p < pw) {
                    FL_VEC bv = *(const FL_UVEC*)(panel + p * pstride + q * FL_NR + v * FL_LANES);
                    if (mr > 1) FL_IN_REGISTER(bv);
                    acc[0][p][v] += s0 * bv;
                    if (mr > 1) acc[1][p][v] += s1 * bv;
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 2; r++)
#pragma GCC unroll 8
        for (int p = 0; p < FL_WIDE; p++)
#pragma GCC unroll 8
            for (int v = 0; v < FL_NV; v++)
                if (r < mr && p < pw)
                    *(FL_UVEC*)(c + r * ldc + p * FL_NR + v * FL_LANES) = acc[r][p][v];
}

/* C (m, n) (+)= A (m, k) @ B (k, n) for rows of A that run along k (acs == 1, or any A
 * small enough to sit in cache): the blocks read A in place. The rows may come in `groups`
 * of m each, group g's at a + g*a_gs and c + g*c_gs (so one pass over each panel serves the
 * rows of several steps). With `backwards`, the panels are visited last to first. Neither
 * changes the arithmetic. One or two rows (m <= 2) go through FL_WIDE / m whole panels at a
 * time (fl_block_wide); the panels form spans of that many, visited as the panels are. */
static void FL_NAME(fl_gemm_direct)(ptrdiff_t groups, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                    const FL_T* a, ptrdiff_t ars, ptrdiff_t acs,
                                    ptrdiff_t a_gs, const FL_T* packed, FL_T* c, ptrdiff_t ldc,
                                    ptrdiff_t c_gs, int accumulate, int backwards)
{
    ptrdiff_t panels = (n + FL_NR - 1) / FL_NR;
    ptrdiff_t pw = m == 1 ? FL_WIDE : (m == 2 ? FL_WIDE / 2 : 1);   /* panels per span */
    if (pw > panels && n % FL_NR == 0)   /* fewer whole panels (a thread's slice): one span */
        pw = panels;
    ptrdiff_t spans = (panels + pw - 1) / pw;
    ptrdiff_t pstride = k * FL_NR;
    /* For a short k (at most two passes of FL_KC), span after span, each through all of k:
     * the span's results stay in L1 meanwhile. For a long k, pass after pass of FL_KC steps,
     * each through all spans: the rows of A of one pass stay in L1 meanwhile. */
    int panel_outer = k <= 2 * FL_KC;
    ptrdiff_t outer = panel_outer ? spans : (k + FL_KC - 1) / FL_KC;
    ptrdiff_t inner = panel_outer ? (k + FL_KC - 1) / FL_KC : spans;
    for (ptrdiff_t o = 0; o < outer; o++) {
        for (ptrdiff_t i = 0; i < inner; i++) {
            ptrdiff_t sp = panel_outer ? o : i, q0 = (panel_outer ? i : o) * FL_KC;
            ptrdiff_t p0 = (backwards ? spans - 1 - sp : sp) * pw;
            ptrdiff_t p1 = p0 + pw < panels ? p0 + pw : panels;
            ptrdiff_t kc = k - q0 < FL_KC ? k - q0 : FL_KC;
            int load_c = accumulate || q0 > 0;
            int whole = pw > 1 && p1 - p0 == pw && p1 * FL_NR <= n;
            for (ptrdiff_t g = 0; g < groups; g++) {
                const FL_T* ag = a + g * a_gs + q0 * acs;
                FL_T* cg = c + g * c_gs;
                if (whole) {
                    const FL_T* panel = packed + p0 * pstride + q0 * FL_NR;
                    FL_T* cp = cg + p0 * FL_NR;
                    if (m == 2)
                        FL_NAME(fl_block_wide)(2, FL_WIDE / 2, kc, ag, ars, acs, panel, pstride,
                                               cp, ldc, load_c);
                    else if (pw == FL_WIDE)
                        FL_NAME(fl_block_wide)(1, FL_WIDE, kc, ag, ars, acs, panel, pstride,
                                               cp, ldc, load_c);
                    else if (pw == 3)
                        FL_NAME(fl_block_wide)(1, 3, kc, ag, ars, acs, panel, pstride, cp, ldc,
                                               load_c);
                    else
                        FL_NAME(fl_block_wide)(1, 2, kc, ag, ars, acs, panel, pstride, cp, ldc,
                                               load_c);
                    continue;
                }
                for (ptrdiff_t pp = 0; pp < p1 - p0; pp++) {
                    ptrdiff_t p = backwards ? p1 - 1 - pp : p0 + pp;
                    ptrdiff_t j0 = p * FL_NR;
                    ptrdiff_t nc = n - j0 < FL_NR ? n - j0 : FL_NR;
                    const FL_T* panel = packed + p * pstride + q0 * FL_NR;
                    ptrdiff_t r = 0;
                    while (r < m) {
                        ptrdiff_t left = m - r;
                        /* 7 ... 9 rows: two blocks of about half each, not a full and a thin
                         * one */
                        int mr = left > FL_MR && left < 10 ? (int)(left + 1) / 2
                                                           : (int)(left < FL_MR ? left : FL_MR);
                        FL_NAME(fl_block_any)(mr, nc, kc, ag + r * ars, ars, acs, panel,
                                              cg + r * ldc + j0, ldc, load_c);
                        r += mr;
                    }
                }
            }
        }
    }
}

/* Rows of A per copied block in fl_gemm_copy_a, and steps of k per copy. */
#define FL_MC (8 * FL_MR)
#define FL_KCA 256

/* Values of the work buffer fl_gemm_sums needs (one per thread that calls it at once). */
static inline ptrdiff_t FL_NAME(fl_copy_length)(void) { return FL_MC * FL_KCA; }

/* The same product for an A stored along its columns (ars == 1, as A = dA^T in the backward
 * pass), where reading it in place would touch a new cache line, often a new page, at every
 * step of k: blocks of FL_MC rows x FL_KCA steps are first copied into `abuf`
 * (fl_copy_length() values, step after step, each step's FL_MC values together) that the blocks
 * then read in order. Step q of k reads A's column kmap[q] (q itself when kmap is NULL), so a
 * product can skip columns of A that hold nothing (padded steps). Each row of A is also summed
 * into row_sums (along all of k, in order). C is overwritten. */
static void FL_NAME(fl_gemm_copy_a)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const FL_T* a,
                                    ptrdiff_t ars, ptrdiff_t acs, const int64_t* kmap,
                                    const FL_T* packed, FL_T* c, ptrdiff_t ldc, FL_T* row_sums,
                                    FL_T* abuf)
{
    for (ptrdiff_t q0 = 0; q0 < k; q0 += FL_KCA) {
        ptrdiff_t kc = k - q0 < FL_KCA ? k - q0 : FL_KCA;
        int load_c = q0 > 0;
        for (ptrdiff_t r0 = 0; r0 < m; r0 += FL_MC) {
            ptrdiff_t mc = m - r0 < FL_MC ? m - r0 : FL_MC;
            /* abuf[q * MC + i] = A[r0 + i, column of step q0 + q] */
            for (ptrdiff_t q = 0; q < kc; q++) {
                ptrdiff_t col = kmap ? (ptrdiff_t)kmap[q0 + q] : q0 + q;
                const FL_T* src = a + r0 * ars + col * acs;
                if (ars == 1)
                    for (ptrdiff_t i = 0; i < mc; i++) abuf[q * FL_MC + i] = src[i];
                else
                    for (ptrdiff_t i = 0; i < mc; i++) abuf[q * FL_MC + i] = src[i * ars];
            }
            FL_T* sums = row_sums + r0;
            if (q0 == 0)
                for (ptrdiff_t i = 0; i < mc; i++) sums[i] = 0;
            for (ptrdiff_t q = 0; q < kc; q++)
                for (ptrdiff_t i = 0; i < mc; i++) sums[i] += abuf[q * FL_MC + i];
            for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_NR) {
                const FL_T* panel = packed + j0 / FL_NR * k * FL_NR + q0 * FL_NR;
                ptrdiff_t nc = n - j0 < FL_NR ? n - j0 : FL_NR;
                for (ptrdiff_t r = 0; r < mc; r += FL_MR) {
                    int mr = (int)(mc - r < FL_MR ? mc - r : FL_MR);
                    FL_NAME(fl_block_any)(mr, nc, kc, abuf + r, 1, FL_MC, panel,
                                          c + (r0 + r) * ldc + j0, ldc, load_c);
                }
            }
        }
    }
}

/* C (m, n) (+)= A (m, k) @ B (k, n): A's element (r, q) at a[r*ars + q*acs]; `packed` is B
 * packed by fl_pack with panel_stride k * NR; C row-major with leading dimension ldc. With
 * accumulate = 0, C is overwritten (and zeroed when k = 0). */
static __attribute__((unused)) void FL_NAME(fl_gemm)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                                     const FL_T* a, ptrdiff_t ars,
                                                     ptrdiff_t acs, const FL_T* packed,
                                                     FL_T* c, ptrdiff_t ldc, int accumulate)
{
    if (k == 0) {
        if (!accumulate)
            for (ptrdiff_t r = 0; r < m; r++) memset(c + r * ldc, 0, n * sizeof(FL_T));
        return;
    }
    FL_NAME(fl_gemm_direct)(1, m, n, k, a, ars, acs, 0, packed, c, ldc, 0, accumulate, 0);
}

/* C (m, n) = A (m, k) @ B (k, n) as in fl_gemm, and row_sums (m,) = the sums of A's rows
 * (each along k, in order): for the backward pass, where A = dA^T gives the weight gradients
 * and the bias gradient in one read of dA. An A stored along its columns (acs != 1) is read
 * through copies of its blocks in `work` (fl_copy_length() values, this caller's own). With a
 * kmap (k indices), step q of k is A's column kmap[q] (see fl_gemm_copy_a). */
static __attribute__((unused)) void FL_NAME(fl_gemm_sums)(ptrdiff_t m, ptrdiff_t n,
                                                          ptrdiff_t k, const FL_T* a,
                                                          ptrdiff_t ars, ptrdiff_t acs,
                                                          const int64_t* kmap,
                                                          const FL_T* packed, FL_T* c,
                                                          ptrdiff_t ldc, FL_T* row_sums,
                                                          FL_T* work)
{
    if (k > 0 && (kmap || (acs != 1 && m > FL_MR))) {
        FL_NAME(fl_gemm_copy_a)(m, n, k, a, ars, acs, kmap, packed, c, ldc, row_sums, work);
        return;
    }
    FL_NAME(fl_gemm)(m, n, k, a, ars, acs, packed, c, ldc, 0);
    for (ptrdiff_t r = 0; r < m; r++) {
        FL_T sum = 0;
        for (ptrdiff_t q = 0; q < k; q++) sum += a[r * ars + q * acs];
        row_sums[r] = sum;
    }
}

/* C (overwritten) = A @ B for `groups` groups of m rows of A read along their rows (acs == 1):
 * group g's rows at a + g*a_gs, its results at c + g*c_gs. Groups that lie one after another
 * in A and in C (a_gs = m*ars, c_gs = m*ldc: every row of a step's batch, e.g. B = 1) are one
 * product of groups*m rows, whose blocks of up to FL_MR rows each use a loaded panel vector
 * FL_MR times (a group of one row uses it once, and waits on the panel's reads from L2). */
static __attribute__((unused)) void FL_NAME(fl_gemm_groups)(ptrdiff_t groups, ptrdiff_t m,
                                                            ptrdiff_t n, ptrdiff_t k,
                                                            const FL_T* a, ptrdiff_t ars,
                                                            ptrdiff_t a_gs, const FL_T* packed,
                                                            FL_T* c, ptrdiff_t ldc,
                                                            ptrdiff_t c_gs)
{
    if (k == 0) {
        for (ptrdiff_t g = 0; g < groups; g++)
            FL_NAME(fl_gemm)(m, n, k, a + g * a_gs, ars, 1, packed, c + g * c_gs, ldc, 0);
        return;
    }
    if (groups > 1 && a_gs == m * ars && c_gs == m * ldc) {
        m *= groups;
        groups = 1;
    }
    FL_NAME(fl_gemm_direct)(groups, m, n, k, a, ars, 1, a_gs, packed, c, ldc, c_gs, 0, 0);
}

/* fl_gemm for A read along its rows (acs == 1), visiting B's panels last to first. A time loop
 * that alternates fl_gemm and this at each step finds the panels it used last still in cache
 * (L1 at B = 1, L2 for larger batches) when a packed matrix is a little too big for it. The
 * results are the same, bit for bit. */
static __attribute__((unused)) void FL_NAME(fl_gemm_backwards)(ptrdiff_t m, ptrdiff_t n,
                                                               ptrdiff_t k, const FL_T* a,
                                                               ptrdiff_t ars, const FL_T* packed,
                                                               FL_T* c, ptrdiff_t ldc,
                                                               int accumulate)
{
    if (k == 0) {
        FL_NAME(fl_gemm)(m, n, k, a, ars, 1, packed, c, ldc, accumulate);
        return;
    }
    FL_NAME(fl_gemm_direct)(1, m, n, k, a, ars, 1, 0, packed, c, ldc, 0, accumulate, 1);
}

#undef FL_CAT2
#undef FL_CAT
#undef FL_NAME
#undef FL_VEC
#undef FL_UVEC
#undef FL_LANES
#undef FL_NR
#undef FL_MC
#undef FL_KCA
#undef FL_WIDE
