#!/usr/bin/env bash
# Builds each decoder's libFuzzer target (tests/fuzz/<format>_fuzzer.cc) with clang, ASan and
# UBSan, and runs each for SECONDS (default 60), seeded with small images made by qemu-img in
# every subformat. Any crash, leak, timeout or UB report fails the script, and the reproducer is
# left in build-fuzz/<format>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
OUT=build-fuzz
CXX=${CXX_FUZZ:-clang++-14}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX is missing: run scripts/install-deps.sh" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "fuzz: qemu-img is missing: run scripts/install-deps.sh" >&2; exit 1; }

# Seeds: a small source with data, zeros and holes, converted by the oracle's own tool.
S=$OUT/seeds
mkdir -p "$S"
if [[ ! -e $S/.done ]]; then
  head -c 300K /dev/urandom > "$S/src.raw"; truncate -s 600K "$S/src.raw"
  q() { qemu-img convert -f raw "$@" "$S/src.raw" "$S/$(echo "$*" | tr ' =,/' '____').img"; }
  for opts in compat=0.10,cluster_size=512 compat=1.1,cluster_size=4096 \
              compat=1.1,cluster_size=16384,extended_l2=on \
              compat=1.1,cluster_size=16384,compression_type=zstd; do
    q -O qcow2 -o "$opts"; q -c -O qcow2 -o "$opts"
  done
  qemu-img create -q -u -f qcow2 -b /nonexistent/backing.raw -F raw "$S/backing.qcow2.img" 1M
  q -O vmdk -o subformat=monolithicSparse; q -O vmdk -o subformat=streamOptimized
  q -O vpc -o subformat=fixed; q -O vpc -o subformat=dynamic
  q -O vhdx -o subformat=dynamic,block_size=1M; q -O vhdx -o subformat=fixed
  q -O vdi; q -O vdi -o static=on; q -O parallels -o cluster_size=64k
  rm "$S/src.raw"
  touch "$S/.done"
fi

# The decoders and what they use are compiled once, on every core, and linked into each target:
# compiling them again for each of the seven targets, one file at a time, took most of this
# script's time. The targets are then built, and run, one per core at a time.
FLAGS=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -I.)
SOURCES=(fs/base/status.cc fs/base/log.cc fs/format/*.cc)
# spawn CMD...: runs CMD in the background, at most nproc at once; drain: waits for them all.
# A command that fails fails the script (set -e).
PIDS=()
spawn() {
  ((${#PIDS[@]} < $(nproc))) || { wait "${PIDS[0]}"; PIDS=("${PIDS[@]:1}"); }
  "$@" &
  PIDS+=($!)
}
drain() { local pid; for pid in "${PIDS[@]}"; do wait "$pid"; done; PIDS=(); }
rm -rf "$OUT/obj"; mkdir -p "$OUT/obj"
for src in "${SOURCES[@]}"; do
  spawn "$CXX" "${FLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$OUT/obj/${src//\//_}.o"
done
drain
OBJECTS=("$OUT"/obj/*.o)
NAMES=()
for target in tests/fuzz/*_fuzzer.cc; do
  name=$(basename "$target" _fuzzer.cc)
  NAMES+=("$name")
  mkdir -p "$OUT/$name/corpus"
  spawn "$CXX" "${FLAGS[@]}" -fsanitize=fuzzer "$target" "${OBJECTS[@]}" -lz -lzstd -o "$OUT/$name/fuzzer"
done
drain

run() { # NAME: one fuzzer for SECONDS_TO_RUN, its summary in $OUT/NAME/run.log
  local dir=$OUT/$1
  # Every seed goes to every fuzzer: the probe must turn other formats away cleanly too.
  cp -n "$S"/*.img "$dir/corpus/" 2>/dev/null || true
  ASAN_OPTIONS=detect_leaks=1 "$dir/fuzzer" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 \
    -max_len=1048576 -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" \
    2>&1 | grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|ERROR|SUMMARY|crash-|leak-|timeout-" \
    >"$dir/run.log" || true
}
echo "fuzz: running ${NAMES[*]} for ${SECONDS_TO_RUN} s each, $(nproc) at a time"
for name in "${NAMES[@]}"; do spawn run "$name"; done
drain
status=0
for name in "${NAMES[@]}"; do
  dir=$OUT/$name
  sed "s/^/fuzz: ${name}: /" "$dir/run.log"
  if ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* >/dev/null 2>&1; then
    echo "fuzz: ${name}: FAILED: reproducers in $dir/" >&2
    status=1
  fi
done
[[ $status == 0 ]] && echo "fuzz: no crash, leak, timeout or UB in any decoder (${SECONDS_TO_RUN} s each)"
exit $status
