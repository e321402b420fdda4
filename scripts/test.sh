#!/usr/bin/env bash
# The README's second command: installs, builds and runs every test.
#   1. the optimized build: unit and integration tests (real FUSE mounts, qemu-img oracles);
#   2. the clang -Wthread-safety -Werror build: every lock checked by the compiler;
#   3. every decoder's libFuzzer target, for a bounded time;
#   4. an AddressSanitizer + UBSan build: the same tests again, glancefs included.
# Fails loudly when something is missing; never skips silently. Ends with each stage's time.
# Knobs: GLANCEFS_FUZZ_SECONDS (20), GLANCEFS_SKIP_SANITIZERS=1 (step 4 off, for a quick local run);
# GLANCEFS_TEST_TRACE=1 makes the integration tests print each shell command they run with its
# time, to find where a slow test spends it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same environment wherever it runs (a login shell, CI, cron): the system's tools on PATH,
# a HOME, and no terminal to read from.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
export HOME=${HOME:-/root}
exec </dev/null

# stage NAME: starts a stage. The stages' times are printed at the end, whatever the outcome, so
# that a CI log's tail says where the time went.
STAGE='' STAGE_T0=$SECONDS TIMES=()
stage() {
  [[ -z $STAGE ]] || TIMES+=("$(printf '%4d s  %s' $((SECONDS - STAGE_T0)) "$STAGE")")
  STAGE=$1 STAGE_T0=$SECONDS
  [[ -z $STAGE ]] || echo "== $STAGE"
}
report() {
  local status=$?
  stage ''
  echo "== stage times (exit $status):"
  printf '   %s\n' "${TIMES[@]}"
  printf '   %4d s  total\n' "$SECONDS"
}
trap report EXIT

stage "install dependencies"
./scripts/install-deps.sh

stage "build (RelWithDebInfo)"
BUILD_DIR=build ./scripts/build.sh
stage "tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j 2 --timeout 600

stage "clang -Wthread-safety -Werror: every lock in cache/, fs/, backends/ and tools/ checked by the compiler"
./scripts/thread_safety.sh

stage "fuzz every decoder (libFuzzer, ASan + UBSan, ${GLANCEFS_FUZZ_SECONDS:-20} s each)"
./scripts/fuzz.sh "${GLANCEFS_FUZZ_SECONDS:-20}"

if [[ "${GLANCEFS_SKIP_SANITIZERS:-0}" != 1 ]]; then
  stage "build (ASan + UBSan)"
  # -O1 and line tables only: what ASan's stack traces need, and a faster build than -O2 -g.
  BUILD_DIR=build-asan ./scripts/build.sh -DGLANCEFS_SANITIZE=address,undefined \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
  stage "tests (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
    ctest --test-dir build-asan --output-on-failure -j 2 --timeout 900
else
  echo "== sanitizer build skipped: GLANCEFS_SKIP_SANITIZERS=1"
fi
