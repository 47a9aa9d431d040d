# Gate activations for the Cython kernels, float32 and float64, written so that the C compiler
# vectorises the loops that call them: exp is a range reduction plus a polynomial (Cephes'
# coefficients), with no branch and no library call, accurate to a few units in the last
# place; sigmoid and tanh are built on it. Mirrors fastlstm.reference's scipy.special.expit
# and np.tanh; the Numba twin is numba_activations.py. NaN propagates; +-inf saturate.
from cython cimport floating

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* 2**n for the integer n held in the low mantissa bits of t = n + 1.5 * 2**23 (float)
       or t = n + 1.5 * 2**52 (double): shift n into the exponent field and add the bias. */
    static inline float fastlstm_pow2_from_magic_f(float t) {
        uint32_t bits; float out;
        memcpy(&bits, &t, sizeof bits);
        bits = (bits << 23) + (127u << 23);
        memcpy(&out, &bits, sizeof out);
        return out;
    }
    static inline double fastlstm_pow2_from_magic_d(double t) {
        uint64_t bits; double out;
        memcpy(&bits, &t, sizeof bits);
        bits = (bits << 52) + (1023ull << 52);
        memcpy(&out, &bits, sizeof out);
        return out;
    }
    """
    float pow2_from_magic_f "fastlstm_pow2_from_magic_f"(float t) noexcept nogil
    double pow2_from_magic_d "fastlstm_pow2_from_magic_d"(double t) noexcept nogil


cdef inline float exp_f(float x) noexcept nogil:
    """exp(x) in float32; x is clamped to [-87, 88] (exp(-87) is still a normal float).

    Every constant is cast to float so that the C compiler computes in float32 throughout.
    """
    cdef float t, n, r, p
    x = <float>88.0 if x > <float>88.0 else x  # selects, not fmin/fmax: NaN stays NaN
    x = <float>-87.0 if x < <float>-87.0 else x
    t = x * <float>1.44269504088896341 + <float>12582912.0   # round(x / ln 2) + 1.5 * 2**23
    n = t - <float>12582912.0
    r = x - n * <float>0.693359375 + n * <float>2.12194440e-4  # x - n ln 2, in two parts
    p = <float>1.9875691500e-4
    p = p * r + <float>1.3981999507e-3
    p = p * r + <float>8.3334519073e-3
    p = p * r + <float>4.1665795894e-2
    p = p * r + <float>1.6666665459e-1
    p = p * r + <float>5.0000001201e-1
    p = p * r * r + r + <float>1.0
    return p * pow2_from_magic_f(t)


cdef inline double exp_d(double x) noexcept nogil:
    """exp(x) in float64; x is clamped to [-708, 709] (exp(-708) is still a normal double)."""
    cdef double t, n, r, rr, px, qx
    x = 709.0 if x > 709.0 else x
    x = -708.0 if x < -708.0 else x
    t = x * 1.4426950408889634073599 + 6755399441055744.0   # round(x / ln 2) + 1.5 * 2**52
    n = t - 6755399441055744.0
    r = x - n * 6.93145751953125e-1 - n * 1.42860682030941723212e-6
    rr = r * r
    px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
              + 9.99999999999999999910e-1)
    qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
          + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0
    return (1.0 + 2.0 * px / (qx - px)) * pow2_from_magic_d(t)


cdef inline floating exp_(floating x) noexcept nogil:
    if floating is float:
        return exp_f(x)
    else:
        return exp_d(x)


cdef inline floating sigmoid(floating a) noexcept nogil:
    """1 / (1 + exp(-a))."""
    return <floating>1 / (<floating>1 + exp_(-a))


cdef inline float tanh_small_f(float a) noexcept nogil:
    """tanh(a) for |a| < 0.625, float32: an odd polynomial (Cephes' tanhf)."""
    cdef float z = a * a
    cdef float p = <float>-5.70498872745e-3
    p = p * z + <float>2.06390887954e-2
    p = p * z + <float>-5.37397155531e-2
    p = p * z + <float>1.33314422036e-1
    p = p * z + <float>-3.33332819422e-1
    return p * z * a + a


cdef inline double tanh_small_d(double a) noexcept nogil:
    """tanh(a) for |a| < 0.625, float64: a + a^3 P(a^2) / Q(a^2) (Cephes' tanh)."""
    cdef double z = a * a
    cdef double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z \
        - 1.61468768441708447952e3
    cdef double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z \
        + 4.84406305325125486048e3
    return a + a * z * p / q


cdef inline floating tanh_(floating a) noexcept nogil:
    """tanh(a): 2 sigmoid(2a) - 1, or near 0, where that subtraction would cancel, a
    polynomial. Both are computed and one is selected, so loops stay branch-free."""
    cdef floating near_zero, far
    if floating is float:
        near_zero = tanh_small_f(a)
    else:
        near_zero = tanh_small_d(a)
    far = <floating>2 / (<floating>1 + exp_(<floating>-2 * a)) - <floating>1
    return near_zero if (a < <floating>0.625 and a > <floating>-0.625) else far
