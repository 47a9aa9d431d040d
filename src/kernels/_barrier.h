/* The step barrier of the Cython forward driver's column split (recurrent_forward.pyx): the
 * threads of one OpenMP team, each owning a slice of the hidden units, meet here after every
 * step so that the whole h_t is published before any of them starts step t + 1.
 *
 * A counter and a generation number, both atomics: each arriving thread adds one to the
 * counter; the last one resets it and bumps the generation (a release store), which the others
 * wait for (acquire loads). A waiting thread spins with the CPU's pause hint for a bounded
 * number of rounds (tens of microseconds), then yields its core at every round, so that on a
 * loaded machine a thread waiting for a descheduled partner lets that partner run. */
#ifndef FASTLSTM_BARRIER_H
#define FASTLSTM_BARRIER_H

#include <sched.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Pause-hint rounds before a waiting thread starts to yield (a pause is 10-150 cycles). */
#define FL_BARRIER_SPINS 4000

typedef struct {
    int arrived;            /* threads at the barrier in the current generation */
    unsigned generation;    /* bumped by the last thread to arrive */
} fl_barrier;

static inline void fl_barrier_init(fl_barrier* b)
{
    b->arrived = 0;
    b->generation = 0;
}

static inline void fl_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Wait until all n threads of the team have arrived. `seen` is the caller's own count of the
 * barriers it has passed (start at 0; every thread passes the same ones). */
static inline void fl_barrier_wait(fl_barrier* b, int n, unsigned* seen)
{
    unsigned next = *seen + 1;
    *seen = next;
    if (n <= 1)
        return;
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, next, __ATOMIC_RELEASE);
        return;
    }
    for (long spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) != next; spins++) {
        if (spins < FL_BARRIER_SPINS)
            fl_pause();
        else
            sched_yield();
    }
}

/* Threads in the current OpenMP team (1 outside a parallel region or without OpenMP). */
static inline int fl_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

#endif
