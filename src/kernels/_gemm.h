/* Matrix products for the Cython kernels: a register-blocked micro-kernel over packed panels.
 *
 *   pack:  B (k, n) -> panels of NR columns, panel p holding B[:, p*NR : (p+1)*NR] row after
 *          row (k rows of NR values, zeros past column n). The kernels pack each weight
 *          matrix once per call, before their time loop.
 *   gemm:  C (m, n) (+)= A (m, k) @ B (k, n), with B packed. A is read through two strides,
 *          so A^T is as cheap to pass as A.
 * The micro-kernel keeps an MR x NR block of C in vector registers while it runs over k: per
 * step of k it loads NV vectors of the panel, broadcasts MR values of A, and does MR * NV
 * fused multiply-adds, so the FMA units, not the loads, set the pace. Each element of C is
 * one running sum over k in order (no reordering of the sums).
 *
 * Written with GCC's vector extensions (also understood by Clang), so the same code becomes
 * AVX-512, AVX2 or SSE instructions as the -march of the build allows; the block shape
 * follows the number of vector registers. setup.py compiles it once per x86-64 level, so each
 * level's kernels get their own vector width, panel width and block: x86-64-v4 6 x 64 floats
 * (6 x 4 zmm), x86-64-v3 6 x 16 (6 x 2 ymm, tuned on AMD Zen 3), x86-64-v2 6 x 8 (6 x 2 xmm). This file defines the float32 (suffix _f) and
 * float64 (_d) versions from _gemm_impl.h; _gemm.pxd declares them to Cython.
 */
#ifndef FASTLSTM_GEMM_H
#define FASTLSTM_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#  define FL_VBYTES 64  /* zmm: 32 registers, so 6 x 4 accumulators fit */
#  define FL_NV 4
#elif defined(__AVX__)
#  define FL_VBYTES 32  /* ymm: 16 registers, 6 x 2 accumulators */
#  define FL_NV 2
#else
#  define FL_VBYTES 16  /* xmm (SSE2, NEON): 16 registers or more, 6 x 2 accumulators */
#  define FL_NV 2
#endif
#define FL_MR 6        /* rows of C per block */
#define FL_KC 384      /* steps of k per pass, so a panel's slice stays in L2 */

/* GCC's __builtin_shuffle takes the lane indices as a vector, which the tile transpose of
 * fl_pack builds in a loop; other compilers pack with plain loops. */
#if defined(__GNUC__) && !defined(__clang__)
#  define FL_HAVE_SHUFFLE 1
#endif

/* Keep a vector in a register. Without this, GCC folds the panel loads of a block of 3 to 5
 * rows into memory operands of its multiply-adds, loading each panel vector once per row; on
 * CPUs that do two vector loads per cycle (AMD Zen 3) the loads then set the pace: a 4-row
 * block ran at 2/3 of the rate of a 6-row one (scripts/microkernel_rate.c, M=4 against M=6).
 * fl_block applies it to those blocks only; the full and the 1-2 row blocks compile as before. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define FL_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#  define FL_IN_REGISTER(v) ((void)0)
#endif

#define FL_T float
#define FL_ITYPE int
#define FL_SUF f
#include "_gemm_impl.h"
#undef FL_T
#undef FL_ITYPE
#undef FL_SUF

#define FL_T double
#define FL_ITYPE long long
#define FL_SUF d
#include "_gemm_impl.h"
#undef FL_T
#undef FL_ITYPE
#undef FL_SUF

#endif
