/* Subnormal numbers at full speed: the kernels' threads run their arithmetic with the CPU's
 * flush-to-zero and denormals-are-zero modes (x86: MXCSR's FTZ and DAZ bits; AArch64: FPCR's
 * FZ bit), set on entry and restored on exit by each thread, so that no caller's mode stays
 * changed. Without them, an operation that reads or produces a subnormal float takes a
 * microcode assist on Intel CPUs (10-100x its cost; a forward pass on subnormal data ran 60-125x
 * slower, bench/RESULTS.md). With them, subnormal inputs read as zero and subnormal results
 * become zero: values below 1.2e-38 (float32) or 2.2e-308 (float64), far below anything the
 * gates can tell apart, so results differ from PyTorch's only where those are involved, by at
 * most that much. */
#ifndef FASTLSTM_FPMODE_H
#define FASTLSTM_FPMODE_H

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
typedef unsigned long fl_fpmode;
#define FL_FTZ_DAZ 0x8040u   /* MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero) */
static inline fl_fpmode fl_flush_denormals(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | FL_FTZ_DAZ);
    return old;
}
static inline void fl_restore_fpmode(fl_fpmode old) { _mm_setcsr((unsigned)old); }
#elif defined(__aarch64__)
typedef unsigned long fl_fpmode;
static inline fl_fpmode fl_flush_denormals(void)
{
    unsigned long old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1ul << 24)));   /* FZ */
    return old;
}
static inline void fl_restore_fpmode(fl_fpmode old) { __asm__ __volatile__("msr fpcr, %0" : : "r"(old)); }
#else
typedef unsigned long fl_fpmode;   /* other CPUs: the default mode, left as it is */
static inline fl_fpmode fl_flush_denormals(void) { return 0; }
static inline void fl_restore_fpmode(fl_fpmode old) { (void)old; }
#endif

#endif
