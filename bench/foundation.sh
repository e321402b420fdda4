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
source "$(dirname "$0")/lib.sh"
# Times reading $1 with 1 MiB requests, page cache dropped and $2 (the backing file) warmed.
timed_read() { best_of "$2" dd_read "$1"; }

SIZE=$((1 << 30))
mkdir -p "$W/catalog" "$W/mnt"
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$($CAT add "$W/catalog" "$W/src.raw" --name bench --link)
DATA=$W/catalog/$ID
$BIN "dir:$W/catalog" "$W/mnt" -o "refresh=0,cache_dir=$W/cache"
touch "$W/qsd.raw"
qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$DATA",aio=threads \
  --export type=fuse,id=e,node-name=f,mountpoint="$W/qsd.raw" &
CLEANUP_PIDS+=($!)
wait_mounted "$W/qsd.raw"

direct=$(timed_read "$DATA" "$DATA")
g=$(timed_read "$W/mnt/images/$ID/disk.raw" "$DATA")
q=$(timed_read "$W/qsd.raw" "$DATA")
# Hot: the view itself stays in the page cache (warmed, never dropped in between).
hot=$(RUNS=1 best_of "$W/mnt/images/$ID/disk.raw" dd_read "$W/mnt/images/$ID/disk.raw")
cmp "$W/mnt/images/$ID/disk.raw" "$DATA"

# 10,000 images.
mkdir -p "$W/cat10k" "$W/mnt10k"
for i in $(seq 0 9999); do
  id=$(printf '00000000-0000-4000-8000-%012d' "$i")
  printf x > "$W/cat10k/$id"
  printf '{"id": "%s", "name": "image-%d", "status": "active", "disk_format": "raw", "size": 1}' \
    "$id" "$i" > "$W/cat10k/$id.json"
done
$BIN "dir:$W/cat10k" "$W/mnt10k" -o "refresh=0,cache_dir=$W/cache10k"
t0=$(date +%s.%N); ls -l "$W/mnt10k/images" > /dev/null; t1=$(date +%s.%N)
ls_cold=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(date +%s.%N); ls -l "$W/mnt10k/images" > /dev/null; t1=$(date +%s.%N)
ls_warm=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

cat <<REPORT
# glancefs foundation benchmark

$(machine_lines)
- best of $RUNS runs; 1 GiB of random data; dd bs=1M; backing file in page cache

| sequential read, 1 GiB raw | seconds | MB/s | vs qemu-storage-daemon |
| --- | --- | --- | --- |
| glancefs disk.raw | $g | $(mb_per_s $SIZE "$g") | $(ratio "$q" "$g") |
| qemu-storage-daemon --export type=fuse | $q | $(mb_per_s $SIZE "$q") | 1.00× |
| the file itself (page cache, no FUSE) | $direct | $(mb_per_s $SIZE "$direct") | $(ratio "$q" "$direct") |
| glancefs disk.raw, second read (page cache) | $hot | $(mb_per_s $SIZE "$hot") | $(ratio "$q" "$hot") |

| ls -l of 10,000 images | seconds |
| --- | --- |
| first after mount | $ls_cold |
| again (kernel caches) | $ls_warm |
REPORT
