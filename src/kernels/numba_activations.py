"""Gate activations for the Numba kernels: the twin of _activations.pxd (same algorithm, same
Cephes coefficients), so that LLVM vectorises the loops that call them.

exp(x) = p(r) * 2**n with n = round(x / ln 2), r = x - n ln 2; 2**n is made by moving n into
the exponent field (an LLVM bitcast, see `_pow2_from_magic`). sigmoid and tanh are built on exp.
Each function is an `overload`, typed per dtype, so float32 math stays in float32 (a plain
Python float constant would promote it to float64). Mirrors fastlstm.reference's
scipy.special.expit and np.tanh; NaN propagates and +-inf saturate.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# float32: exp(-87) is still a normal float, so clamp there; 1.5 * 2**23 rounds to integers
_F32 = dict(hi=88.0, lo=-87.0, magic=12582912.0, ln2_hi=0.693359375, ln2_lo=-2.12194440e-4,
            poly=(1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                  1.6666665459e-1, 5.0000001201e-1))
# float64: exp(-708) is still a normal double; 1.5 * 2**52 rounds to integers
_F64 = dict(hi=709.0, lo=-708.0, magic=6755399441055744.0, ln2_hi=6.93145751953125e-1,
            ln2_lo=1.42860682030941723212e-6,
            p=(1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1),
            q=(3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1,
               2.00000000000000000009e0))


# tanh near 0 (|x| < 0.625): Cephes' tanhf polynomial and tanh rational function
_TANH_F32 = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
             -3.33332819422e-1)
_TANH_F64 = dict(p=(-9.64399179425052238628e-1, -9.92877231001918586564e1,
                    -1.61468768441708447952e3),
                 q=(1.12811678491632931402e2, 2.23548839060100448583e3,
                    4.84406305325125486048e3))


@intrinsic
def _pow2_from_magic(typingctx, t):
    """2**n for the integer n held in the low mantissa bits of t = n + magic."""
    if t == types.float32:
        int_type, shift, bias = ir.IntType(32), 23, 127
    elif t == types.float64:
        int_type, shift, bias = ir.IntType(64), 52, 1023
    else:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], int_type)
        bits = builder.add(builder.shl(bits, ir.Constant(int_type, shift)),
                           ir.Constant(int_type, bias << shift))
        return builder.bitcast(bits, args[0].type)

    return t(t), codegen


def exp_(x):
    """exp(x), vectorisable; compiled per dtype inside Numba code only."""
    raise NotImplementedError("exp_ runs inside Numba-compiled code")


def sigmoid(x):
    """1 / (1 + exp(-x)); compiled per dtype inside Numba code only."""
    raise NotImplementedError("sigmoid runs inside Numba-compiled code")


def tanh_(x):
    """tanh(x), vectorisable; compiled per dtype inside Numba code only."""
    raise NotImplementedError("tanh_ runs inside Numba-compiled code")


@overload(exp_, inline="always")
def _exp_impl(x):
    if x == types.float32:
        f = np.float32
        hi, lo, magic = f(_F32["hi"]), f(_F32["lo"]), f(_F32["magic"])
        log2e, ln2_hi, ln2_lo = f(1.44269504088896341), f(_F32["ln2_hi"]), f(_F32["ln2_lo"])
        p0, p1, p2, p3, p4, p5 = (f(v) for v in _F32["poly"])
        one = f(1.0)

        def exp_f32(x):
            x = hi if x > hi else x  # selects, not min/max: NaN stays NaN
            x = lo if x < lo else x
            t = x * log2e + magic
            n = t - magic
            r = x - n * ln2_hi - n * ln2_lo
            p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
            p = p * r * r + r + one
            return p * _pow2_from_magic(t)

        return exp_f32
    if x == types.float64:
        hi, lo, magic = _F64["hi"], _F64["lo"], _F64["magic"]
        ln2_hi, ln2_lo = _F64["ln2_hi"], _F64["ln2_lo"]
        p0, p1, p2 = _F64["p"]
        q0, q1, q2, q3 = _F64["q"]

        def exp_f64(x):
            x = hi if x > hi else x
            x = lo if x < lo else x
            t = x * 1.4426950408889634073599 + magic
            n = t - magic
            r = x - n * ln2_hi - n * ln2_lo
            rr = r * r
            px = r * ((p0 * rr + p1) * rr + p2)
            qx = ((q0 * rr + q1) * rr + q2) * rr + q3
            return (1.0 + 2.0 * px / (qx - px)) * _pow2_from_magic(t)

        return exp_f64
    return None


@overload(sigmoid, inline="always")
def _sigmoid_impl(x):
    if isinstance(x, types.Float):
        one = np.float32(1.0) if x == types.float32 else 1.0

        def sigmoid_impl(x):
            return one / (one + exp_(-x))

        return sigmoid_impl
    return None


@overload(tanh_)
def _tanh_impl(x):
    """2 sigmoid(2x) - 1, or near 0, where that subtraction would cancel, Cephes' odd
    polynomial (float32) or rational function (float64); both computed, one selected."""
    if x == types.float32:
        f = np.float32
        one, two, minus_two, edge = f(1.0), f(2.0), f(-2.0), f(0.625)
        t0, t1, t2, t3, t4 = (f(v) for v in _TANH_F32)

        def tanh_f32(x):
            z = x * x
            near_zero = ((((t0 * z + t1) * z + t2) * z + t3) * z + t4) * z * x + x
            far = two / (one + exp_(minus_two * x)) - one
            return near_zero if abs(x) < edge else far

        return tanh_f32
    if x == types.float64:
        p0, p1, p2 = _TANH_F64["p"]
        q0, q1, q2 = _TANH_F64["q"]

        def tanh_f64(x):
            z = x * x
            near_zero = x + x * z * ((p0 * z + p1) * z + p2) / (((z + q0) * z + q1) * z + q2)
            far = 2.0 / (1.0 + exp_(-2.0 * x)) - 1.0
            return near_zero if abs(x) < 0.625 else far

        return tanh_f64
    return None


def one_minus(x):
    """1 - x in x's own float type; compiled per dtype inside Numba code only."""
    raise NotImplementedError("one_minus runs inside Numba-compiled code")


@overload(one_minus, inline="always")
def _one_minus_impl(x):
    if isinstance(x, types.Float):
        one = np.float32(1.0) if x == types.float32 else 1.0

        def one_minus_impl(x):
            return one - x

        return one_minus_impl
    return None
