"""Builds the Cython kernels in src/kernels as fastlstm._kernels.*, with OpenMP when the compiler has it."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["recurrent_forward", "recurrent_backward", "_info"]


def compiler_has_openmp():
    """True when the C compiler builds and links a program with -fopenmp."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        cmd = [cc, "-fopenmp", src, "-o", os.path.join(tmp, "omp")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


openmp = compiler_has_openmp()
if not openmp:
    msg = "fastlstm: the C compiler has no OpenMP; the Cython kernels are built single-threaded"
    warnings.warn(msg)
    print("*" * 78 + "\n" + msg + "\n" + "*" * 78, file=sys.stderr)



def compiler_accepts(flag):
    """True when the C compiler accepts `flag`."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "empty.c")
        with open(src, "w") as f:
            f.write("int main(void){return 0;}\n")
        cmd = [cc, flag, src, "-o", os.path.join(tmp, "empty")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


# The kernels' loops are written to be vectorised; FASTLSTM_MARCH picks the instruction set
# (default: this machine's, "-march=native"; set it to "" for a portable build).
march = os.environ.get("FASTLSTM_MARCH", "native")
arch_args = [f"-march={march}"] if march and compiler_accepts(f"-march={march}") else []
# Where the CPU has 512-bit vectors, use them in the gate loops (about 10% per step at H=64-128).
if arch_args and compiler_accepts("-mprefer-vector-width=512"):
    arch_args.append("-mprefer-vector-width=512")
# The pointwise loops read and write several rows at once; let GCC check more pairs of them
# for overlap at run time so that it still vectorises those loops (its default gives up at 10).
if compiler_accepts("--param=vect-max-version-for-alias-checks=64"):
    arch_args.append("--param=vect-max-version-for-alias-checks=64")
compile_args = (["-O3", "-fno-math-errno", "-fno-trapping-math"] + arch_args
                + (["-fopenmp"] if openmp else []))
link_args = ["-fopenmp"] if openmp else []

extensions = [
    Extension(
        f"fastlstm._kernels.{name}",
        [f"src/kernels/{name}.pyx"],
        include_dirs=[numpy.get_include(), os.path.join("src", "kernels")],  # _gemm.h
        depends=glob.glob(os.path.join("src", "kernels", "*.h")),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
]



def package_view_of_pxds():
    """A folder where src/kernels/*.pxd appear as fastlstm/_kernels/*.pxd.

    The kernels are installed as the package fastlstm._kernels but live in src/kernels, so
    Cython, which finds a cimported .pxd by its package path, gets this view on its include
    path; cross-module cimports then resolve to the installed names at run time too.
    """
    view = os.path.join("build", "cython_include")
    pkg = os.path.join(view, "fastlstm", "_kernels")
    shutil.rmtree(view, ignore_errors=True)
    os.makedirs(pkg)
    for folder in (os.path.join(view, "fastlstm"), pkg):
        open(os.path.join(folder, "__init__.pxd"), "w").close()
    for pxd in glob.glob(os.path.join("src", "kernels", "*.pxd")):
        shutil.copy(pxd, pkg)
    return view


setup(
    ext_modules=cythonize(
        extensions,
        include_path=[package_view_of_pxds()],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
