#!/usr/bin/env bash
# Builds the qcow2 decoder's libFuzzer target with clang (ASan + UBSan) and runs it for
# SECONDS (default 60), seeded with small images made by qemu-img. Any crash, leak or UB
# report fails the script, and the reproducer is left in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
OUT=build-fuzz
mkdir -p "$OUT/corpus" "$OUT/seeds"
CXX=${CXX_FUZZ:-clang++-14}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX is missing: run scripts/install-deps.sh" >&2; exit 1; }

"$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. tests/fuzz/qcow2_fuzzer.cc fs/base/status.cc fs/base/log.cc fs/format/probe.cc \
  fs/format/qcow2_reader.cc fs/format/inspect.cc -lz -lzstd -o "$OUT/qcow2_fuzzer"

# Seeds: small images with every feature, from the oracle's own tool.
S=$OUT/seeds
if [[ ! -e $S/.done ]]; then
  head -c 300K /dev/urandom > "$S/src.raw"; truncate -s 600K "$S/src.raw"
  for opts in compat=0.10,cluster_size=512 compat=1.1,cluster_size=4096 \
              compat=1.1,cluster_size=16384,extended_l2=on \
              compat=1.1,cluster_size=16384,compression_type=zstd; do
    qemu-img convert -f raw -O qcow2 -o "$opts" "$S/src.raw" "$S/$opts.qcow2"
    qemu-img convert -c -f raw -O qcow2 -o "$opts" "$S/src.raw" "$S/$opts.c.qcow2"
    qemu-io -f qcow2 -c 'write -z 0 8k' -c 'write -P 7 100k 3k' "$S/$opts.qcow2" >/dev/null
  done
  qemu-img create -q -u -f qcow2 -b /nonexistent/backing.raw -F raw "$S/backing.qcow2" 1M
  rm "$S/src.raw"
  cp "$S"/*.qcow2 "$OUT/corpus/"
  touch "$S/.done"
fi
echo "fuzz: running qcow2_fuzzer for ${SECONDS_TO_RUN} s"
ASAN_OPTIONS=detect_leaks=1 "$OUT/qcow2_fuzzer" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 \
  -max_len=1048576 -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/" "$OUT/corpus" \
  2>&1 | grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|ERROR|SUMMARY|crash-|leak-|timeout-" || true
if ls "$OUT"/crash-* "$OUT"/leak-* "$OUT"/timeout-* "$OUT"/oom-* >/dev/null 2>&1; then
  echo "fuzz: FAILED: reproducers in $OUT/" >&2
  exit 1
fi
echo "fuzz: no crash, leak, timeout or UB in ${SECONDS_TO_RUN} s"
