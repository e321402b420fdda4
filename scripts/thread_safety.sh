#!/usr/bin/env bash
# Clang's thread-safety analysis over every lock glancefs takes.
#
#  1. Configures build-tsa with clang++-14 and -Wthread-safety -Wthread-safety-beta -Werror
#     and checks every source of the cache, the fs/ libraries, the backends and the tools
#     (-fsyntax-only, from compile_commands.json): any access to a GUARDED_BY member
#     without its mutex, a REQUIRES function called without it, or a lock taken against a
#     declared ACQUIRED_BEFORE order fails the build (fs/base/thread_annotations.h).
#  2. Compiles tests/tsa/missing_lock.cc, which breaks those rules on purpose, and expects the
#     compiler to refuse it with a thread-safety error on every line marked EXPECT-TSA.
#
# Builds take /tmp/glancefs-build.lock (GLANCEFS_BUILD_LOCK), as every build on a shared
# machine must. Exits 0 only if both hold.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX_TSA:-clang++-14}
BUILD_DIR=${BUILD_DIR:-build-tsa}
LOCK=${GLANCEFS_BUILD_LOCK:-/tmp/glancefs-build.lock}
FLAGS="-Wthread-safety -Wthread-safety-beta -Werror"
command -v "$CXX" >/dev/null || { echo "thread_safety: $CXX is missing" >&2; exit 1; }

# The analysis is part of clang's semantic checks, so every source of the build (the libraries
# and tools; no tests) is checked with -fsyntax-only, on every core: no code is generated.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_CXX_FLAGS="$FLAGS" -DBUILD_TESTING=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
COMMANDS=$(jq -r '.[] | "cd \(.directory) && \(.command | sub(" -o [^ ]+"; "") | sub(" -c "; " -fsyntax-only "))"' \
  "$BUILD_DIR/compile_commands.json")
n=$(grep -c . <<<"$COMMANDS")
((n >= 50)) || { echo "thread_safety: only $n sources in $BUILD_DIR/compile_commands.json" >&2; exit 1; }
flock "$LOCK" xargs -d '\n' -P "$(nproc)" -I{} bash -c {} <<<"$COMMANDS" ||
  { echo "thread_safety: the build is not clean with $FLAGS (errors above)" >&2; exit 1; }
echo "thread_safety: $n sources of cache, fs, backends and tools are clean with $FLAGS"

# The counter-example must fail, and fail for each marked reason.
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
if flock "$LOCK" "$CXX" -std=c++20 -fsyntax-only $FLAGS -I. tests/tsa/missing_lock.cc \
     >"$OUT" 2>&1; then
  echo "thread_safety: tests/tsa/missing_lock.cc compiled: the analysis is not checking" >&2
  exit 1
fi
status=0
while IFS= read -r line; do
  no=${line%%:*}
  want=${line#*EXPECT-TSA: }
  if ! grep -qF -- "$want" <(grep "missing_lock.cc:$no:.*error: .*\[-Werror,-Wthread-safety" "$OUT"); then
    echo "thread_safety: missing_lock.cc:$no: expected a thread-safety error: $want" >&2
    status=1
  fi
done < <(grep -n "EXPECT-TSA:" tests/tsa/missing_lock.cc | grep -v "^[0-9]*:// ")
if (( status )); then cat "$OUT" >&2; exit 1; fi
echo "thread_safety: tests/tsa/missing_lock.cc is refused as it must be:"
grep -o "missing_lock.cc:[0-9]*:[0-9]*: error: .*" "$OUT" | sed 's/^/  /'
