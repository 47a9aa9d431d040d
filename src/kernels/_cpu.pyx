"""What this CPU and its OS can run: the CPUID feature bits and the XGETBV register state that
fastlstm/_isa.py turns into x86-64 levels. Built once, for the platform's baseline (no -march),
so that it runs on every CPU before a level is chosen.

x86_features() -> {name: bool}, names as Linux's /proc/cpuinfo spells them ("pni" is SSE3,
"abm" is LZCNT), plus "os_avx" (XCR0 has the SSE and AVX state) and "os_avx512" (XCR0 also has
the opmask and both halves of the ZMM state). Empty on other architectures (32-bit x86
included: setup.py builds the portable variant there).
"""

cdef extern from *:
    """
    #if defined(__x86_64__)  /* 32-bit x86 builds the portable variant, as setup.py does */
    #include <cpuid.h>
    #define FL_X86 1
    /* regs[0..3] = eax, ebx, ecx, edx of CPUID(leaf, subleaf); 0 when the leaf is absent */
    static int fl_cpuid(unsigned int leaf, unsigned int subleaf, unsigned int *regs) {
        unsigned int top = __get_cpuid_max(leaf & 0x80000000u, 0);
        regs[0] = regs[1] = regs[2] = regs[3] = 0;
        if (top < leaf) return 0;
        __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
        return 1;
    }
    /* XCR0: the register state the OS saves on a context switch (call only with OSXSAVE) */
    static unsigned long long fl_xgetbv0(void) {
        unsigned int lo, hi;
        __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
        return ((unsigned long long)hi << 32) | lo;
    }
    #else
    #define FL_X86 0
    static int fl_cpuid(unsigned int leaf, unsigned int subleaf, unsigned int *regs) {
        regs[0] = regs[1] = regs[2] = regs[3] = 0; return 0;
    }
    static unsigned long long fl_xgetbv0(void) { return 0; }
    #endif
    """
    int FL_X86
    int fl_cpuid(unsigned int leaf, unsigned int subleaf, unsigned int *regs)
    unsigned long long fl_xgetbv0()

# (leaf, register index: 1 ebx, 2 ecx, 3 edx, bit) of each feature a level needs
_BITS = {
    "pni": (1, 2, 0), "ssse3": (1, 2, 9), "fma": (1, 2, 12), "cx16": (1, 2, 13),
    "sse4_1": (1, 2, 19), "sse4_2": (1, 2, 20), "movbe": (1, 2, 22), "popcnt": (1, 2, 23),
    "xsave": (1, 2, 26), "osxsave": (1, 2, 27), "avx": (1, 2, 28), "f16c": (1, 2, 29),
    "bmi1": (7, 1, 3), "avx2": (7, 1, 5), "bmi2": (7, 1, 8), "avx512f": (7, 1, 16),
    "avx512dq": (7, 1, 17), "avx512cd": (7, 1, 28), "avx512bw": (7, 1, 30),
    "avx512vl": (7, 1, 31), "avx512_vnni": (7, 2, 11),
    "avx_vnni": ("7.1", 0, 4), "avx512_bf16": ("7.1", 0, 5),
    "lahf_lm": (0x80000001, 2, 0), "abm": (0x80000001, 2, 5),
}
_XCR0_AVX = 0x6        # SSE (bit 1) and AVX (bit 2) state
_XCR0_AVX512 = 0xE0    # opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7)


def x86_features():
    """{feature: bool} from CPUID and XGETBV; {} where the CPU is not x86."""
    cdef unsigned int regs[4]
    cdef unsigned long long xcr0 = 0
    if not FL_X86:
        return {}
    leaves = {}
    for leaf, sub, key in ((1, 0, 1), (7, 0, 7), (7, 1, "7.1"), (0x80000001, 0, 0x80000001)):
        fl_cpuid(leaf, sub, regs)
        leaves[key] = (regs[0], regs[1], regs[2], regs[3])
    features = {name: bool((leaves[leaf][reg] >> bit) & 1)
                for name, (leaf, reg, bit) in _BITS.items()}
    if features["osxsave"]:
        xcr0 = fl_xgetbv0()
    features["os_avx"] = (xcr0 & _XCR0_AVX) == _XCR0_AVX
    features["os_avx512"] = features["os_avx"] and (xcr0 & _XCR0_AVX512) == _XCR0_AVX512
    return features
