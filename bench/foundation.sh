#!/usr/bin/env bash
# Foundation benchmark (issue 2), side by side in one run:
#   1. sequential read of a 1 GiB raw image: glancefs (dir: catalog) vs qemu-storage-daemon's
#      FUSE export of the same file vs reading the file directly. Before each timed read the page
#      cache is dropped and the backing file re-read, so every contender reads its source from
#      memory and the FUSE path is what is measured. Then a second (hot) read through glancefs,
#      served by the kernel's page cache.
#   2. `ls -l` of a 10,000-image catalog, cold (first after mount) and warm.
# Usage: bench/foundation.sh [BUILD_DIR]   (root; installs fio/qemu-system-common if missing)
# Prints a Markdown report; keep it in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN=$BUILD/tools/glancefs
CAT=$BUILD/tools/glancefs-catalog
GLANCEFS_BENCH_DEPS=1 ./scripts/install-deps.sh
[[ -x $BIN ]] || BUILD_DIR=$BUILD ./scripts/build.sh >/dev/null
RUNS=${RUNS:-3}
W=$(mktemp -d /var/tmp/glancefs-bench-XXXXXX)
cleanup() {
  for m in "$W/mnt" "$W/mnt10k" "$W/qsd.raw"; do
    grep -q " $m " /proc/self/mounts && fusermount3 -u "$m" 2>/dev/null || true
  done
  if [[ -n ${QSD:-} ]]; then kill "$QSD" 2>/dev/null; wait "$QSD" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

mb_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
# Times reading $1 with 1 MiB requests, page cache dropped and $2 (the backing file) warmed.
timed_read() {
  local file=$1 warm=$2 t0 t1
  sync; echo 3 > /proc/sys/vm/drop_caches
  [[ -n $warm ]] && cat "$warm" > /dev/null
  t0=$(date +%s.%N)
  dd if="$file" of=/dev/null bs=1M status=none
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
best_of() {  # best_of N cmd... : the fastest of N runs (seconds)
  local n=$1 best=""; shift
  for _ in $(seq "$n"); do
    local t; t=$("$@")
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { if (a == "" || b < a) print b; else print a }')
  done
  echo "$best"
}

SIZE=$((1 << 30))
mkdir -p "$W/catalog" "$W/mnt"
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$($CAT add "$W/catalog" "$W/src.raw" --name bench --link)
DATA=$W/catalog/$ID
$BIN "dir:$W/catalog" "$W/mnt" -o refresh=0
touch "$W/qsd.raw"
qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$DATA",aio=threads \
  --export type=fuse,id=e,node-name=f,mountpoint="$W/qsd.raw" &
QSD=$!
for _ in $(seq 100); do grep -q " $W/qsd.raw " /proc/self/mounts && break; sleep 0.1; done

sync; echo 3 > /proc/sys/vm/drop_caches; cat "$DATA" > /dev/null
direct=$(best_of "$RUNS" bash -c "t0=\$(date +%s.%N); dd if='$DATA' of=/dev/null bs=1M status=none; t1=\$(date +%s.%N); awk -v a=\$t0 -v b=\$t1 'BEGIN{print b-a}'")
g=$(best_of "$RUNS" timed_read "$W/mnt/images/$ID/disk.raw" "$DATA")
q=$(best_of "$RUNS" timed_read "$W/qsd.raw" "$DATA")
cat "$W/mnt/images/$ID/disk.raw" > /dev/null
hot=$(best_of "$RUNS" bash -c "t0=\$(date +%s.%N); dd if='$W/mnt/images/$ID/disk.raw' of=/dev/null bs=1M status=none; t1=\$(date +%s.%N); awk -v a=\$t0 -v b=\$t1 'BEGIN{print b-a}'")
cmp "$W/mnt/images/$ID/disk.raw" "$DATA"

# 10,000 images.
mkdir -p "$W/cat10k" "$W/mnt10k"
for i in $(seq 0 9999); do
  id=$(printf '00000000-0000-4000-8000-%012d' "$i")
  printf x > "$W/cat10k/$id"
  printf '{"id": "%s", "name": "image-%d", "status": "active", "disk_format": "raw", "size": 1}' \
    "$id" "$i" > "$W/cat10k/$id.json"
done
$BIN "dir:$W/cat10k" "$W/mnt10k" -o refresh=0
t0=$(date +%s.%N); ls -l "$W/mnt10k/images" > /dev/null; t1=$(date +%s.%N)
ls_cold=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(date +%s.%N); ls -l "$W/mnt10k/images" > /dev/null; t1=$(date +%s.%N)
ls_warm=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

cat <<REPORT
# glancefs foundation benchmark

- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
- glancefs $(git rev-parse --short HEAD 2>/dev/null || echo '?'), libfuse $(pkg-config --modversion fuse3), qemu $(qemu-storage-daemon --version | head -1 | awk '{print $3}')
- best of $RUNS runs; 1 GiB of random data; dd bs=1M; backing file in page cache

| sequential read, 1 GiB raw | seconds | MB/s | vs qemu-storage-daemon |
| --- | --- | --- | --- |
| glancefs disk.raw | $g | $(mb_per_s $SIZE "$g") | $(awk -v a="$q" -v b="$g" 'BEGIN { printf "%.2f×", a / b }') |
| qemu-storage-daemon --export type=fuse | $q | $(mb_per_s $SIZE "$q") | 1.00× |
| the file itself (page cache, no FUSE) | $direct | $(mb_per_s $SIZE "$direct") | $(awk -v a="$q" -v b="$direct" 'BEGIN { printf "%.2f×", a / b }') |
| glancefs disk.raw, second read (page cache) | $hot | $(mb_per_s $SIZE "$hot") | $(awk -v a="$q" -v b="$hot" 'BEGIN { printf "%.2f×", a / b }') |

| ls -l of 10,000 images | seconds |
| --- | --- |
| first after mount | $ls_cold |
| again (kernel caches) | $ls_warm |
REPORT
