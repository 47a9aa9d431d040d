#!/usr/bin/env bash
# Memory-safety run: build the Cython kernels with AddressSanitizer and UndefinedBehaviorSanitizer
# in a throwaway copy of the repository (the normal build is untouched), then run the tests that
# drive the compiled kernels (every test whose id names the cython backend, the robustness fuzz
# included) under the sanitizers. Prints "sanitizer errors: N" and exits non-zero when N > 0 or
# a test fails.
#
#   scripts/sanitize.sh                 # with the python3 on PATH (a venv with .[test] installed)
#   PYTHON=/path/to/venv/bin/python scripts/sanitize.sh
#   FASTLSTM_FUZZ_EXAMPLES=2000 scripts/sanitize.sh     # a longer fuzz under the sanitizers
#   FASTLSTM_SANITIZE_KEEP=1 scripts/sanitize.sh        # keep the build and the full log
#   FASTLSTM_SANITIZE_ISA=x86-64-v3 scripts/sanitize.sh # another level (default: the CPU's best)
#
# Needs gcc with libasan and libubsan, and Cython (installed into the throwaway copy when the
# Python has none). About 75 s on a 2-core machine: 45 s to build, 25 s to test.
# What it checks: every load and store of the kernels' own C code (ASan: out-of-bounds on the
# heap and stack, use after free; UBSan: overflow, shifts, misaligned or null pointers, bad
# casts). PYTHONMALLOC=malloc puts Python's own objects (e.g. the memoryviews the kernels take)
# on ASan's heap too. Not instrumented: BLAS (SciPy's OpenBLAS), NumPy, Numba's kernels.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
cc=${CC:-gcc}
fuzz_examples=${FASTLSTM_FUZZ_EXAMPLES:-500}
start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/fastlstm-sanitize.XXXXXX")
if [[ -z "${FASTLSTM_SANITIZE_KEEP:-}" ]]; then
  trap 'rm -rf "$work"' EXIT
fi
src="$work/src"
log="$work/tests.log"
mkdir -p "$src"

# 1. A copy of the source tree: tracked and untracked files that git does not ignore (so no
#    compiled kernels come along), or the whole tree without build products outside git.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' f; do
      if [[ -e "$repo/$f" ]]; then (cd "$repo" && cp --parents "$f" "$src/"); fi
    done
else
  cp -a "$repo/." "$src/"
  rm -rf "$src"/build "$src"/src/kernels/*.so "$src"/src/kernels/*.c
fi

# 2. Cython, for the build (pip builds the normal install in an isolated environment, so the
#    Python running the tests may have none); installed into the throwaway copy only.
buildpath=""
if ! "$python" -c "import Cython" 2>/dev/null; then
  "$python" -m pip install -q --target "$work/buildtools" "Cython>=3.0"
  buildpath="$work/buildtools"
fi

# 3. The level to check: FASTLSTM_SANITIZE_ISA, else the highest x86-64 level this CPU runs
#    (asked of the fastlstm that $python imports; "portable" off x86). Only that level is
#    built, and the tests below run it (FASTLSTM_ISA), so the run covers what it built.
level=${FASTLSTM_SANITIZE_ISA:-$(cd /tmp && "$python" -c \
  "from fastlstm import _isa; print(_isa.cpu_levels()[-1])" 2>/dev/null || true)}
if [[ -z "$level" ]]; then
  echo "sanitize: cannot tell this CPU's level (is fastlstm installed for $python?);" \
       "set FASTLSTM_SANITIZE_ISA"; exit 2
fi
suffix=${level//-/_}

# 4. Build that level's kernels in place with the sanitizers (setup.py's -O3 and the level's
#    -march stay).
san="-fsanitize=address,undefined -fsanitize-recover=address,undefined"
echo "building the Cython kernels for $level with $san ..."
build_isa=$level
if [[ $level == portable ]]; then build_isa=""; fi
(cd "$src" && CC="$cc" CFLAGS="$san -fno-omit-frame-pointer -g" LDFLAGS="$san" \
  FASTLSTM_BUILD_ISA="$build_isa" PYTHONPATH="$buildpath" \
  "$python" setup.py -q build_ext --inplace >"$work/build.log" 2>&1) || {
  tail -n 40 "$work/build.log"; echo "sanitize: build failed"; exit 2; }
# The package imports its kernels as fastlstm._kernels (src/kernels in an installed tree).
ln -s ../src/kernels "$src/fastlstm/_kernels"
for so in "$src/src/kernels/recurrent_forward_$suffix"*.so \
          "$src/src/kernels/recurrent_backward_$suffix"*.so; do
  [[ -e $so ]] || { echo "sanitize: no $so was built"; exit 2; }
  nm -D "$so" | grep __asan_report >/dev/null || { echo "sanitize: $so is not instrumented"; exit 2; }
done
export FASTLSTM_ISA=$level

libasan=$("$cc" -print-file-name=libasan.so)
# Reports go to files ($reports/asan.PID, $reports/ubsan.PID), not to stderr: pytest captures
# stderr and shows it only for failing tests, so a report from a passing test (halt_on_error=0
# lets the run go on) or from a process that dies would be lost there.
# detect_leaks=0: CPython does not free everything at exit, and those are not ours.
reports="$work/reports"
mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:print_summary=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$reports/ubsan"
run() {
  (cd "$src" && LD_PRELOAD="$libasan" PYTHONMALLOC=malloc PYTHONPATH="$src" "$python" "$@")
}
count() {  # count PATTERN: occurrences in every report file
  cat "$reports"/* 2>/dev/null | grep -c "$1" || true
}

# 5. Positive control: a heap overflow in an instrumented library loaded by this Python must be
#    reported in the same way, or a clean run below would prove nothing.
cat >"$work/overflow.c" <<'C'
#include <stdlib.h>
int overflow(int n) { volatile int *a = malloc(n * sizeof(int)); a[n] = 1; int r = a[0]; free((void *)a); return r; }
C
"$cc" -shared -fPIC $san -g "$work/overflow.c" -o "$work/overflow.so"
run -c "import ctypes; ctypes.CDLL('$work/overflow.so').overflow(4)"
if [[ $(count "ERROR: AddressSanitizer: heap-buffer-overflow") != 1 ]]; then
  echo "sanitize: the positive control was not reported: ASan does not work with $python"
  exit 2
fi
rm -f "$reports"/*

# 6. The kernels under the sanitizers: check that the instrumented build of the level is the
#    one imported.
run -c "
import fastlstm
from fastlstm import _backends
b = _backends.get_backend('cython')
for k in (b.forward_module, b.info):
    assert k.__file__.startswith('$src'), k.__file__
assert b.level == '$level' == fastlstm.show_config(mode='dicts')['cython isa'], b.level
print('kernels:', b.forward_module.__file__, '(' + b.level + ')')"

echo "running the cython-backend tests of $level under ASan + UBSan (FASTLSTM_FUZZ_EXAMPLES=$fuzz_examples) ..."
set +e
FASTLSTM_FUZZ_EXAMPLES="$fuzz_examples" run -m pytest -q -p no:cacheprovider -k cython \
  tests/test_backends.py tests/test_shapes_layouts.py tests/test_contracts.py \
  tests/test_errors.py tests/test_robustness_fuzz.py tests/test_robustness_numeric.py \
  tests/test_robustness_threads.py tests/test_family_backends.py tests/test_column_split.py \
  tests/test_denormals.py tests/test_packed_weights.py tests/test_streams.py \
  tests/test_quantized.py tests/test_forward_plan.py tests/test_functional_packs.py \
  tests/test_loop_order.py tests/test_moved_rows.py tests/test_microkernel.py \
  tests/test_row_blocks.py >"$log" 2>&1
status=$?
set -e

asan=$(count "ERROR: AddressSanitizer")
ubsan=$(count "runtime error:")
grep -E "^[0-9]+ (passed|failed)|^(FAILED|ERROR) " "$log" || tail -n 20 "$log"
cat "$reports"/* 2>/dev/null | grep -E -A 12 "ERROR: AddressSanitizer|runtime error:" |
  head -n 60 || true
echo "sanitizer errors: $((asan + ubsan)) (ASan $asan, UBSan $ubsan) at $level; pytest exit status $status;" \
     "$(( $(date +%s) - start )) s"
if [[ -n "${FASTLSTM_SANITIZE_KEEP:-}" ]]; then
  echo "build, test log and sanitizer reports kept in $work"
fi
if (( asan + ubsan > 0 || status != 0 )); then
  exit 1
fi
