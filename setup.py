"""Builds the Cython kernels in src/kernels as fastlstm._kernels.*, once per x86-64 level.

On x86-64 every kernel module is compiled three times, as fastlstm._kernels.<name>_x86_64_v2,
_x86_64_v3 and _x86_64_v4 (SSE4.2; AVX2 + FMA; AVX-512 F/BW/DQ/VL), and fastlstm/_isa.py picks
one at run time from CPUID (FASTLSTM_ISA forces one). Elsewhere one portable variant is built,
fastlstm._kernels.<name>_portable, with -march=$FASTLSTM_MARCH when that is set.
fastlstm._kernels._cpu (the CPUID probe) is built once, for the baseline of the platform.

Build-time settings (environment):
    FASTLSTM_BUILD_ISA  levels to build, e.g. "x86-64-v4" or "x86-64-v2,x86-64-v3" (default:
                        all three; a development or sanitizer build can take just one)
    FASTLSTM_MARCH      the portable variant's -march (non-x86 only; e.g. "native")
    FASTLSTM_BUILD_JOBS parallel compilers (default: the CPUs this process may use)
"""
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

#: the kernel modules built once per level
KERNELS = ["recurrent_forward", "recurrent_backward", "recurrent_quantized", "_info"]
#: x86-64 levels: GCC's -march name, the flags for a compiler that lacks that name, and the
#: level's own tuning (AVX-512: 512-bit vectors in the gate loops, about 10% per step at
#: H=64-128; GCC's generic tuning prefers 256-bit ones)
X86_LEVELS = {
    "x86-64-v2": (["-msse4.2", "-mpopcnt", "-mssse3", "-mcx16", "-msahf"], []),
    "x86-64-v3": (["-msse4.2", "-mpopcnt", "-mssse3", "-mcx16", "-msahf", "-mavx2", "-mfma",
                   "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe", "-mxsave"], []),
    "x86-64-v4": (["-msse4.2", "-mpopcnt", "-mssse3", "-mcx16", "-msahf", "-mavx2", "-mfma",
                   "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe", "-mxsave", "-mavx512f",
                   "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512cd"],
                  ["-mprefer-vector-width=512"]),
}
CC = os.environ.get("CC", "cc")


def compiler_accepts(*flags, source="int main(void){return 0;}\n"):
    """True when the C compiler builds and links `source` with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = [CC, *flags, src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def is_x86_64():
    return platform.machine().lower() in ("x86_64", "amd64", "x86-64")


def level_flags(level):
    """The compiler flags of one x86-64 level (GCC >= 11 and clang >= 12 know its -march name)."""
    fallback, tuning = X86_LEVELS[level]
    arch = [f"-march={level}"] if compiler_accepts(f"-march={level}") else fallback
    return arch + [flag for flag in tuning if compiler_accepts(flag)]


def variants():
    """{module suffix: level flags}: the variants of the kernels this build compiles."""
    if not is_x86_64():
        march = os.environ.get("FASTLSTM_MARCH", "")
        flags = [f"-march={march}"] if march and compiler_accepts(f"-march={march}") else []
        return {"portable": flags}
    wanted = os.environ.get("FASTLSTM_BUILD_ISA", "").replace(",", " ").split()
    wanted = wanted or list(X86_LEVELS)
    unknown = [level for level in wanted if level not in X86_LEVELS]
    if unknown:
        sys.exit(f"FASTLSTM_BUILD_ISA: unknown level(s) {', '.join(unknown)}; "
                 f"expected some of {', '.join(X86_LEVELS)}")
    if os.environ.get("FASTLSTM_MARCH"):
        warnings.warn("FASTLSTM_MARCH is ignored on x86-64: the kernels are built per level "
                      "(FASTLSTM_BUILD_ISA picks which)")
    return {level.replace("-", "_"): level_flags(level) for level in wanted}


openmp = compiler_accepts(
    "-fopenmp", source="#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
if not openmp:
    msg = "fastlstm: the C compiler has no OpenMP; the Cython kernels are built single-threaded"
    warnings.warn(msg)
    print("*" * 78 + "\n" + msg + "\n" + "*" * 78, file=sys.stderr)

# The pointwise loops read and write several rows at once; let GCC check more pairs of them
# for overlap at run time so that it still vectorises those loops (its default gives up at 10).
common_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
if compiler_accepts("--param=vect-max-version-for-alias-checks=64"):
    common_args.append("--param=vect-max-version-for-alias-checks=64")
omp_args = ["-fopenmp"] if openmp else []
include_dirs = [numpy.get_include(), os.path.join("src", "kernels")]   # _gemm.h
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]


def level_sources(suffix):
    """Copies of the kernels' .pyx named for one variant (build/kernel_sources/<name>_<suffix>.pyx).

    Cython names a module after its file, so each variant gets a file of its own; the copies
    cimport the shared .pxd files of fastlstm._kernels, as the originals do.
    """
    folder = os.path.join("build", "kernel_sources")
    os.makedirs(folder, exist_ok=True)
    # Cython's dependency scan cannot follow the copies' relative cimports (they do not sit in
    # their package), so a changed .pxd (or included .pxi) would not rebuild them: the copies
    # carry a digest of every .pxd and .pxi, and so change, and are rebuilt, whenever one does.
    digest = hashlib.sha256()
    for pxd in sorted(glob.glob(os.path.join("src", "kernels", "*.pxd"))
                      + glob.glob(os.path.join("src", "kernels", "*.pxi"))):
        with open(pxd, "rb") as f:
            digest.update(f.read())
    paths = {}
    for name in KERNELS:
        src = os.path.join("src", "kernels", f"{name}.pyx")
        dst = os.path.join(folder, f"{name}_{suffix}.pyx")
        with open(src) as f:
            text = f.read()
        header = (f"# generated by setup.py from {src} for the {suffix} build; edit the original\n"
                  f"# .pxd digest {digest.hexdigest()[:16]}\n")
        if not os.path.exists(dst) or open(dst).read() != header + text:
            with open(dst, "w") as f:   # rewritten only when changed, so Cython can skip it
                f.write(header + text)
        paths[name] = dst
    return paths


def kernel_extensions():
    exts = []
    for suffix, flags in variants().items():
        for name, path in level_sources(suffix).items():
            exts.append(Extension(
                f"fastlstm._kernels.{name}_{suffix}", [path],
                include_dirs=include_dirs,
                depends=glob.glob(os.path.join("src", "kernels", "*.h")),
                extra_compile_args=common_args + flags + omp_args,
                extra_link_args=omp_args,
                define_macros=macros,
            ))
    # the CPUID probe runs before any level is chosen: the platform's baseline, no OpenMP
    exts.append(Extension("fastlstm._kernels._cpu", [os.path.join("src", "kernels", "_cpu.pyx")],
                          extra_compile_args=["-O2"], define_macros=macros))
    return exts


def package_view_of_pxds():
    """A folder where src/kernels/*.pxd (and *.pxi) appear as fastlstm/_kernels/*.pxd.

    The kernels are installed as the package fastlstm._kernels but live in src/kernels, so
    Cython, which finds a cimported .pxd by its package path, gets this view on its include
    path; cross-module cimports then resolve to the installed names at run time too.
    """
    view = os.path.join("build", "cython_include")
    pkg = os.path.join(view, "fastlstm", "_kernels")
    os.makedirs(pkg, exist_ok=True)
    for folder in (os.path.join(view, "fastlstm"), pkg):
        open(os.path.join(folder, "__init__.pxd"), "a").close()
    for pxd in (glob.glob(os.path.join("src", "kernels", "*.pxd"))
                + glob.glob(os.path.join("src", "kernels", "*.pxi"))):
        dst = os.path.join(pkg, os.path.basename(pxd))
        if not os.path.exists(dst) or open(dst).read() != open(pxd).read():
            shutil.copy2(pxd, dst)   # unchanged files keep their times: no needless re-Cython
    return view


def build_jobs():
    """FASTLSTM_BUILD_JOBS, else the CPUs this process may run on."""
    if os.environ.get("FASTLSTM_BUILD_JOBS"):
        return max(1, int(os.environ["FASTLSTM_BUILD_JOBS"]))
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


jobs = build_jobs()
setup(
    ext_modules=cythonize(
        kernel_extensions(),
        include_path=[package_view_of_pxds()],
        nthreads=jobs if jobs > 1 else 0,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    # the variants' C files compile side by side (about half the build time on two cores)
    options={"build_ext": {"parallel": jobs}},
)
