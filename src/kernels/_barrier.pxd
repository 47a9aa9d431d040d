# The column split's step barrier (_barrier.h), for the Cython drivers (recurrent_forward.pyx,
# recurrent_backward.pyx, recurrent_quantized.pyx).
cdef extern from "_barrier.h" nogil:
    ctypedef struct fl_barrier:
        pass
    void fl_barrier_init(fl_barrier* b)
    void fl_barrier_wait(fl_barrier* b, int n, unsigned* seen)
    int fl_team_size()
