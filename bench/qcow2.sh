#!/usr/bin/env bash
# qcow2 decode benchmark (issue 4), side by side in one run, warm (the qcow2 file in the page
# cache before every timed run, the decoded output not):
#   glancefs disk.raw   dd bs=1M of the raw view of a dir: catalog holding the qcow2
#   qemu-img convert    -O raw into a file on tmpfs (/dev/shm): a node's usual step
#   qemu-storage-daemon --export type=fuse of the same qcow2 (driver=qcow2), dd bs=1M
# for a 1 GiB image: uncompressed random data, and compressible data (base64 text) compressed
# with zlib and with zstd.
# Usage: bench/qcow2.sh [BUILD_DIR]   (root). Prints a Markdown report.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN=$BUILD/tools/glancefs
CAT=$BUILD/tools/glancefs-catalog
GLANCEFS_BENCH_DEPS=1 ./scripts/install-deps.sh
[[ -x $BIN ]] || BUILD_DIR=$BUILD ./scripts/build.sh >/dev/null
RUNS=${RUNS:-3}
W=$(mktemp -d /var/tmp/glancefs-bench-XXXXXX)
QSD=""
cleanup() {
  grep -q " $W/mnt " /proc/self/mounts && fusermount3 -u "$W/mnt" 2>/dev/null || true
  if [[ -n $QSD ]]; then kill "$QSD" 2>/dev/null; wait "$QSD" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
secs() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
# best_of FILE_TO_WARM CMD...: the fastest of RUNS runs, page cache dropped and FILE warmed.
best_of() {
  local warm=$1 best="" t0 t1 t; shift
  for _ in $(seq "$RUNS"); do
    sync; echo 3 > /proc/sys/vm/drop_caches; cat "$warm" > /dev/null
    t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
    t=$(secs "$t0" "$t1")
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { if (a == "" || b < a) print b; else print a }')
  done
  echo "$best"
}
dd_read() { dd if="$1" of=/dev/null bs=1M status=none; }
convert_to_shm() {
  local out; out=$(mktemp /dev/shm/glancefs-bench-XXXXXX)
  qemu-img convert -f qcow2 -O raw "$1" "$out"
  rm -f "$out"
}

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/src.raw"
qemu-img convert -f raw -O qcow2 "$W/src.raw" "$W/plain.qcow2"
head -c $((SIZE * 3 / 4)) /dev/urandom | base64 -w 0 | head -c $SIZE > "$W/text.raw"
qemu-img convert -c -f raw -O qcow2 "$W/text.raw" "$W/zlib.qcow2"
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$W/text.raw" "$W/zstd.qcow2"
rm "$W/src.raw" "$W/text.raw"
mkdir -p "$W/catalog" "$W/mnt"
declare -A ID
for kind in plain zlib zstd; do
  ID[$kind]=$($CAT add "$W/catalog" "$W/$kind.qcow2" --name $kind --link)
done
$BIN "dir:$W/catalog" "$W/mnt" -o refresh=0

row() {  # row KIND
  local kind=$1 img=$W/$1.qcow2 g q c
  g=$(best_of "$img" dd_read "$W/mnt/images/${ID[$kind]}/disk.raw")
  c=$(best_of "$img" convert_to_shm "$img")
  touch "$W/qsd.raw"
  qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$img",aio=threads \
    --blockdev driver=qcow2,node-name=q,file=f \
    --export type=fuse,id=e,node-name=q,mountpoint="$W/qsd.raw" &
  QSD=$!
  for _ in $(seq 100); do grep -q " $W/qsd.raw " /proc/self/mounts && break; sleep 0.1; done
  q=$(best_of "$img" dd_read "$W/qsd.raw")
  cmp "$W/mnt/images/${ID[$kind]}/disk.raw" "$W/qsd.raw"
  kill "$QSD"; wait "$QSD" 2>/dev/null || true; QSD=""
  local mb="awk -v s=$SIZE -v t"
  printf '| %s | %.3f s, %.0f MB/s | %.3f s, %.0f MB/s | %.3f s, %.0f MB/s | %.2f× | %.2f× |\n' \
    "$kind" "$g" "$(awk -v t="$g" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$q" "$(awk -v t="$q" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$c" "$(awk -v t="$c" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$(awk -v a="$q" -v b="$g" 'BEGIN{print a/b}')" "$(awk -v a="$c" -v b="$g" 'BEGIN{print a/b}')"
}

cat <<REPORT
# glancefs qcow2 decode benchmark

- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
- glancefs $(git rev-parse --short HEAD 2>/dev/null || echo '?'), qemu $(qemu-img --version | head -1 | awk '{print $3}')
- 1 GiB virtual, 64 KiB clusters; plain: random data; zlib/zstd: base64 text compressed
  ($(du -m "$W/zlib.qcow2" | cut -f1) MiB and $(du -m "$W/zstd.qcow2" | cut -f1) MiB); best of $RUNS; qcow2 file warm in page cache

| image | glancefs disk.raw | qemu-storage-daemon FUSE | qemu-img convert | vs qsd | vs convert |
| --- | --- | --- | --- | --- | --- |
$(row plain)
$(row zlib)
$(row zstd)
REPORT
