# Scalar gate activations shared by the Cython kernels, for float32 and float64.
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf


cdef inline floating sigmoid(floating a) noexcept nogil:
    """1 / (1 + exp(-a)); exp overflows to inf for very negative a, giving exactly 0."""
    if floating is float:
        return 1.0 / (1.0 + expf(-a))
    else:
        return 1.0 / (1.0 + exp(-a))


cdef inline floating tanh_(floating a) noexcept nogil:
    if floating is float:
        return tanhf(a)
    else:
        return tanh(a)
