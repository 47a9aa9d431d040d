"""fastlstm.show_config(): versions, backends, the kernels' instruction-set level, OpenMP, BLAS
and threads."""
import importlib
import os
import platform
import sys

from . import _isa
from ._backends import ENV_VAR, available_backends, unavailable_backends
from ._threads import default_threads
from ._version import __version__


def _version(module_name):
    try:
        return importlib.import_module(module_name).__version__
    except ImportError:
        return "not installed"


def config():
    """The facts show_config prints, as a dict."""
    from threadpoolctl import threadpool_info

    info = {
        "fastlstm": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "numba": _version("numba"),
        "backends": list(available_backends()),
        "unavailable": unavailable_backends(),
        "default backend": os.environ.get(ENV_VAR) or (available_backends() or ("none",))[0],
        "cpu count": os.cpu_count(),
        "default threads": default_threads(),
    }
    try:
        level = _isa.chosen_level()   # a bad $FASTLSTM_ISA raises its ValueError here too
        build = _isa.kernel_module("_info", level)
        info["cython isa"] = level
        info["cython isa cpu"] = list(_isa.cpu_levels())
        info["cython isa built"] = list(_isa.built_levels())
        info["cython openmp"] = build.openmp_enabled()
        info["cython openmp max threads"] = build.openmp_max_threads()
        info["cython vector bytes"] = build.vector_bytes()
        # which products m.quantize(...) runs: the dot-product instructions, or the plain path
        from ._backends import CythonBackend

        info["cython reduced precision dot products"] = CythonBackend(level).dot_products()
    except ImportError:
        info["cython isa"] = None
        info["cython openmp"] = None
    if "numba" in info["backends"]:
        import numba

        info["numba threading layer threads"] = numba.config.NUMBA_NUM_THREADS
    info["thread pools"] = [
        {k: pool.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "filepath")}
        for pool in threadpool_info()
    ]
    return info


def show_config(mode="stdout"):
    """Print fastlstm's configuration (mode="stdout") or return it as a dict (mode="dicts")."""
    info = config()
    if mode == "dicts":
        return info
    if mode != "stdout":
        raise ValueError(f"mode: expected 'stdout' or 'dicts', got {mode!r}")
    for key, value in info.items():
        if key == "thread pools":
            print("thread pools:")
            for pool in value:
                print(f"  - {pool['internal_api']} {pool['version']} ({pool['user_api']}), "
                      f"{pool['num_threads']} threads: {pool['filepath']}")
        elif key == "cython isa" and value is None:
            print("cython isa: extension not built")
        elif key == "cython openmp" and value is None:
            continue
        elif key in ("cython isa cpu", "cython isa built"):
            print(f"{key}: {', '.join(value) or 'none'}")
        elif key == "unavailable":
            for name, why in value.items():
                print(f"backend {name} unavailable: {why}")
        else:
            print(f"{key}: {value}")
