/* The rate of the Cython kernels' matrix-product micro-kernel (src/kernels/_gemm.h) on one core,
 * for tuning it and for the figures quoted in bench/RESULTS.md.
 *
 *   gcc -O3 -march=native -mprefer-vector-width=512 -Isrc/kernels \
 *       scripts/microkernel_rate.c -o /tmp/microkernel_rate
 *   /tmp/microkernel_rate M N K [alternate]
 *
 * Times C (M, N) += A (M, K) @ B (K, N) in float32 with B packed once, as a kernel's time loop
 * calls it at every step with the same weights, and prints the best of 5 rounds in us and
 * GFLOP/s, and the largest error against a float64 product. With "alternate", every other call
 * visits the panels last to first, as the recurrent products do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_gemm.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char** argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s M N K [alternate]\n", argv[0]);
        return 2;
    }
    long m = atol(argv[1]), n = atol(argv[2]), k = atol(argv[3]);
    int alternate = argc > 4 && strcmp(argv[4], "alternate") == 0;
    if (m < 1 || n < 1 || k < 1) {
        fprintf(stderr, "M, N and K must be >= 1\n");
        return 2;
    }
    float* a = aligned_alloc(64, (m * k * sizeof(float) + 63) / 64 * 64);
    float* b = aligned_alloc(64, (k * n * sizeof(float) + 63) / 64 * 64);
    float* packed = aligned_alloc(64, (fl_packed_length_f(k, n) * sizeof(float) + 63) / 64 * 64);
    float* c = aligned_alloc(64, (m * n * sizeof(float) + 63) / 64 * 64);
    for (long i = 0; i < m * k; i++) a[i] = (float)((i * 7 % 13) - 6) / 8;
    for (long i = 0; i < k * n; i++) b[i] = (float)((i * 5 % 11) - 5) / 8;
    fl_pack_f(k, n, b, n, 1, packed, k * fl_panel_width_f());

    fl_gemm_f(m, n, k, a, k, 1, packed, c, n, 0);
    double err = 0;
    for (long r = 0; r < m; r++)
        for (long j = 0; j < n; j++) {
            double want = 0;
            for (long q = 0; q < k; q++) want += (double)a[r * k + q] * b[q * n + j];
            double e = want - c[r * n + j];
            if (e < 0) e = -e;
            if (e > err) err = e;
        }

    long calls = (long)(2e9 / (2.0 * m * n * k)) + 1;
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        double t0 = seconds();
        for (long i = 0; i < calls; i++) {
            if (alternate && (i & 1))
                fl_gemm_backwards_f(m, n, k, a, k, packed, c, n, 1);
            else
                fl_gemm_f(m, n, k, a, k, 1, packed, c, n, 1);
        }
        double t = (seconds() - t0) / calls;
        if (t < best) best = t;
    }
    printf("M=%ld N=%ld K=%ld%s: %.2f us, %.1f GFLOP/s (one core, float32, %d-byte vectors), "
           "max error %.1e\n", m, n, k, alternate ? " alternate" : "", best * 1e6,
           2.0 * m * n * k / best / 1e9, FL_VBYTES, err);
    free(a); free(b); free(packed); free(c);
    return 0;
}
