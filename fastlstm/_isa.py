"""Which build of the Cython kernels runs here: the x86-64 level, chosen once per process.

setup.py compiles every kernel module once per level, as fastlstm._kernels.<name>_x86_64_v2,
_x86_64_v3 and _x86_64_v4 (or once, as <name>_portable, off x86). At the first kernel call the
highest level that this CPU and its OS support (CPUID plus XGETBV, src/kernels/_cpu.pyx) and
that was built is imported; FASTLSTM_ISA=x86-64-v2|x86-64-v3|x86-64-v4 forces one.

    cpu_levels()            levels this CPU runs, e.g. ("x86-64-v2", "x86-64-v3")
    built_levels()          levels whose kernels are installed
    choose(requested, cpu, built)  the level to use, or ValueError
    chosen_level()          choose() for $FASTLSTM_ISA and this machine
    kernel_module(name, level=None)  fastlstm._kernels.<name>_<level's suffix>
"""
import importlib
import importlib.util
import os

ENV_VAR = "FASTLSTM_ISA"
#: the x86-64 levels, lowest first
X86_LEVELS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")
#: the single variant built off x86
PORTABLE = "portable"
#: what each level needs beyond the one below it (x86-64 psABI; /proc/cpuinfo names, see _cpu)
LEVEL_FEATURES = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "osxsave",
                  "os_avx"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "os_avx512"),
}


def suffix(level):
    """The module-name suffix of a level: "x86-64-v3" -> "x86_64_v3"."""
    return level.replace("-", "_")


def levels_of(features):
    """The levels a CPU with `features` ({name: bool}, as _cpu.x86_features) runs, lowest first.

    Each level includes the ones below it, so the list stops at the first level it misses.
    """
    levels = []
    for level in X86_LEVELS:
        if not all(features.get(name, False) for name in LEVEL_FEATURES[level]):
            break
        levels.append(level)
    return tuple(levels)


def cpu_features():
    """{feature: bool} of this CPU and OS (_cpu.x86_features; {} off x86)."""
    return importlib.import_module("fastlstm._kernels._cpu").x86_features()


def cpu_levels():
    """The levels this CPU and OS run; (PORTABLE,) off x86."""
    features = cpu_features()
    return levels_of(features) if features else (PORTABLE,)


def built_levels():
    """The levels whose kernel modules are all installed, lowest first."""
    def built(level):
        return all(importlib.util.find_spec(f"fastlstm._kernels.{name}_{suffix(level)}")
                   is not None for name in ("recurrent_forward", "recurrent_backward",
                                            "recurrent_quantized", "_info"))

    return tuple(level for level in X86_LEVELS + (PORTABLE,) if built(level))


def choose(requested, cpu, built):
    """The level to use: `requested` ("" for automatic) if this CPU runs it and it is built,
    else the highest level in both `cpu` and `built`. ValueError names FASTLSTM_ISA and the
    levels at hand when `requested` is unknown, beyond this CPU, or not built."""
    usable = [level for level in built if level in cpu]
    if requested:
        known = X86_LEVELS + (PORTABLE,)
        if requested not in known:
            problem = f"unknown level {requested!r}; known: {', '.join(known)}"
        elif requested not in cpu:
            problem = f"this CPU cannot run {requested}"
        elif requested not in built:
            problem = f"{requested} was not built (setup.py's FASTLSTM_BUILD_ISA)"
        else:
            return requested
        raise ValueError(f"{ENV_VAR}={requested}: {problem}; this CPU runs "
                         f"{', '.join(cpu) or 'none of them'}, built: {', '.join(built) or 'none'}"
                         f"; usable here: {', '.join(usable) or 'none'}")
    if not usable:
        raise ImportError(f"no build of the Cython kernels runs on this CPU (it runs "
                          f"{', '.join(cpu) or 'none of the x86-64 levels'}; built: "
                          f"{', '.join(built) or 'none'})")
    return usable[-1]


def chosen_level():
    """The level the kernels of this process use: choose() for $FASTLSTM_ISA and this CPU.

    ImportError when the kernels are not built; ValueError for a bad $FASTLSTM_ISA.
    """
    built = built_levels()
    if not built:
        raise ImportError("the Cython kernels are not built (fastlstm._kernels.*_x86_64_v*)")
    return choose(os.environ.get(ENV_VAR, "").strip(), cpu_levels(), built)


def kernel_module(name, level=None):
    """The compiled module `name` ("recurrent_forward", "recurrent_backward", "_info") of
    `level` (default: chosen_level())."""
    return importlib.import_module(f"fastlstm._kernels.{name}_{suffix(level or chosen_level())}")
