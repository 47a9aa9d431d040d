"""show_config, the backends that must be present (FASTLSTM_REQUIRE_BACKENDS: how CI catches a
missing compiled extension), OpenMP in the Cython build, and backend selection by
FASTLSTM_BACKEND."""
import os
import re

import numpy as np
import pytest

import fastlstm
from fastlstm import _backends, _isa
from fastlstm._backends import BACKEND_NAMES, unavailable_backends

from conftest import ALL_BACKENDS, assert_close, make_problem, require_backend


def test_show_config_prints(capsys):
    assert fastlstm.show_config() is None
    out = capsys.readouterr().out
    assert f"fastlstm: {fastlstm.__version__}" in out
    backends_line = re.search(r"^backends: (.*)$", out, re.M)
    assert backends_line, out
    for name in fastlstm.available_backends():
        assert repr(name) in backends_line.group(1)
    for name in unavailable_backends():
        assert f"backend {name} unavailable" in out


def test_show_config_dicts():
    info = fastlstm.show_config(mode="dicts")
    assert isinstance(info, dict)
    assert info["backends"] == list(fastlstm.available_backends())
    assert info["fastlstm"] == fastlstm.__version__
    assert info["numpy"] == np.__version__
    assert set(info["backends"]) | set(info["unavailable"]) == set(BACKEND_NAMES)
    assert not set(info["backends"]) & set(info["unavailable"])
    if "cython" in info["backends"]:
        assert isinstance(info["cython openmp"], bool)
        assert info["cython vector bytes"] in (16, 32, 64)
        assert info["cython isa"] in _isa.X86_LEVELS + (_isa.PORTABLE,)
        assert info["cython isa"] in info["cython isa cpu"]
        assert info["cython isa"] in info["cython isa built"]
        assert info["cython isa"] == _backends.get_backend("cython").level


@pytest.mark.parametrize("level", _isa.X86_LEVELS + (_isa.PORTABLE,))
def test_kernel_scratch_lengths(level):
    """Each level's scratch lengths (packed weights in whole panels plus 64 bytes to align
    them) grow with the problem, and nonsense sizes are refused. Panels are 8 to 64 columns
    wide depending on the level, so a comparison of two sizes uses sizes that differ by whole
    panels at every width."""
    if "cython" not in fastlstm.available_backends():
        pytest.skip("cython backend not built")
    if level not in _isa.cpu_levels() or level not in _isa.built_levels():
        pytest.skip(f"{level}: not run by this CPU or not built (CPU: "
                    f"{', '.join(_isa.cpu_levels())}; built: {', '.join(_isa.built_levels())})")
    _info = _isa.kernel_module("_info", level)

    for itemsize in (4, 8):
        panel = _info.panel_width(itemsize)
        vector = _info.vector_bytes()   # 4 vectors per panel with AVX-512's 32 registers, else 2
        assert panel * itemsize == (4 if vector == 64 else 2) * vector
        I, H = 5, 13
        padded = -(-4 * H // panel) * panel
        lstm = _info.forward_scratch_length(0, I, H, H, 0, itemsize)
        # w_ih^T and w_hh^T packed (plus room for a split w_hh), and 64 bytes to align
        assert lstm >= (I + H) * padded + 64 // itemsize
        assert _info.forward_scratch_length(0, I, 3, H, 3, itemsize) > _info.forward_scratch_length(
            0, I, 3, H, 0, itemsize)                                   # + w_hr^T packed
        # RNN: G = H. At H=13 both 4H=52 and H fit one 64-column panel, so they may tie; at
        # H = one panel, the LSTM's 4H columns take four panels and the RNN's H one.
        assert _info.forward_scratch_length(3, I, H, H, 0, itemsize) <= lstm
        assert _info.forward_scratch_length(3, I, panel, panel, 0, itemsize) < \
            _info.forward_scratch_length(0, I, panel, panel, 0, itemsize)
        one = _info.backward_scratch_length(0, 7, I, H, H, 0, itemsize, 1)
        assert _info.backward_scratch_length(0, 7, I, H, H, 0, itemsize, 2) > one
        assert _info.backward_scratch_length(0, 70, I, H, H, 0, itemsize, 1) > one
        assert _info.backward_scratch_length(2, 7, I, H, H, 0, itemsize, 1) > \
            _info.backward_scratch_length(1, 7, I, H, H, 0, itemsize, 1)  # + packed m = r * h
        with pytest.raises(ValueError, match="needs"):
            _info.forward_scratch_length(0, 0, H, H, 0, itemsize)
        with pytest.raises(ValueError, match="needs"):
            _info.forward_scratch_length(5, I, H, H, 0, itemsize)
        with pytest.raises(ValueError, match="needs"):
            _info.backward_scratch_length(0, 7, I, H, H, 0, itemsize, 0)


def test_show_config_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        fastlstm.show_config(mode="json")


def test_known_backends():
    """The suite parametrizes over every backend fastlstm knows; keep the two lists in sync."""
    assert tuple(BACKEND_NAMES) == ALL_BACKENDS
    available = fastlstm.available_backends()
    assert "numpy" in available  # the reference needs nothing compiled
    assert available == tuple(n for n in BACKEND_NAMES if n in available)  # fastest first


def _required_backends():
    raw = os.environ.get("FASTLSTM_REQUIRE_BACKENDS", "")
    return [n for n in re.split(r"[\s,]+", raw) if n]


def test_required_backends_are_available():
    """FASTLSTM_REQUIRE_BACKENDS="cython numba numpy" (space or comma separated) makes a missing
    backend a failure instead of a skip."""
    required = _required_backends()
    if not required:
        pytest.skip("FASTLSTM_REQUIRE_BACKENDS not set")
    unknown = [n for n in required if n not in BACKEND_NAMES]
    assert not unknown, f"FASTLSTM_REQUIRE_BACKENDS names unknown backends {unknown}"
    missing = {n: unavailable_backends().get(n, "?") for n in required
               if n not in fastlstm.available_backends()}
    assert not missing, f"required backends unavailable: {missing}"


def test_cython_built_with_openmp():
    require_backend("cython")
    if os.environ.get("FASTLSTM_ALLOW_NO_OPENMP"):
        pytest.skip("FASTLSTM_ALLOW_NO_OPENMP is set")
    _info = _isa.kernel_module("_info")

    assert _info.openmp_enabled(), (
        "the Cython kernels were built without OpenMP (set FASTLSTM_ALLOW_NO_OPENMP to accept)")
    assert _info.openmp_max_threads() >= 1


def _tape_backend(**kwargs):
    p = make_problem(3, 2, 3, 4, seed=80)
    _, _, tape = fastlstm.forward(*p.forward_args(), return_tape=True, **kwargs)
    return tape.backend


def test_auto_is_fastest_available():
    """conftest removes FASTLSTM_BACKEND: "auto" is then the first available backend."""
    assert "FASTLSTM_BACKEND" not in os.environ
    assert _tape_backend() == fastlstm.available_backends()[0]
    assert _tape_backend(backend="auto") == fastlstm.available_backends()[0]


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_env_var_selects_auto_backend(monkeypatch, name):
    require_backend(name)
    monkeypatch.setenv("FASTLSTM_BACKEND", name)
    assert _tape_backend() == name
    assert _tape_backend(backend="auto") == name
    assert fastlstm.show_config(mode="dicts")["default backend"] == name


def test_env_var_results_match_explicit_backend(monkeypatch, backend):
    p = make_problem(4, 3, 2, 5, seed=81)
    y_explicit, _ = fastlstm.forward(*p.forward_args(), backend=backend)
    monkeypatch.setenv("FASTLSTM_BACKEND", backend)
    y_env, _, tape = fastlstm.forward(*p.forward_args(), return_tape=True)
    assert tape.backend == backend
    assert_close(y_env, y_explicit, 0, "y")


def test_explicit_backend_overrides_env_var(monkeypatch):
    monkeypatch.setenv("FASTLSTM_BACKEND", fastlstm.available_backends()[0])
    assert _tape_backend(backend="numpy") == "numpy"


def test_env_var_whitespace_and_empty(monkeypatch):
    monkeypatch.setenv("FASTLSTM_BACKEND", "  numpy ")
    assert _tape_backend() == "numpy"
    monkeypatch.setenv("FASTLSTM_BACKEND", "")
    assert _tape_backend() == fastlstm.available_backends()[0]


def test_backward_runs_on_the_tape_backend(monkeypatch, backend):
    """backward follows the tape, not $FASTLSTM_BACKEND at the time of the backward call."""
    p = make_problem(4, 3, 2, 5, seed=82)
    _, _, tape = fastlstm.forward(*p.forward_args(), backend=backend, return_tape=True)
    g1 = fastlstm.backward(tape, p.dy)
    monkeypatch.setenv("FASTLSTM_BACKEND", "bogus")
    g2 = fastlstm.backward(tape, p.dy)
    assert_close(g2.w_hh, g1.w_hh, 0, "grad w_hh")
    assert tape.backend == backend
    assert repr(tape).startswith("<fastlstm.Tape T=4 B=3 I=2 H=5")


def test_mismatched_build_is_unavailable_not_a_crash(monkeypatch):
    """A compiled backend whose modules lack what this fastlstm expects (built from other
    sources) is reported unavailable, with the reason, instead of breaking every call."""
    from fastlstm import _backends

    class StaleBuild:
        def __init__(self):
            raise AttributeError("module 'fastlstm._kernels._info' has no attribute 'x'")

    monkeypatch.setattr(_backends, "_FACTORIES", {**_backends._FACTORIES, "cython": StaleBuild})
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_failures", {})
    assert "cython" not in _backends.available_backends()
    assert "numpy" in _backends.available_backends()
    assert _backends.unavailable_backends()["cython"].startswith("AttributeError")
    with pytest.raises(ValueError, match="unavailable backend 'cython'"):
        _backends.get_backend("cython")
