#!/usr/bin/env bash
# What a compute node does today against glancefs, over a real Glance on loopback
# (tests/fixtures/glance, file store, WORKERS glance-api workers, default 2), side by side in one
# run, for a qcow2 image of VIRT_MIB virtual size holding DATA_MIB of random data in EXTENTS
# scattered extents (defaults: 4 GiB, 1.8 GiB, 8):
#   nova path      curl -o dl.qcow2 of /v2/images/<id>/file, qemu-img convert -O raw, sync
#   glancefs cold  rm cache/<id>, cp --sparse=always images/<id>/disk.raw, sync
#   first 4 KiB    no mount and no cache dir: mount glancefs, then dd the 4 KiB block at the
#                  start of the data extent in the middle of the image (the middle itself when
#                  EXTENTS is even) with iflag=direct (a VM's cache=none read: no kernel readahead)
# Before every timed run: outputs removed, the page cache dropped, then Glance warmed (its image
# file read back into the page cache, and a few Range GETs of its first bytes served, so both
# workers have answered). Between glancefs runs its verification finishes (untimed). (a) and (b)
# alternate in each of RUNS rounds; each column is its minimum, and the ratio is taken from the
# two minimums of this run. Outputs go to the work dir ($W, /var/tmp), a node's disk.
# Usage: bench/nova-path.sh [BUILD_DIR]   (root). Prints a Markdown report.
# Env: VIRT_MIB (4096), DATA_MIB (1843), EXTENTS (8), RUNS (3), WORKERS (2).
source "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit  # a failed step inside $(...) stops the run
start_glance

VIRT_MIB=${VIRT_MIB:-4096}
DATA_MIB=${DATA_MIB:-1843}
EXTENTS=${EXTENTS:-8}
((DATA_MIB <= VIRT_MIB && EXTENTS >= 1 && DATA_MIB >= EXTENTS)) || {
  echo "need EXTENTS <= DATA_MIB <= VIRT_MIB" >&2; exit 1; }
VIRT=$((VIRT_MIB << 20))

# The reference raw: sparse, EXTENTS extents of random data, extent i somewhere in the i-th slot.
REF=$W/ref.raw
truncate -s $VIRT "$REF"
SLOT=$((VIRT_MIB / EXTENTS))
EXT=$((DATA_MIB / EXTENTS))
MID_EXT=$((EXTENTS / 2))
for i in $(seq 0 $((EXTENTS - 1))); do
  len=$EXT
  ((i == EXTENTS - 1)) && len=$((DATA_MIB - EXT * (EXTENTS - 1)))
  room=$((SLOT - len))
  off=$((i * SLOT + (room > 0 ? (i * 7919) % (room + 1) : 0)))
  # The middle extent starts its slot: with EXTENTS even, at the middle of the image.
  ((i == MID_EXT)) && off=$((i * SLOT)) && MID_OFF=$((off << 20))
  ((off + len > VIRT_MIB)) && off=$((VIRT_MIB - len))  # a last extent longer than its slot
  dd if=/dev/urandom of="$REF" bs=1M seek=$off count=$len conv=notrunc iflag=fullblock status=none
done
MID_BLOCK=$((MID_OFF / 4096))
qemu-img convert -f raw -O qcow2 "$REF" "$W/src.qcow2"
QCOW_BYTES=$(stat -c %s "$W/src.qcow2")
ID=$(glance_upload "$W/src.qcow2" nova-path-qcow2 qcow2)
rm "$W/src.qcow2"
GLANCE_FILE=$W/glance/images/$ID
[[ -f $GLANCE_FILE ]] || { echo "no Glance store file $GLANCE_FILE" >&2; exit 1; }

M=$W/mnt
mkdir -p "$M"
mount_glancefs() { $BIN "$GLANCE_URL" "$M" -o "refresh=0,cache_dir=$1" && wait_mounted "$M"; }
unmount_glancefs() { unmount_and_wait "$M"; }
# The node's caches dropped, then Glance's image file read back and a few requests served.
cold_node_warm_glance() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  cat "$GLANCE_FILE" > /dev/null
  for _ in 1 2 3 4; do
    curl -sS --fail -o /dev/null -H 'Range: bytes=0-65535' "$GLANCE_URL/v2/images/$ID/file"
  done
}
now() { date +%s.%N; }
f3() { printf '%.3f' "$1"; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b < a) print b; else print a }'; }

nova_run() {  # prints "total download convert+sync"
  local t0 t1 t2
  rm -f "$W/dl.qcow2" "$W/nova.raw"
  cold_node_warm_glance
  t0=$(now)
  curl -sS --fail -o "$W/dl.qcow2" "$GLANCE_URL/v2/images/$ID/file"
  t1=$(now)
  qemu-img convert -f qcow2 -O raw "$W/dl.qcow2" "$W/nova.raw" && sync
  t2=$(now)
  echo "$(f3 "$(secs "$t0" "$t2")") $(f3 "$(secs "$t0" "$t1")") $(f3 "$(secs "$t1" "$t2")")"
}
gfs_run() {  # prints seconds
  local t0 t1
  rm -f "$W/gfs.raw" "$M/cache/$ID"
  cold_node_warm_glance
  t0=$(now)
  cp --sparse=always "$M/images/$ID/disk.raw" "$W/gfs.raw" && sync
  t1=$(now)
  f3 "$(secs "$t0" "$t1")"
}

mount_glancefs "$W/cache"
nova="" nova_dl="" nova_conv="" gfs="" NOVA_ALL=() GFS_ALL=()
for _ in $(seq "$RUNS"); do
  read -r t dl conv < <(nova_run)
  NOVA_ALL+=("$t")
  if [[ $(min "$nova" "$t") == "$t" ]]; then nova=$t nova_dl=$dl nova_conv=$conv; fi
  t=$(gfs_run)
  GFS_ALL+=("$t")
  STATE=$(getfattr --absolute-names --only-values -n user.glancefs.state "$M/cache/$ID" 2>/dev/null || echo '?')
  wait_verified "$M" "$ID"
  STATE_LATER=$(getfattr --absolute-names --only-values -n user.glancefs.state "$M/cache/$ID" 2>/dev/null || echo '?')
  gfs=$(min "$gfs" "$t")
done
cmp "$W/nova.raw" "$REF"
cmp "$W/gfs.raw" "$REF"
du_nova=$(du -h "$W/nova.raw" | cut -f1)
du_gfs=$(du -h "$W/gfs.raw" | cut -f1)
du_ref=$(du -h "$REF" | cut -f1)
rm -f "$W/dl.qcow2" "$W/nova.raw" "$W/gfs.raw"

# (c): from nothing (no mount, no cache dir) to the first 4 KiB in the middle of the image.
first="" first_mount="" first_dd="" FIRST_ALL=()
for i in $(seq "$RUNS"); do
  unmount_glancefs
  rm -rf "$W/cache" "$W/cache-c"*
  cold_node_warm_glance
  t0=$(now)
  mount_glancefs "$W/cache-c$i"
  t1=$(now)
  dd if="$M/images/$ID/disk.raw" of=/dev/null bs=4k count=1 skip=$MID_BLOCK iflag=direct status=none
  t2=$(now)
  t=$(f3 "$(secs "$t0" "$t2")")
  FIRST_ALL+=("$t")
  if [[ $(min "$first" "$t") == "$t" ]]; then
    first=$t first_mount=$(f3 "$(secs "$t0" "$t1")") first_dd=$(f3 "$(secs "$t1" "$t2")")
  fi
done
cmp <(dd if="$M/images/$ID/disk.raw" bs=4k count=1 skip=$MID_BLOCK status=none) \
  <(dd if="$REF" bs=4k count=1 skip=$MID_BLOCK status=none)
unmount_glancefs

nova_vs_gfs=$(awk -v a="$nova" -v b="$gfs" 'BEGIN { printf "%.2f", a / b }')
verdict() { awk -v v="$1" -v bar="$2" -v dir="$3" 'BEGIN {
  ok = (dir == "ge") ? v >= bar : v <= bar; print ok ? "met" : "**not met**" }'; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }

cat <<REPORT
# The Nova path against glancefs: a qcow2 image onto a compute node

$(machine_lines)
- Glance $(dpkg-query -W -f='${Version}' glance-api) (noauth fixture, file store, ${WORKERS:-2} workers) on 127.0.0.1
- image: qcow2, $(gib $VIRT) virtual, $(gib $((DATA_MIB << 20))) of random data in $EXTENTS extents; $(gib "$QCOW_BYTES") in Glance
- before every timed run: outputs removed, page cache dropped, then Glance's image file read back
  and 4 Range GETs served; the two paths alternate; minimum of $RUNS runs per row, outputs on $(df --output=source "$W" | tail -1) ($W)

| onto the node | seconds (min) | all runs | MB/s of data | vs nova |
| --- | --- | --- | --- | --- |
| nova: curl -o dl.qcow2 + qemu-img convert -O raw + sync | $nova | ${NOVA_ALL[*]} | $(mb_per_s $((DATA_MIB << 20)) "$nova") | 1.00× |
| &nbsp;&nbsp;of which curl (fastest run) | $nova_dl | | $(mb_per_s "$QCOW_BYTES" "$nova_dl") (qcow2 bytes) | |
| &nbsp;&nbsp;of which convert + sync (fastest run) | $nova_conv | | | |
| glancefs cold: rm cache/<id>, cp --sparse=always disk.raw + sync | $gfs | ${GFS_ALL[*]} | $(mb_per_s $((DATA_MIB << 20)) "$gfs") | $(ratio "$nova" "$gfs") |

| first 4 KiB, mid-image (offset $((MID_OFF >> 20)) MiB, data), dd iflag=direct | seconds (min) | all runs | bar | |
| --- | --- | --- | --- | --- |
| mount glancefs (fresh cache dir) + dd bs=4k count=1 | $first | ${FIRST_ALL[*]} | ≤ 0.1 s | $(verdict "$first" 0.1 le) |
| &nbsp;&nbsp;of which the mount (until $BIN returns; fastest run) | $first_mount | | | |
| &nbsp;&nbsp;of which the dd (fastest run) | $first_dd | | | |

- nova / glancefs: **${nova_vs_gfs}×** (bar: glancefs ≥ 1.3× faster): $(verdict "$nova_vs_gfs" 1.3 ge)
- outputs identical to the reference raw (cmp): nova.raw, gfs.raw, the mid-image block
- du: nova.raw $du_nova, gfs.raw $du_gfs (reference raw $du_ref; apparent size $(gib $VIRT) each)
- cache state of the image after the last cp: $STATE right after it, $STATE_LATER after waiting (10 s at most)
REPORT
