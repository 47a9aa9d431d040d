"""The builds of the Cython kernels per x86-64 level (setup.py) and the choice among them at run
time (fastlstm/_isa.py): CPUID + XGETBV against Linux's own view of the CPU, FASTLSTM_ISA and
its errors, show_config, and every level this CPU runs against the NumPy reference, in this
process (the levels' modules have names of their own, so they load side by side).

Levels this CPU cannot run are skipped, saying so; CI also runs the kernel tests once per level
with FASTLSTM_ISA (.ci/run).
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm import _backends, _isa

from family_helpers import VARIANTS, check_api_against_reference, make_family_problem

FULL = {name: True for level in _isa.X86_LEVELS for name in _isa.LEVEL_FEATURES[level]}
#: vector bytes of the matrix-product micro-kernel per level (src/kernels/_gemm.h)
VECTOR_BYTES = {"x86-64-v2": 16, "x86-64-v3": 32, "x86-64-v4": 64}


def usable(level):
    """Skip (saying why) unless this CPU runs `level` and it is built."""
    try:
        cpu, built = _isa.cpu_levels(), _isa.built_levels()
    except ImportError as exc:
        pytest.skip(f"the Cython kernels are not built: {exc}")
    if level not in cpu:
        pytest.skip(f"this CPU cannot run {level} (it runs {', '.join(cpu) or 'none'})")
    if level not in built:
        pytest.skip(f"{level} is not built (built: {', '.join(built) or 'none'})")


def without(*names):
    return {**FULL, **{name: False for name in names}}


def test_levels_of_features():
    assert _isa.levels_of(FULL) == _isa.X86_LEVELS
    assert _isa.levels_of(without("os_avx512")) == ("x86-64-v2", "x86-64-v3")   # OS: no ZMM
    assert _isa.levels_of(without("avx512bw")) == ("x86-64-v2", "x86-64-v3")
    assert _isa.levels_of(without("os_avx")) == ("x86-64-v2",)         # AVX state not enabled
    assert _isa.levels_of(without("fma")) == ("x86-64-v2",)
    # a level includes the ones below it: AVX-512 without SSE4.2 is no level at all
    assert _isa.levels_of(without("sse4_2")) == ()
    assert _isa.levels_of({}) == ()


def test_choose():
    cpu, built = ("x86-64-v2", "x86-64-v3"), _isa.X86_LEVELS
    assert _isa.choose("", cpu, built) == "x86-64-v3"                 # the best both have
    assert _isa.choose("", _isa.X86_LEVELS, ("x86-64-v2",)) == "x86-64-v2"
    assert _isa.choose("x86-64-v2", cpu, built) == "x86-64-v2"
    assert _isa.choose("portable", ("portable",), ("portable",)) == "portable"
    with pytest.raises(ValueError, match=r"FASTLSTM_ISA=x86-64-v4: this CPU cannot run x86-64-v4"
                                         r"; this CPU runs x86-64-v2, x86-64-v3"):
        _isa.choose("x86-64-v4", cpu, built)
    with pytest.raises(ValueError, match=r"FASTLSTM_ISA=avx2: unknown level 'avx2'; known: "
                                         r"x86-64-v2, x86-64-v3, x86-64-v4, portable"):
        _isa.choose("avx2", cpu, built)
    with pytest.raises(ValueError, match=r"FASTLSTM_ISA=x86-64-v3: x86-64-v3 was not built.*"
                                         r"usable here: x86-64-v2"):
        _isa.choose("x86-64-v3", cpu, ("x86-64-v2", "x86-64-v4"))
    with pytest.raises(ImportError, match="no build of the Cython kernels runs on this CPU"):
        _isa.choose("", ("x86-64-v2",), ("x86-64-v3",))


def _proc_cpuinfo_flags():
    if platform.system() != "Linux" or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("needs Linux's /proc/cpuinfo")
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    pytest.skip("/proc/cpuinfo has no flags line (not x86)")


def test_cpuid_agrees_with_linux():
    """Every feature bit read by CPUID is the flag Linux shows, and the levels (XGETBV
    included: Linux hides AVX / AVX-512 when the OS does not save their registers) agree."""
    usable(_isa.cpu_levels()[0])
    from fastlstm._kernels import _cpu

    features = _cpu.x86_features()
    if not features:
        pytest.skip(f"not an x86 CPU ({platform.machine()})")
    flags = _proc_cpuinfo_flags()
    for name, value in features.items():
        if name in ("osxsave", "os_avx", "os_avx512"):
            continue   # not in /proc/cpuinfo: the OS's part, from XGETBV
        assert value == (name in flags), f"CPUID says {name}={value}, /proc/cpuinfo disagrees"
    linux = {name: name in flags for name in features}
    linux.update(osxsave="xsave" in flags, os_avx="avx" in flags,
                 os_avx512="avx512f" in flags)
    assert _isa.levels_of(linux) == _isa.cpu_levels()


def test_every_level_is_built():
    """setup.py builds every x86-64 level (or the single portable variant off x86), unless a
    development build asked for fewer with FASTLSTM_BUILD_ISA."""
    usable(_isa.cpu_levels()[0])
    if os.environ.get("FASTLSTM_BUILD_ISA"):
        pytest.skip(f"FASTLSTM_BUILD_ISA={os.environ['FASTLSTM_BUILD_ISA']} asks for fewer")
    expected = _isa.X86_LEVELS if _isa.cpu_levels() != (_isa.PORTABLE,) else (_isa.PORTABLE,)
    assert _isa.built_levels() == expected


@pytest.mark.parametrize("level", _isa.X86_LEVELS)
def test_level_build_facts(level):
    """Each level's build has its own vector width and panel widths (4 vectors per panel with
    AVX-512's 32 registers, else 2) and the same OpenMP."""
    usable(level)
    info = _isa.kernel_module("_info", level)
    assert info.vector_bytes() == VECTOR_BYTES[level]
    for itemsize in (4, 8):
        assert info.panel_width(itemsize) * itemsize == (4 if level == "x86-64-v4" else 2) * \
            VECTOR_BYTES[level]
    assert info.openmp_enabled() == _isa.kernel_module("_info").openmp_enabled()


CASES = [  # variant, T, B, I, H: micro-kernel edges (B past its 6 rows, H past a panel)
    ("lstm", 5, 7, 37, 70), ("lstm_proj", 4, 3, 5, 9), ("lstm_peep", 3, 2, 4, 17),
    ("gru", 4, 7, 6, 33), ("gru_reset_before", 3, 2, 5, 8), ("rnn_relu", 4, 9, 3, 65),
]


@pytest.mark.parametrize("level", _isa.X86_LEVELS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_every_level_against_the_reference(monkeypatch, level, dtype):
    """Each level's kernels, through the public API (lengths with a 0, reverse), against the
    NumPy reference: forward, backward and inference."""
    usable(level)
    monkeypatch.setattr(_backends, "_loaded",
                        {**_backends._loaded, "cython": _backends.CythonBackend(level)})
    for k, (name, T, B, I, H) in enumerate(CASES):
        p = make_family_problem(VARIANTS[name], T, B, I, H, dtype=dtype, seed=k)
        lengths = tuple(int(n) for n in np.random.default_rng(k).integers(0, T + 1, B))
        check_api_against_reference(p, "cython", lengths, reverse=k % 2 == 1)


def test_bad_isa_is_a_clear_error(monkeypatch):
    """An unknown FASTLSTM_ISA fails the first kernel call with a ValueError naming the variable
    and this CPU's levels; importing fastlstm and the error itself crash nothing."""
    usable(_isa.cpu_levels()[0])
    monkeypatch.setenv("FASTLSTM_ISA", "x86-64-v9")
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_failures", {})
    x = np.zeros((2, 1, 3))
    w = np.zeros((8, 3)), np.zeros((8, 2))
    for call in (lambda: fastlstm.forward(x, *w), fastlstm.available_backends,
                 lambda: fastlstm.show_config(mode="dicts")):
        with pytest.raises(ValueError, match=r"FASTLSTM_ISA=x86-64-v9: unknown level .*"
                                             r"this CPU runs x86-64-v2"):
            call()


def test_level_the_cpu_lacks_is_a_clear_error(monkeypatch):
    cpu = _isa.cpu_levels()
    missing = [level for level in _isa.X86_LEVELS if level not in cpu]
    if not missing:
        pytest.skip(f"this CPU runs every level ({', '.join(cpu)}): nothing to refuse")
    monkeypatch.setenv("FASTLSTM_ISA", missing[-1])
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_failures", {})
    with pytest.raises(ValueError, match=f"FASTLSTM_ISA={missing[-1]}: this CPU cannot run"):
        fastlstm.forward(np.zeros((2, 1, 3)), np.zeros((8, 3)), np.zeros((8, 2)))


@pytest.mark.parametrize("level", _isa.X86_LEVELS)
def test_forced_level_in_a_fresh_process(level):
    """FASTLSTM_ISA in a new process: show_config reports the level (printed and as a dict),
    the backend runs its modules, and the result equals the NumPy backend's."""
    usable(level)
    code = (
        "import contextlib, io, numpy as np, fastlstm\n"
        "d = fastlstm.show_config(mode='dicts')\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    fastlstm.show_config()\n"
        "from fastlstm import _backends\n"
        "b = _backends.get_backend('cython')\n"
        "rng = np.random.default_rng(0)\n"
        "x, wi, wh = rng.random((6, 5, 4)), rng.random((12, 4)) - .5, rng.random((12, 3)) - .5\n"
        "y, _ = fastlstm.forward(x, wi, wh, backend='cython')\n"
        "r, _ = fastlstm.forward(x, wi, wh, backend='numpy')\n"
        "print(d['cython isa'], d['cython vector bytes'], b.level,\n"
        "      b.forward_module.__name__, float(abs(y - r).max()))\n"
        "print(out.getvalue())\n")
    env = {**os.environ, "FASTLSTM_ISA": level}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    first, printed = run.stdout.split("\n", 1)
    isa, vector, backend_level, module, err = first.split()
    assert (isa, int(vector), backend_level) == (level, VECTOR_BYTES[level], level)
    assert module == f"fastlstm._kernels.recurrent_forward_{_isa.suffix(level)}"
    assert float(err) < 1e-12
    assert f"cython isa: {level}\n" in printed
