#!/usr/bin/env bash
# The block cache (issue 5) over a real Glance on loopback (tests/fixtures/glance, file store,
# WORKERS glance-api workers, default 2), side by side in one run:
#   curl -o /dev/null of /v2/images/<id>/file          one stream, Glance's best case
#   glancefs disk.raw cold   rm cache/<id>, page cache dropped: parallel ranged GETs
#   the same two with Glance's image file kept in the page cache: on one VM Glance's store
#     reads and glancefs's cache writes share one virtual disk, which a compute node does not
#   glancefs disk.raw warm   a fresh mount (empty memory tier), page cache dropped: the data files
#   glancefs disk.raw hot    the second read: the kernel's page cache
#   qemu-storage-daemon --export type=fuse of the same qcow2 on local disk, page cache dropped
#   qemu-img convert -O raw of the local qcow2 into /dev/shm
#   fio randread 4 KiB and 64 KiB, O_DIRECT, qd1 and qd16, on the warm raw view and the qsd export
#   pre-fetch of 8 images at once (touch queue/) against curl of the same 8 one after another
# Usage: bench/cache.sh [BUILD_DIR]   (root). Prints a Markdown report.
source "$(dirname "$0")/lib.sh"
start_glance

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/src.raw"
qemu-img convert -f raw -O qcow2 "$W/src.raw" "$W/src.qcow2"
RAW=$(glance_upload "$W/src.raw" bench-raw raw)
QCOW=$(glance_upload "$W/src.qcow2" bench-qcow2 qcow2)
PF_SIZE=$((128 << 20))
PF=()
for i in $(seq 8); do
  head -c $PF_SIZE /dev/urandom > "$W/pf$i.raw"
  PF+=("$(glance_upload "$W/pf$i.raw" "bench-pf$i" raw)")
  rm "$W/pf$i.raw"
done

M=$W/mnt
mkdir -p "$M"
OPTS="refresh=0,cache_dir=$W/cache"
mount_glancefs() { $BIN "$GLANCE_URL" "$M" -o "$OPTS"; }
remount() { fusermount3 -u "$M"; mount_glancefs; }
mount_glancefs

curl_get() { curl -sS --fail -o /dev/null "$GLANCE_URL/v2/images/$1/file"; }
c=$(best_of "" curl_get "$RAW")
cold_read() { rm -f "$M/cache/$1"; dd_read "$M/images/$1/disk.raw"; }
g_cold=$(BEST_PRE="wait_verified $M $RAW" best_of "" cold_read "$RAW")
GLANCE_FILE=$W/glance/images/$RAW
[[ -f $GLANCE_FILE ]] || { echo "no Glance store file $GLANCE_FILE" >&2; exit 1; }
c_gc=$(best_of "$GLANCE_FILE" curl_get "$RAW")
g_cold_gc=$(BEST_PRE="wait_verified $M $RAW" best_of "$GLANCE_FILE" cold_read "$RAW")
cmp "$M/images/$RAW/disk.raw" "$W/src.raw"
g_hot=$(RUNS=1 best_of "$M/images/$RAW/disk.raw" dd_read "$M/images/$RAW/disk.raw")
wait_verified "$M" "$RAW"
g_warm_raw=$(BEST_PRE=remount best_of "" dd_read "$M/images/$RAW/disk.raw")

# Warm: the qcow2 image in the cache's data files; a fresh mount each run, so neither the memory tier nor the
# page cache holds it.
dd_read "$M/images/$QCOW/disk.raw"
wait_verified "$M" "$QCOW"
g_warm=$(BEST_PRE=remount best_of "" dd_read "$M/images/$QCOW/disk.raw")
convert_to_shm() {
  local out; out=$(mktemp /dev/shm/glancefs-bench-XXXXXX)
  qemu-img convert -f qcow2 -O raw "$1" "$out"
  rm -f "$out"
}
conv=$(best_of "" convert_to_shm "$W/src.qcow2")
touch "$W/qsd.raw"
qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$W/src.qcow2",aio=threads \
  --blockdev driver=qcow2,node-name=q,file=f \
  --export type=fuse,id=e,node-name=q,mountpoint="$W/qsd.raw" &
CLEANUP_PIDS+=($!)
wait_mounted "$W/qsd.raw"
qsd=$(best_of "" dd_read "$W/qsd.raw")
cmp "$W/qsd.raw" "$M/images/$QCOW/disk.raw"

fio_iops() {  # fio_iops FILE BLOCK_SIZE DEPTH
  fio --name=r --filename="$1" --rw=randread --bs="$2" --direct=1 --ioengine=libaio \
    --iodepth="$3" --runtime=10 --time_based --output-format=json 2>/dev/null |
    python3 -c 'import json, sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
remount
sync; echo 3 > /proc/sys/vm/drop_caches
FIO_ROWS=""
for bs in 4k 64k; do
  for depth in 1 16; do
    f=$(fio_iops "$M/images/$QCOW/disk.raw" $bs $depth)
    q=$(fio_iops "$W/qsd.raw" $bs $depth)
    FIO_ROWS+="| $bs, iodepth $depth | $f IOPS | $q IOPS | $(awk -v a="$f" -v b="$q" 'BEGIN { printf "%.2f×", a / b }') |"$'\n'
  done
done

# Pre-fetch 8 images at once, against curl of the same 8 one after another.
curl_all() { for id in "${PF[@]}"; do curl_get "$id"; done; }
c8=$(best_of "" curl_all)
prefetch_all() {
  for id in "${PF[@]}"; do rm -f "$M/cache/$id"; done
  for id in "${PF[@]}"; do touch "$M/queue/$id"; done
  while [[ -n $(ls "$M/queue") ]]; do sleep 0.05; done
}
fusermount3 -u "$M"
OPTS="$OPTS,prefetch_workers=8"
mount_glancefs
p8=$(best_of "" prefetch_all)
states=$(for id in "${PF[@]}"; do getfattr --absolute-names --only-values -n user.glancefs.state "$M/cache/$id"; echo; done | sort | uniq -c | xargs)
PF_TOTAL=$((8 * PF_SIZE))

cat <<REPORT
# glancefs block cache over a real Glance

$(machine_lines)
- Glance $(dpkg-query -W -f='${Version}' glance-api) (noauth fixture, file store, ${WORKERS:-2} workers) on 127.0.0.1; best of $RUNS; 1 GiB of random data
- glancefs defaults: 64 KiB blocks, requests up to 64 MiB, read-ahead to 64 MiB, 8 fetch threads, 256 MiB memory tier

| whole-image read (1 GiB) | seconds | MB/s | ratio |
| --- | --- | --- | --- |
| curl -o /dev/null (raw image) | $c | $(mb_per_s $SIZE "$c") | 1.00× curl |
| glancefs disk.raw, cold (rm cache/<id>, page cache dropped) | $g_cold | $(mb_per_s $SIZE "$g_cold") | $(ratio "$c" "$g_cold") curl |
| curl, Glance's image file in the page cache | $c_gc | $(mb_per_s $SIZE "$c_gc") | 1.00× curl (cached store) |
| glancefs disk.raw, cold, Glance's image file in the page cache | $g_cold_gc | $(mb_per_s $SIZE "$g_cold_gc") | $(ratio "$c_gc" "$g_cold_gc") curl (cached store) |
| glancefs disk.raw, hot (page cache) | $g_hot | $(mb_per_s $SIZE "$g_hot") | $(ratio "$c" "$g_hot") curl |
| glancefs raw image's disk.raw, warm (cache data files; fresh mount, page cache dropped) | $g_warm_raw | $(mb_per_s $SIZE "$g_warm_raw") | $(ratio "$qsd" "$g_warm_raw") qsd |
| glancefs qcow2 image's disk.raw, warm (cache data files; fresh mount, page cache dropped) | $g_warm | $(mb_per_s $SIZE "$g_warm") | $(ratio "$qsd" "$g_warm") qsd |
| qemu-storage-daemon FUSE export of the local qcow2 (page cache dropped) | $qsd | $(mb_per_s $SIZE "$qsd") | 1.00× qsd |
| qemu-img convert -O raw of the local qcow2 into /dev/shm | $conv | $(mb_per_s $SIZE "$conv") | $(ratio "$conv" "$g_warm") glancefs warm / convert |

| fio randread, O_DIRECT, 10 s | glancefs (warm qcow2 raw view) | qsd export | ratio |
| --- | --- | --- | --- |
$FIO_ROWS
| pre-fetch of 8 × 128 MiB | seconds | MB/s | vs curl |
| --- | --- | --- | --- |
| curl of the 8, one after another | $c8 | $(mb_per_s $PF_TOTAL "$c8") | 1.00× |
| touch queue/<id> × 8, until the queue is empty (8 workers) | $p8 | $(mb_per_s $PF_TOTAL "$p8") | $(ratio "$c8" "$p8") |

Cache states after the pre-fetch: $states.
REPORT
