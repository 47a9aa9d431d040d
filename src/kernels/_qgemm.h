/* Reduced-precision products for the Cython inference driver (recurrent_quantized.pyx):
 * int8 and bfloat16, mirroring fastlstm/reference/quantized.py (Int8Matrix.product,
 * BFloat16Matrix.product, quantize_activations, to_bfloat16).
 *
 * Packed weights (fastlstm/_reduced.py makes them, once): panels of FL_QR = 16 output rows.
 *   int8:     panel p, group g of 4 steps of k: 64 bytes, byte [r][kk] = W_q[16p + r, 4g + kk]
 *   bfloat16: panel p, pair g of 2 steps of k: 64 bytes, value [r][kk] = W[16p + r, 2g + kk]
 * zeros past the last row and the last k. So one 512-bit vector (or two 256-bit ones, four
 * 128-bit ones) holds a group of a panel, and the dot-product instructions (vpdpbusd,
 * vdpbf16ps) sum each lane's 4 (2) products into one int32 (float32) lane per output row.
 *
 * Activations come quantized here first (fl_q8_quantize, fl_bf16_round), each row padded with
 * zeros to a whole group. The int8 sums are exact on every path, so every path gives the same
 * bits; the bfloat16 products are exact in float32, only the order of the float32 sums differs.
 *
 * Paths, chosen by the caller (`dot`: 1 for the dot-product instructions where this build and
 * the CPU have them, see fl_q_dot_paths):
 *   int8, dot:   vpdpbusd (AVX512_VNNI in the x86-64-v4 build, AVX_VNNI in the v3 build). It
 *                multiplies unsigned by signed bytes, so the activations go in as x_q + 128
 *                (x_q ^ 0x80) and (128 + z_x) * sum_k W_q[n, k] (the panel's row sums, z_x
 *                the activation row's zero point) comes off; the plain path takes off
 *                z_x * sum_k W_q[n, k].
 *   int8, plain: vpmaddubsw + vpmaddwd (AVX2 in the v3 and v4 builds, SSSE3 in v2), with
 *                |W_q| as the unsigned operand and x_q * sign(W_q) (vpsignb) as the signed one:
 *                codes are in [-127, 127], so a pair of products is at most 2 * 127 * 127 =
 *                32258 and the 16-bit sums never saturate (the same range ONNX Runtime and
 *                rten keep for CPUs without VNNI, got here without a 7-bit range).
 *   bf16, dot:   vdpbf16ps (AVX512_BF16, v4 build).
 *   bf16, plain: each bfloat16 widened to float32 by a shift, then FMA (mul + add in v2): the
 *                weights still move at half the bytes of float32.
 */
#ifndef FASTLSTM_QGEMM_H
#define FASTLSTM_QGEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>
#if defined(__x86_64__) && defined(__SSSE3__)
#  include <immintrin.h>
#  define FL_Q_X86 1
#endif

#define FL_QR 16        /* output rows per panel */

/* The build's own vector width (GCC splits wider generic vectors badly): 16 floats of a
 * panel's row are FL_Q_NV vectors. */
#if defined(__AVX512F__)
#  define FL_Q_VB 64
#elif defined(__AVX__)
#  define FL_Q_VB 32
#else
#  define FL_Q_VB 16
#endif
#define FL_Q_NV (64 / FL_Q_VB)
typedef float fl_vf __attribute__((vector_size(FL_Q_VB)));
typedef uint32_t fl_vu __attribute__((vector_size(FL_Q_VB)));
#define FL_QMAX 127.0f
#define FL_QSTEPS 254.0f   /* steps between the activation codes -127 and 127 */

/* Which dot-product paths this build has: bit 0 int8 (VNNI), bit 1 bfloat16 (AVX512_BF16). */
#if defined(FL_Q_X86) && defined(__AVX512F__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  define FL_Q_VNNI512 1
#  define FL_Q_BF16DOT 1
#elif defined(FL_Q_X86) && defined(__AVX2__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#  define FL_Q_AVXVNNI 1
#endif

static inline int fl_q_dot_paths(void)
{
    int paths = 0;
#if defined(FL_Q_VNNI512) || defined(FL_Q_AVXVNNI)
    paths |= 1;
#endif
#ifdef FL_Q_BF16DOT
    paths |= 2;
#endif
    return paths;
}

/* ------------------------------------------------------------------ activations */

/* x (m, k) rows of stride ldx -> codes q (m, ldq), ldq >= k rounded up to 4, zeros past k,
 * scale (m,) and zero (m,) (integer-valued floats): reference.quantized.quantize_activations,
 * the same float32 operations (asymmetric: each row's [min(x, 0), max(x, 0)] over the 254
 * steps from -127 to 127, 0 at code `zero`). flip: store each code as code ^ 0x80, i.e.
 * code + 128 read as unsigned (vpdpbusd's operand). */
static inline void fl_q8_quantize(ptrdiff_t m, ptrdiff_t k, const float* x, ptrdiff_t ldx,
                                  int8_t* q, ptrdiff_t ldq, float* scale, float* zero,
                                  int flip)
{
    const int mask = flip ? 0x80 : 0;
    for (ptrdiff_t r = 0; r < m; r++) {
        const float* row = x + r * ldx;
        int8_t* out = q + r * ldq;
        /* the least and the largest value, and whether any value is NaN or infinite: with the
         * sign bit cleared, float32 bit patterns order as their values do, and NaN and
         * infinity lie above FLT_MAX's, so one integer maximum per vector finds both */
        int32_t top = 0;
        float lo = 0.0f, hi = 0.0f;
        ptrdiff_t j = 0;
#if defined(FL_Q_X86) && defined(__AVX512F__)
        __m512i vtop = _mm512_setzero_si512();
        __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
        for (; j + 16 <= k; j += 16) {
            __m512 v = _mm512_loadu_ps(row + j);
            vtop = _mm512_max_epi32(vtop, _mm512_and_si512(_mm512_castps_si512(v),
                                                           _mm512_set1_epi32(0x7FFFFFFF)));
            vlo = _mm512_min_ps(vlo, v);
            vhi = _mm512_max_ps(vhi, v);
        }
        top = _mm512_reduce_max_epi32(vtop);
        lo = _mm512_reduce_min_ps(vlo);
        hi = _mm512_reduce_max_ps(vhi);
#elif defined(FL_Q_X86) && defined(__AVX2__)
        __m256i vtop = _mm256_setzero_si256();
        __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
        for (; j + 8 <= k; j += 8) {
            __m256 v = _mm256_loadu_ps(row + j);
            vtop = _mm256_max_epi32(vtop, _mm256_and_si256(_mm256_castps_si256(v),
                                                           _mm256_set1_epi32(0x7FFFFFFF)));
            vlo = _mm256_min_ps(vlo, v);
            vhi = _mm256_max_ps(vhi, v);
        }
        int32_t lanes[8];
        float los[8], his[8];
        _mm256_storeu_si256((__m256i*)lanes, vtop);
        _mm256_storeu_ps(los, vlo);
        _mm256_storeu_ps(his, vhi);
        for (int l = 0; l < 8; l++) {
            top = lanes[l] > top ? lanes[l] : top;
            lo = los[l] < lo ? los[l] : lo;
            hi = his[l] > hi ? his[l] : hi;
        }
#endif
        for (; j < k; j++) {
            int32_t bits;
            memcpy(&bits, row + j, 4);
            bits &= 0x7FFFFFFF;
            top = bits > top ? bits : top;
            lo = row[j] < lo ? row[j] : lo;
            hi = row[j] > hi ? row[j] : hi;
        }
        int bad = top > 0x7F7FFFFF;   /* above FLT_MAX: an infinity or a NaN */
        memset(out + k, 0, (size_t)(ldq - k));
        if (bad) {
            scale[r] = NAN;
            zero[r] = 0.0f;
            memset(out, mask, (size_t)k);
            continue;
        }
        /* lo <= 0 <= hi (min and max with 0 are exact), so range is their float32 difference */
        float range = hi - lo;
        scale[r] = range / FL_QSTEPS;
        float inverse = range > 0.0f ? FL_QSTEPS / range : 0.0f;
        float z = inverse > 0.0f ? rintf(-FL_QMAX - lo * inverse) : 0.0f;
        zero[r] = z;
        const int32_t zi = (int32_t)z;
        /* rint(v * inverse) + zero, clamped to [-127, 127]; rounding half to even is the
         * rounding mode's, as rintf's */
        j = 0;
#if defined(FL_Q_X86) && defined(__AVX512F__)
        for (; j + 16 <= k; j += 16) {
            __m512 v = _mm512_mul_ps(_mm512_loadu_ps(row + j), _mm512_set1_ps(inverse));
            __m512i c = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(zi));
            c = _mm512_min_epi32(_mm512_max_epi32(c, _mm512_set1_epi32(-127)),
                                 _mm512_set1_epi32(127));
            c = _mm512_xor_si512(c, _mm512_set1_epi32(mask));
            _mm_storeu_si128((__m128i*)(out + j), _mm512_cvtepi32_epi8(c));
        }
#elif defined(FL_Q_X86) && defined(__AVX2__)
        for (; j + 8 <= k; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + j), _mm256_set1_ps(inverse));
            __m256i c = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(zi));
            c = _mm256_min_epi32(_mm256_max_epi32(c, _mm256_set1_epi32(-127)),
                                 _mm256_set1_epi32(127));
            __m128i lo4 = _mm256_castsi256_si128(c), hi4 = _mm256_extracti128_si256(c, 1);
            __m128i w = _mm_packs_epi32(lo4, hi4);             /* in range: exact */
            w = _mm_xor_si128(_mm_packs_epi16(w, w), _mm_set1_epi8((char)mask));
            _mm_storel_epi64((__m128i*)(out + j), w);
        }
#endif
        for (; j < k; j++) {
            int32_t c = (int32_t)rintf(row[j] * inverse) + zi;
            c = c > 127 ? 127 : (c < -127 ? -127 : c);
            out[j] = (int8_t)(c ^ mask);
        }
    }
}

/* x (m, k) -> bfloat16 (m, ldq), ldq >= k rounded up to 2, zeros past k:
 * reference.quantized.to_bfloat16 (round to nearest even, NaN kept a quiet NaN). widen = 0:
 * q holds the bit patterns (uint16, for vdpbf16ps); widen = 1: q holds the rounded values as
 * float32 (the plain path, which then broadcasts them as they are). */
static inline void fl_bf16_round(ptrdiff_t m, ptrdiff_t k, const float* x, ptrdiff_t ldx,
                                 void* q, ptrdiff_t ldq, int widen)
{
    for (ptrdiff_t r = 0; r < m; r++) {
        const uint32_t* row = (const uint32_t*)(x + r * ldx);
        if (widen) {
            uint32_t* out = (uint32_t*)q + r * ldq;
            for (ptrdiff_t j = 0; j < k; j++) {
                uint32_t bits = row[j];
                uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
                int nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
                out[j] = nan ? ((bits & 0xFFFF0000u) | 0x400000u) : rounded;
            }
            for (ptrdiff_t j = k; j < ldq; j++)
                out[j] = 0;
        } else {
            uint16_t* out = (uint16_t*)q + r * ldq;
            for (ptrdiff_t j = 0; j < k; j++) {
                uint32_t bits = row[j];
                uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
                int nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
                out[j] = (uint16_t)(nan ? ((bits >> 16) | 0x40u) : rounded);
            }
            for (ptrdiff_t j = k; j < ldq; j++)
                out[j] = 0;
        }
    }
}

/* ------------------------------------------------------------------ common pieces */

#define FL_Q_MR 4   /* activation rows per block */
#define FL_Q_NP 4   /* panels per block on the dot paths (independent accumulator chains) */
#define FL_Q_NP1 8  /* ... when there is one row: more chains, to hide the instruction's latency */
#define FL_Q_INLINE static inline __attribute__((always_inline))

typedef int32_t fl_v16i __attribute__((vector_size(64)));
typedef float fl_v16f __attribute__((vector_size(64)));

/* out[0:nj] (+)= v (one panel's row of results, nj <= 16) */
FL_Q_INLINE void fl_q_put(fl_v16f v, float* out, ptrdiff_t nj, int accumulate)
{
    float tmp[FL_QR];
    if (nj == FL_QR) {
        if (accumulate) {
            fl_v16f o;
            memcpy(&o, out, sizeof o);
            v = o + v;
        }
        memcpy(out, &v, sizeof v);
        return;
    }
    memcpy(tmp, &v, sizeof v);
    for (ptrdiff_t j = 0; j < nj; j++)
        out[j] = accumulate ? out[j] + tmp[j] : tmp[j];
}

/* the int8 output pass of one panel's row: float32(acc - off * wsum[j]) * (xs * ws[j]) (ws,
 * wsum padded to 16): off is the row's zero point (plus 128 on the dot paths, whose codes
 * arrive as code + 128) */
FL_Q_INLINE void fl_q8_put(fl_v16i acc, int32_t off, float xs, const float* ws,
                           const int32_t* wsum, float* out, ptrdiff_t nj, int accumulate)
{
    fl_v16i sums;
    fl_v16f w;
    memcpy(&sums, wsum, sizeof sums);
    memcpy(&w, ws, sizeof w);
    fl_v16f f = __builtin_convertvector(acc - off * sums, fl_v16f);
    fl_q_put(f * (xs * w), out, nj, accumulate);
}

/* ------------------------------------------------------------------ int8, plain path */

#if defined(FL_Q_X86) && defined(__AVX2__)
/* mr <= 4 rows against one panel: sign trick, 256-bit (two vectors per group of a panel) */
FL_Q_INLINE void fl_q8_plain_block(const int mr, ptrdiff_t groups, const int8_t* x,
                                   ptrdiff_t ldx, const float* xs, const float* xz,
                                   const int8_t* panel, const float* ws, const int32_t* wsum,
                                   float* out, ptrdiff_t ldo, ptrdiff_t nj, int accumulate)
{
    __m256i s[FL_Q_MR][2];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int r = 0; r < mr; r++)
        s[r][0] = s[r][1] = _mm256_setzero_si256();
    for (ptrdiff_t g = 0; g < groups; g++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i*)(panel + g * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i*)(panel + g * 64 + 32));
        __m256i a0 = _mm256_abs_epi8(w0), a1 = _mm256_abs_epi8(w1);
        for (int r = 0; r < mr; r++) {
            int32_t word;
            memcpy(&word, x + r * ldx + 4 * g, 4);
            __m256i xb = _mm256_set1_epi32(word);
            __m256i p0 = _mm256_maddubs_epi16(a0, _mm256_sign_epi8(xb, w0));
            __m256i p1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(xb, w1));
            s[r][0] = _mm256_add_epi32(s[r][0], _mm256_madd_epi16(p0, ones));
            s[r][1] = _mm256_add_epi32(s[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
    for (int r = 0; r < mr; r++) {
        fl_v16i acc;
        memcpy(&acc, &s[r][0], 32);
        memcpy((char*)&acc + 32, &s[r][1], 32);
        fl_q8_put(acc, (int32_t)xz[r], xs[r], ws, wsum, out + r * ldo, nj, accumulate);
    }
}

/* One row against np <= FL_Q_NR1 panels (panel p at panel + p * panel_bytes): the sign moves
 * onto the weights, maddubs(|x|, sign(w, x)) = x w pairwise, so that one |x| per group serves
 * every panel where the block above takes |w| once per panel and row group: 4 vector
 * operations per 32 multiply-adds instead of 5 (the operations, not the multiplier, bound
 * this path: an AVX2 core such as Zen 3 retires about two of these a cycle). Never
 * saturates: |x| and |w| are at most 127, so a pair is at most 32258. */
#define FL_Q_NR1 4
FL_Q_INLINE void fl_q8_plain_row(const int np, ptrdiff_t groups, const int8_t* x, float xs,
                                 float xz, const int8_t* panel, ptrdiff_t panel_bytes,
                                 const float* ws, const int32_t* wsum, float* out,
                                 ptrdiff_t n_rest, int accumulate)
{
    __m256i s[FL_Q_NR1][2];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int p = 0; p < np; p++)
        s[p][0] = s[p][1] = _mm256_setzero_si256();
    for (ptrdiff_t g = 0; g < groups; g++) {
        int32_t word;
        memcpy(&word, x + 4 * g, 4);
        const __m256i xb = _mm256_set1_epi32(word);
        const __m256i ax = _mm256_abs_epi8(xb);
        for (int p = 0; p < np; p++) {
            const int8_t* w = panel + p * panel_bytes + g * 64;
            __m256i w0 = _mm256_loadu_si256((const __m256i*)w);
            __m256i w1 = _mm256_loadu_si256((const __m256i*)(w + 32));
            s[p][0] = _mm256_add_epi32(s[p][0], _mm256_madd_epi16(
                _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb)), ones));
            s[p][1] = _mm256_add_epi32(s[p][1], _mm256_madd_epi16(
                _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb)), ones));
        }
    }
    for (int p = 0; p < np; p++) {
        ptrdiff_t j0 = p * FL_QR, nj = n_rest - j0 < FL_QR ? n_rest - j0 : FL_QR;
        fl_v16i acc;
        memcpy(&acc, &s[p][0], 32);
        memcpy((char*)&acc + 32, &s[p][1], 32);
        fl_q8_put(acc, (int32_t)xz, xs, ws + j0, wsum + j0, out + j0, nj, accumulate);
    }
}
#elif defined(FL_Q_X86)
/* the same with 128-bit SSSE3 vectors: four per group of a panel */
FL_Q_INLINE void fl_q8_plain_block(const int mr, ptrdiff_t groups, const int8_t* x,
                                   ptrdiff_t ldx, const float* xs, const float* xz,
                                   const int8_t* panel, const float* ws, const int32_t* wsum,
                                   float* out, ptrdiff_t ldo, ptrdiff_t nj, int accumulate)
{
    __m128i s[FL_Q_MR][4];
    const __m128i ones = _mm_set1_epi16(1);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            s[r][v] = _mm_setzero_si128();
    for (ptrdiff_t g = 0; g < groups; g++) {
        __m128i w[4], a[4];
        for (int v = 0; v < 4; v++) {
            w[v] = _mm_loadu_si128((const __m128i*)(panel + g * 64 + 16 * v));
            a[v] = _mm_abs_epi8(w[v]);
        }
        for (int r = 0; r < mr; r++) {
            int32_t word;
            memcpy(&word, x + r * ldx + 4 * g, 4);
            __m128i xb = _mm_set1_epi32(word);
            for (int v = 0; v < 4; v++)
                s[r][v] = _mm_add_epi32(s[r][v], _mm_madd_epi16(
                    _mm_maddubs_epi16(a[v], _mm_sign_epi8(xb, w[v])), ones));
        }
    }
    for (int r = 0; r < mr; r++) {
        fl_v16i acc;
        memcpy(&acc, s[r], 64);
        fl_q8_put(acc, (int32_t)xz[r], xs[r], ws, wsum, out + r * ldo, nj, accumulate);
    }
}
#else
/* portable: plain loops */
FL_Q_INLINE void fl_q8_plain_block(const int mr, ptrdiff_t groups, const int8_t* x,
                                   ptrdiff_t ldx, const float* xs, const float* xz,
                                   const int8_t* panel, const float* ws, const int32_t* wsum,
                                   float* out, ptrdiff_t ldo, ptrdiff_t nj, int accumulate)
{
    for (int r = 0; r < mr; r++) {
        fl_v16i acc = {0};
        for (ptrdiff_t g = 0; g < groups; g++)
            for (int j = 0; j < FL_QR; j++)
                for (int kk = 0; kk < 4; kk++)
                    acc[j] += (int32_t)x[r * ldx + 4 * g + kk] * (int32_t)panel[(g * FL_QR + j) * 4 + kk];
        fl_q8_put(acc, (int32_t)xz[r], xs[r], ws, wsum, out + r * ldo, nj, accumulate);
    }
}
#endif

static void fl_q8_plain(ptrdiff_t m, ptrdiff_t n, ptrdiff_t groups, const int8_t* x,
                        ptrdiff_t ldx, const float* xs, const float* xz, const int8_t* panels,
                        const float* ws, const int32_t* wsum, float* out, ptrdiff_t ldo,
                        int accumulate)
{
#if defined(FL_Q_X86) && defined(__AVX2__)
    /* a last row of its own (m = 1: a step of a batch of one) goes through every panel
     * with fl_q8_plain_row, after the blocks of the rows before it */
    const ptrdiff_t m_blocks = m % FL_Q_MR == 1 ? m - 1 : m;
#else
    const ptrdiff_t m_blocks = m;
#endif
    for (ptrdiff_t p = 0; m_blocks > 0 && p * FL_QR < n; p++) {
        ptrdiff_t j0 = p * FL_QR, nj = n - j0 < FL_QR ? n - j0 : FL_QR;
        const int8_t* panel = panels + p * groups * 64;
        ptrdiff_t r0 = 0;
        for (; r0 + FL_Q_MR <= m_blocks; r0 += FL_Q_MR)
            fl_q8_plain_block(FL_Q_MR, groups, x + r0 * ldx, ldx, xs + r0, xz + r0, panel,
                              ws + j0, wsum + j0, out + r0 * ldo + j0, ldo, nj, accumulate);
        switch (m_blocks - r0) {
        case 3: fl_q8_plain_block(3, groups, x + r0 * ldx, ldx, xs + r0, xz + r0, panel,
                                  ws + j0, wsum + j0, out + r0 * ldo + j0, ldo, nj,
                                  accumulate); break;
        case 2: fl_q8_plain_block(2, groups, x + r0 * ldx, ldx, xs + r0, xz + r0, panel,
                                  ws + j0, wsum + j0, out + r0 * ldo + j0, ldo, nj,
                                  accumulate); break;
        case 1: fl_q8_plain_block(1, groups, x + r0 * ldx, ldx, xs + r0, xz + r0, panel,
                                  ws + j0, wsum + j0, out + r0 * ldo + j0, ldo, nj,
                                  accumulate); break;
        default: break;
        }
    }
#if defined(FL_Q_X86) && defined(__AVX2__)
    if (m_blocks < m) {
        const int8_t* row = x + m_blocks * ldx;
        float* orow = out + m_blocks * ldo;
        for (ptrdiff_t p = 0; p * FL_QR < n; p += FL_Q_NR1) {
            ptrdiff_t j0 = p * FL_QR, left = (n - j0 + FL_QR - 1) / FL_QR;
            const int8_t* panel = panels + p * groups * 64;
#define FL_Q_ROW(NP) fl_q8_plain_row(NP, groups, row, xs[m_blocks], xz[m_blocks], panel,     \
                                     groups * 64, ws + j0, wsum + j0, orow + j0, n - j0,    \
                                     accumulate)
            switch (left < FL_Q_NR1 ? left : FL_Q_NR1) {
            case 4: FL_Q_ROW(4); break;
            case 3: FL_Q_ROW(3); break;
            case 2: FL_Q_ROW(2); break;
            default: FL_Q_ROW(1); break;
            }
#undef FL_Q_ROW
        }
    }
#endif
}

/* ------------------------------------------------------------------ the dot paths */

/* One template for the blocks of the dot paths: MR rows x NP panels of accumulators, NP
 * independent chains per row, the loop bounds constants (so the accumulators stay in
 * registers). VEC / ZERO / LOADW / BCAST / DOT / PUT are the path's vector operations. */
#define FL_Q_DOT_BLOCK(NAME, TARGET, VEC, ZERO, LOADW, BCAST, DOT, PUT)                       \
TARGET FL_Q_INLINE void NAME(const int mr, const int np, ptrdiff_t groups, const void* xv,   \
                             ptrdiff_t ldx_bytes, const float* xs, const float* xz,         \
                             const void* pv,                                                \
                             ptrdiff_t panel_bytes, const float* ws, const int32_t* wsum,   \
                             float* out, ptrdiff_t ldo, ptrdiff_t n_rest, int accumulate)   \
{                                                                                           \
    const char* x = (const char*)xv;                                                        \
    const char* panels = (const char*)pv;                                                   \
    VEC s[FL_Q_MR][FL_Q_NP1];                                                               \
    for (int r = 0; r < mr; r++)                                                            \
        for (int p = 0; p < np; p++)                                                        \
            s[r][p] = ZERO;                                                                 \
    for (ptrdiff_t g = 0; g < groups; g++) {                                                \
        VEC w[FL_Q_NP1];                                                                    \
        for (int p = 0; p < np; p++)                                                        \
            w[p] = LOADW(panels + p * panel_bytes + g * 64);                                \
        for (int r = 0; r < mr; r++) {                                                      \
            int32_t word;                                                                   \
            memcpy(&word, x + r * ldx_bytes + 4 * g, 4);                                    \
            VEC xb = BCAST(word);                                                           \
            for (int p = 0; p < np; p++)                                                    \
                s[r][p] = DOT(s[r][p], xb, w[p]);                                           \
        }                                                                                   \
    }                                                                                       \
    for (int p = 0; p < np; p++) {                                                          \
        ptrdiff_t j0 = p * FL_QR, nj = n_rest - j0 < FL_QR ? n_rest - j0 : FL_QR;          \
        for (int r = 0; r < mr; r++)                                                        \
            PUT(s[r][p], xz ? (int32_t)xz[r] : 0, xs ? xs[r] : 0.0f, ws + (ws ? j0 : 0),    \
                wsum + (wsum ? j0 : 0), out + r * ldo + j0, nj, accumulate);                \
    }                                                                                       \
}

/* The driver of a dot path: blocks of MRMAX rows x NPMAX panels (one row: NP1MAX panels), the
 * edges with smaller constant shapes; the limits keep the block's accumulators, panel vectors
 * and broadcast in the build's vector registers. */
#define FL_Q_DOT_CASE(BLOCK, MR, NP)                                                        \
    case (MR) * 16 + (NP):                                                                  \
        BLOCK(MR, NP, groups, x + r0 * ldx_bytes, ldx_bytes, xs ? xs + r0 : NULL,            \
              xz ? xz + r0 : NULL, panels + p0 * panel_bytes, panel_bytes,                   \
              ws ? ws + j0 : NULL,                                                           \
              wsum ? wsum + j0 : NULL, out + r0 * ldo + j0, ldo, n - j0, accumulate);        \
        break;
#define FL_Q_DOT_DRIVER(NAME, TARGET, BLOCK, MRMAX, NPMAX, NP1MAX)                           \
TARGET static void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t groups, const void* xv,          \
                        ptrdiff_t ldx_bytes, const float* xs, const float* xz,               \
                        const void* pv,                                                      \
                        const float* ws, const int32_t* wsum, float* out, ptrdiff_t ldo,     \
                        int accumulate)                                                      \
{                                                                                           \
    const char* x = (const char*)xv;                                                        \
    const char* panels = (const char*)pv;                                                   \
    ptrdiff_t panel_bytes = groups * 64, n_panels = (n + FL_QR - 1) / FL_QR;                \
    ptrdiff_t step = m == 1 ? (NP1MAX) : (NPMAX);                                           \
    for (ptrdiff_t p0 = 0; p0 < n_panels; p0 += step) {                                     \
        int np = (int)(n_panels - p0 < step ? n_panels - p0 : step);                        \
        ptrdiff_t j0 = p0 * FL_QR;                                                          \
        for (ptrdiff_t r0 = 0; r0 < m; r0 += (MRMAX)) {                                     \
            int mr = (int)(m - r0 < (MRMAX) ? m - r0 : (MRMAX));                            \
            switch (mr * 16 + np) {                                                         \
            FL_Q_DOT_CASE(BLOCK, 1, 1) FL_Q_DOT_CASE(BLOCK, 1, 2)                           \
            FL_Q_DOT_CASE(BLOCK, 1, 3) FL_Q_DOT_CASE(BLOCK, 1, 4)                           \
            FL_Q_DOT_CASE(BLOCK, 1, 5) FL_Q_DOT_CASE(BLOCK, 1, 6)                           \
            FL_Q_DOT_CASE(BLOCK, 1, 7) FL_Q_DOT_CASE(BLOCK, 1, 8)                           \
            FL_Q_DOT_CASE(BLOCK, 2, 1) FL_Q_DOT_CASE(BLOCK, 2, 2)                           \
            FL_Q_DOT_CASE(BLOCK, 2, 3) FL_Q_DOT_CASE(BLOCK, 2, 4)                           \
            FL_Q_DOT_CASE(BLOCK, 3, 1) FL_Q_DOT_CASE(BLOCK, 3, 2)                           \
            FL_Q_DOT_CASE(BLOCK, 3, 3) FL_Q_DOT_CASE(BLOCK, 3, 4)                           \
            FL_Q_DOT_CASE(BLOCK, 4, 1) FL_Q_DOT_CASE(BLOCK, 4, 2)                           \
            FL_Q_DOT_CASE(BLOCK, 4, 3) FL_Q_DOT_CASE(BLOCK, 4, 4)                           \
            default: break;                                                                 \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}

#ifdef FL_Q_VNNI512
#define FL_T_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define FL_Q8_LOAD512(ptr) _mm512_loadu_si512((const void*)(ptr))
#define FL_Q8_BCAST512(word) _mm512_set1_epi32(word)
/* the activations arrive as x_q ^ 0x80 = x_q + 128 (unsigned), so (128 + zero) * sum_k W_q
 * comes off */
FL_T_VNNI FL_Q_INLINE void fl_q8_put512(__m512i s, int32_t off, float xs, const float* ws,
                                        const int32_t* wsum, float* out, ptrdiff_t nj,
                                        int accumulate)
{
    fl_v16i acc;
    memcpy(&acc, &s, 64);
    fl_q8_put(acc, off + 128, xs, ws, wsum, out, nj, accumulate);
}
/* acc += x . w in place. Written as assembly so that the accumulator stays in its register:
 * with the intrinsic GCC 12 copies every accumulator to another register and back around
 * each vpdpbusd (and spills some), which doubled the instructions of the inner loop. */
FL_T_VNNI FL_Q_INLINE __m512i fl_q8_dpbusd512(__m512i acc, __m512i x, __m512i w)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "vm"(w));
    return acc;
}
FL_Q_DOT_BLOCK(fl_q8_dot_block, FL_T_VNNI, __m512i, _mm512_setzero_si512(), FL_Q8_LOAD512,
               FL_Q8_BCAST512, fl_q8_dpbusd512, fl_q8_put512)
FL_Q_DOT_DRIVER(fl_q8_dot, FL_T_VNNI, fl_q8_dot_block, FL_Q_MR, FL_Q_NP, FL_Q_NP1)
#elif defined(FL_Q_AVXVNNI)
/* AVX_VNNI: 256-bit vpdpbusd; a panel's group is two vectors, so a "vector" here is a pair */
typedef struct { __m256i lo, hi; } fl_q_pair;
#define FL_T_VNNI __attribute__((target("avx2,avxvnni")))
FL_T_VNNI FL_Q_INLINE fl_q_pair fl_q8_zero_pair(void)
{
    fl_q_pair z = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    return z;
}
FL_T_VNNI FL_Q_INLINE fl_q_pair fl_q8_load_pair(const char* ptr)
{
    fl_q_pair v = {_mm256_loadu_si256((const __m256i*)ptr),
                   _mm256_loadu_si256((const __m256i*)(ptr + 32))};
    return v;
}
FL_T_VNNI FL_Q_INLINE fl_q_pair fl_q8_bcast_pair(int32_t word)
{
    fl_q_pair v = {_mm256_set1_epi32(word), _mm256_set1_epi32(word)};
    return v;
}
FL_T_VNNI FL_Q_INLINE fl_q_pair fl_q8_dot_pair(fl_q_pair s, fl_q_pair x, fl_q_pair w)
{
    /* in place, as fl_q8_dpbusd512 (the {vex} form: AVX_VNNI, not AVX512_VNNI) */
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(s.lo) : "x"(x.lo), "xm"(w.lo));
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(s.hi) : "x"(x.lo), "xm"(w.hi));
    return s;
}
FL_T_VNNI FL_Q_INLINE void fl_q8_put_pair(fl_q_pair s, int32_t off, float xs, const float* ws,
                                          const int32_t* wsum, float* out, ptrdiff_t nj,
                                          int accumulate)
{
    fl_v16i acc;
    memcpy(&acc, &s.lo, 32);
    memcpy((char*)&acc + 32, &s.hi, 32);
    fl_q8_put(acc, off + 128, xs, ws, wsum, out, nj, accumulate);
}
FL_Q_DOT_BLOCK(fl_q8_dot_block, FL_T_VNNI, fl_q_pair, fl_q8_zero_pair(), fl_q8_load_pair,
               fl_q8_bcast_pair, fl_q8_dot_pair, fl_q8_put_pair)
/* 16 ymm registers: 4 rows x 1 panel (8 accumulators, 2 panel vectors), one row x 3 panels */
FL_Q_DOT_DRIVER(fl_q8_dot, FL_T_VNNI, fl_q8_dot_block, 4, 1, 3)
#endif

/* out (m, n) (+)= dequantized x_q (m, 4 * groups) @ W_q^T for the n output columns held by the
 * panels from `panels` on (16 each; ws, wsum: their rows' scales and code sums from the first
 * one on, padded to whole panels). Row r of x_q at x + r * ldx, its scale xs[r] and zero
 * point xz[r]; out rows of stride ldo: float32(sum_k x_q W_q - xz[r] * wsum) * (xs[r] * ws).
 * dot: x_q arrives as x_q ^ 0x80 (fl_q8_quantize's flip) for vpdpbusd. */
static inline void fl_q8_product(ptrdiff_t m, ptrdiff_t n, ptrdiff_t groups, const int8_t* x,
                                 ptrdiff_t ldx, const float* xs, const float* xz,
                                 const int8_t* panels, const float* ws, const int32_t* wsum,
                                 float* out, ptrdiff_t ldo, int accumulate, int dot)
{
#if defined(FL_Q_VNNI512) || defined(FL_Q_AVXVNNI)
    if (dot) {
        fl_q8_dot(m, n, groups, x, ldx, xs, xz, panels, ws, wsum, out, ldo, accumulate);
        return;
    }
#endif
    (void)dot;
    fl_q8_plain(m, n, groups, x, ldx, xs, xz, panels, ws, wsum, out, ldo, accumulate);
}

/* ------------------------------------------------------------------ bfloat16 */


/* plain: mr rows of activations already widened to float32 (fl_bf16_round's widen) against
 * np panels; each weight widened by a shift (even k: the low half of a 32-bit lane, odd k:
 * the high half), then multiply-adds. Few rows take several panels at once, and with one
 * vector per panel row (AVX-512) even and odd k keep chains of their own, so that enough
 * independent multiply-add chains run (a chain waits for its last result). */
FL_Q_INLINE void fl_bf16_plain_block(const int mr, const int np, ptrdiff_t pairs,
                                     const float* x, ptrdiff_t ldx, const uint16_t* panels,
                                     ptrdiff_t panel_values, float* out, ptrdiff_t ldo,
                                     ptrdiff_t n_rest, int accumulate)
{
    const int split = FL_Q_NV == 1;
    fl_vf se[FL_Q_MR][FL_Q_NP][FL_Q_NV], so[FL_Q_MR][FL_Q_NP][FL_Q_NV];
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++)
            for (int v = 0; v < FL_Q_NV; v++)
                se[r][p][v] = so[r][p][v] = (fl_vf){0};
    for (ptrdiff_t g = 0; g < pairs; g++) {
        fl_vf we[FL_Q_NP][FL_Q_NV], wo[FL_Q_NP][FL_Q_NV];
        for (int p = 0; p < np; p++)
            for (int v = 0; v < FL_Q_NV; v++) {
                fl_vu w, lo, hi;
                memcpy(&w, panels + p * panel_values + g * 32 + v * (FL_Q_VB / 2), FL_Q_VB);
                lo = w << 16;
                hi = w & 0xFFFF0000u;
                memcpy(&we[p][v], &lo, FL_Q_VB);
                memcpy(&wo[p][v], &hi, FL_Q_VB);
            }
        for (int r = 0; r < mr; r++) {
            float xe = x[r * ldx + 2 * g], xo = x[r * ldx + 2 * g + 1];
            for (int p = 0; p < np; p++)
                for (int v = 0; v < FL_Q_NV; v++) {
                    se[r][p][v] = se[r][p][v] + xe * we[p][v];
                    if (split)
                        so[r][p][v] = so[r][p][v] + xo * wo[p][v];
                    else
                        se[r][p][v] = se[r][p][v] + xo * wo[p][v];
                }
        }
    }
    for (int p = 0; p < np; p++) {
        ptrdiff_t j0 = p * FL_QR, nj = n_rest - j0 < FL_QR ? n_rest - j0 : FL_QR;
        for (int r = 0; r < mr; r++) {
            fl_v16f sum;
            for (int v = 0; v < FL_Q_NV; v++) {
                fl_vf part = split ? se[r][p][v] + so[r][p][v] : se[r][p][v];
                memcpy((char*)&sum + v * FL_Q_VB, &part, FL_Q_VB);
            }
            fl_q_put(sum, out + r * ldo + j0, nj, accumulate);
        }
    }
}

#define FL_BF_PLAIN(MR, NP)                                                                 \
    fl_bf16_plain_block(MR, NP, pairs, x + r0 * ldx, ldx, panels + p0 * panel_values,       \
                        panel_values, out + r0 * ldo + p0 * FL_QR, ldo, n - p0 * FL_QR,    \
                        accumulate)

/* blocks of 4 rows x 1 panel; 1 to 3 rows take 4, 2 or 1 panels (x FL_Q_NV vectors) */
static void fl_bf16_plain(ptrdiff_t m, ptrdiff_t n, ptrdiff_t pairs, const float* x,
                          ptrdiff_t ldx, const uint16_t* panels, float* out, ptrdiff_t ldo,
                          int accumulate)
{
    ptrdiff_t panel_values = pairs * 32, n_panels = (n + FL_QR - 1) / FL_QR;
    ptrdiff_t r0 = 0, p0;
    for (; r0 + FL_Q_MR <= m; r0 += FL_Q_MR)
        for (p0 = 0; p0 < n_panels; p0++)
            FL_BF_PLAIN(FL_Q_MR, 1);
    int mr = (int)(m - r0);
    for (p0 = 0; p0 < n_panels && mr > 0;) {
        ptrdiff_t left = n_panels - p0;
        if (mr == 1 && left >= 4) {
            FL_BF_PLAIN(1, 4);
            p0 += 4;
        } else if (mr <= 2 && left >= 2) {
            if (mr == 1)
                FL_BF_PLAIN(1, 2);
            else
                FL_BF_PLAIN(2, 2);
            p0 += 2;
        } else {
            if (mr == 1)
                FL_BF_PLAIN(1, 1);
            else if (mr == 2)
                FL_BF_PLAIN(2, 1);
            else
                FL_BF_PLAIN(3, 1);
            p0 += 1;
        }
    }
}

#ifdef FL_Q_BF16DOT
#define FL_T_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define FL_BF_LOAD512(ptr) _mm512_loadu_ps((const void*)(ptr))
#define FL_BF_BCAST512(word) _mm512_castsi512_ps(_mm512_set1_epi32(word))
/* acc += x . w in place (assembly for the reason given at fl_q8_dpbusd512) */
FL_T_BF16 FL_Q_INLINE __m512 fl_bf16_dpbf16512(__m512 acc, __m512 x, __m512 w)
{
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(x), "vm"(w));
    return acc;
}
#define FL_BF_DOT512(s, x, w) fl_bf16_dpbf16512((s), (x), (w))
FL_T_BF16 FL_Q_INLINE void fl_bf16_put512(__m512 s, int32_t off, float xs, const float* ws,
                                          const int32_t* wsum, float* out, ptrdiff_t nj,
                                          int accumulate)
{
    (void)off; (void)xs; (void)ws; (void)wsum;
    fl_v16f v;
    memcpy(&v, &s, 64);
    fl_q_put(v, out, nj, accumulate);
}
FL_Q_DOT_BLOCK(fl_bf16_dot_block, FL_T_BF16, __m512, _mm512_setzero_ps(), FL_BF_LOAD512,
               FL_BF_BCAST512, FL_BF_DOT512, fl_bf16_put512)
FL_Q_DOT_DRIVER(fl_bf16_dot, FL_T_BF16, fl_bf16_dot_block, FL_Q_MR, FL_Q_NP, FL_Q_NP1)
#endif

/* out (m, n) (+)= x (m, 2 * pairs) @ W^T in bfloat16, sums in float32; panels as above. x:
 * fl_bf16_round's rows, ldx values apart: bit patterns (dot) or widened to float32 (plain). */
static inline void fl_bf16_product(ptrdiff_t m, ptrdiff_t n, ptrdiff_t pairs, const void* x,
                                   ptrdiff_t ldx, const uint16_t* panels, float* out,
                                   ptrdiff_t ldo, int accumulate, int dot)
{
#ifdef FL_Q_BF16DOT
    if (dot) {
        fl_bf16_dot(m, n, pairs, x, ldx * 2, NULL, NULL, panels, NULL, NULL, out, ldo,
                    accumulate);
        return;
    }
#endif
    (void)dot;
    fl_bf16_plain(m, n, pairs, (const float*)x, ldx, panels, out, ldo, accumulate);
}

#endif
