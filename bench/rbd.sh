#!/usr/bin/env bash
# Reading a 1 GiB raw image kept in a real Ceph RBD cluster (tests/fixtures/ceph: one mon, one
# BlueStore OSD) behind a real Glance with the rbd store, side by side in one run:
#   rbd export POOL/ID@snap - > /dev/null       librbd straight from Ceph, the ceiling here
#   curl -o /dev/null .../v2/images/<id>/file   through glance-api (its rbd store streams)
#   glancefs disk.raw, cold                     dd bs=1M through the mount, read from Ceph with
#                                               librbd, the image out of the block cache
#   glancefs -o nocache disk.raw                no block cache
#   glancefs -o norbd disk.raw, cold            the same image through glance-api
#   first 4 KiB in the middle, mount included   a fresh mount and cache each time
#   random 4 KiB reads, cold, depth 1 and 16    fio beside `rbd bench --io-pattern rand`
#   8 nodes at once                             8 mounts (own processes and caches) read it
#                                               cold; bytes glance-api served, from its log
# The page cache is dropped before every timed run. Usage: bench/rbd.sh [BUILD_DIR] (root).
source "$(dirname "$0")/lib.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

eval "$(tests/fixtures/ceph/ceph-up.sh --port "$(free_port)" "$W/ceph" 2>"$W/ceph-up.log")"
eval "$(tests/fixtures/glance/glance-up.sh --port "$(free_port)" --workers "${WORKERS:-2}" \
  --stores ceph:rbd:images --ceph-conf "$CEPH_CONF" "$W/glance" 2>"$W/glance-up.log")"
trap 'tests/fixtures/glance/glance-down.sh --purge "$W/glance" >/dev/null 2>&1
      tests/fixtures/ceph/ceph-down.sh --purge "$W/ceph" >/dev/null 2>&1; bench_cleanup' EXIT

# The node's view of Ceph: a conf without a keyring line and the read-only client's keyring.
NODE=$W/etc-ceph
mkdir -p "$NODE"
sed '/^[[:space:]]*keyring[[:space:]]*=/d' "$CEPH_CONF" > "$NODE/ceph.conf"
install -m 600 "$CEPH_STATE_DIR/ceph.client.reader.keyring" "$NODE/"
RBD=(rbd -c "$CEPH_CONF" --id reader)
OPTS="refresh=0,rbd_user=reader,ceph_conf_dir=$NODE"

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$(glance_upload "$W/src.raw" bench raw)

rbd_export() { "${RBD[@]}" export "images/$ID@snap" - > /dev/null 2>&1; }
curl_get() { curl -sS --fail -o /dev/null "$GLANCE_URL/v2/images/$ID/file"; }
mkdir -p "$W/mnt" "$W/nocache" "$W/norbd"
$BIN "$GLANCE_URL" "$W/mnt" -o "$OPTS,cache_dir=$W/cache"
$BIN "$GLANCE_URL" "$W/nocache" -o "$OPTS,nocache"
$BIN "$GLANCE_URL" "$W/norbd" -o "$OPTS,norbd,cache_dir=$W/cache-norbd"
uncache() {
  for m in "$W/mnt" "$W/norbd"; do
    for _ in $(seq 100); do
      [[ $(getfattr --absolute-names --only-values -n user.glancefs.state "$m/cache/$ID" 2>/dev/null) != partial ]] && break
      sleep 0.1
    done
    rm -f "$m/cache/$ID"
  done
}
e=$(best_of "" rbd_export)
c=$(best_of "" curl_get)
g=$(BEST_PRE=uncache best_of "" dd_read "$W/mnt/images/$ID/disk.raw")
n=$(best_of "" dd_read "$W/nocache/images/$ID/disk.raw")
r=$(BEST_PRE=uncache best_of "" dd_read "$W/norbd/images/$ID/disk.raw")
cmp "$W/mnt/images/$ID/disk.raw" "$W/src.raw"
getfattr --absolute-names --only-values -n user.glancefs.source "$W/mnt/images/$ID" | grep -qx rbd:ceph

# The first 4 KiB in the middle of the image, mount included (a new mount and cache each run).
first_read() {
  local m=$W/first
  mkdir -p "$m"; rm -rf "$W/cache-first"
  $BIN "$GLANCE_URL" "$m" -o "$OPTS,cache_dir=$W/cache-first"
  dd if="$m/images/$ID/disk.raw" of=/dev/null bs=4k skip=$((SIZE / 2 / 4096)) count=1 status=none
  fusermount3 -u "$m"
}
f=$(best_of "" first_read)
# The same with glancefs and the Ceph client libraries in the page cache, as on a node where the
# service runs: only the mount's own work and the image's first bytes are timed.
LIBS="$BIN $(ldd "$BIN" | awk '/=> \// { print $3 }' | tr '\n' ' ')"
fw=$(best_of "$LIBS" first_read)
# And with nothing dropped: glance-api, the OSD and glancefs resident, as on a running node. The
# image is still cold: a new mount (so no page cache of it) and a new block cache each run.
fn=$(for _ in $(seq "$RUNS"); do
  t0=$(date +%s.%N); first_read; t1=$(date +%s.%N); secs "$t0" "$t1"
done | sort -g | head -1)

# Random 4 KiB reads on a cold image: fio (10 s) against rbd bench (same I/O count as fio did).
fio_iops() {  # MOUNT_OPTS DEPTH
  local m=$W/fio cache=$W/cache-fio
  mkdir -p "$m"; rm -rf "$cache"
  $BIN "$GLANCE_URL" "$m" -o "$OPTS,cache_dir=$cache,$1"
  sync; echo 3 > /proc/sys/vm/drop_caches
  fio --name=rand --filename="$m/images/$ID/disk.raw" --rw=randread --bs=4k --ioengine=psync \
    --numjobs="$2" --group_reporting --runtime=10 --time_based --readonly --output-format=json |
    python3 -c 'import json, sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
  fusermount3 -u "$m"
}
rbd_iops() {  # DEPTH
  rbd -c "$CEPH_CONF" --id glance bench --io-type read --io-pattern rand --io-size 4K \
    --io-threads "$1" --io-total 256M "images/$ID" 2>&1 | awk '/elapsed:/ { for (i = 1; i <= NF; i++) if ($i == "ops/sec:") print int($(i + 1)) }'
}
f1=$(fio_iops "readahead_max=0" 1); f16=$(fio_iops "readahead_max=0" 16)
n1=$(fio_iops "nocache" 1); n16=$(fio_iops "nocache" 16)
b1=$(rbd_iops 1); b16=$(rbd_iops 16)

# Eight nodes at once, cold, from Ceph and then through glance-api.
eight() {  # EXTRA_OPTS
  local pids=() t0 t1 i
  for i in $(seq 8); do
    mkdir -p "$W/node$i"; rm -rf "$W/node$i-cache"
    $BIN "$GLANCE_URL" "$W/node$i" -o "$OPTS,cache_dir=$W/node$i-cache$1"
  done
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  for i in $(seq 8); do cmp "$W/node$i/images/$ID/disk.raw" "$W/src.raw" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(date +%s.%N)
  for i in $(seq 8); do fusermount3 -u "$W/node$i"; done
  secs "$t0" "$t1"
}
# glance-api's /file requests (its rbd store streams each whole: the log has no length for
# chunked answers, so requests are counted and each is one whole image).
served() { grep -c "GET /v2/images/$ID/file" "$W/glance/log/glance-api.log" || true; }
before=$(served); e8=$(eight ""); b8=$(( $(served) - before ))
before=$(served); r8=$(eight ",norbd"); r8b=$(( $(served) - before ))

cat <<REPORT
# glancefs over Ceph RBD

$(machine_lines)
- Ceph $(dpkg-query -W -f='${Version}' ceph-osd) (1 mon, 1 BlueStore OSD on a sparse file), Glance $(dpkg-query -W -f='${Version}' glance-api) with the rbd store (${WORKERS:-2} workers), all on 127.0.0.1; best of $RUNS; 1 GiB of random data; glancefs reads as client.reader

| read of the whole image | seconds | MB/s | vs rbd export | vs curl |
| --- | --- | --- | --- | --- |
| rbd export to /dev/null | $e | $(mb_per_s $SIZE "$e") | 1.00× | $(ratio "$c" "$e") |
| curl through glance-api | $c | $(mb_per_s $SIZE "$c") | $(ratio "$e" "$c") | 1.00× |
| glancefs disk.raw, cold, from Ceph | $g | $(mb_per_s $SIZE "$g") | $(ratio "$e" "$g") | $(ratio "$c" "$g") |
| glancefs -o nocache, from Ceph | $n | $(mb_per_s $SIZE "$n") | $(ratio "$e" "$n") | $(ratio "$c" "$n") |
| glancefs -o norbd, cold, through glance-api | $r | $(mb_per_s $SIZE "$r") | $(ratio "$e" "$r") | $(ratio "$c" "$r") |

First 4 KiB in the middle of the cold image (new mount, new cache), mount included: $fn s on a running node (nothing dropped from the page cache); $fw s with the page cache dropped but glancefs and its libraries read back (glance-api's and the OSD's code pages come from disk); $f s with everything dropped.

| random 4 KiB reads, cold, IOPS | depth 1 | depth 16 |
| --- | --- | --- |
| rbd bench --io-pattern rand | $b1 | $b16 |
| glancefs (readahead_max=0) | $f1 ($(ratio "$f1" "$b1")) | $f16 ($(ratio "$f16" "$b16")) |
| glancefs -o nocache | $n1 ($(ratio "$n1" "$b1")) | $n16 ($(ratio "$n16" "$b16")) |

| 8 nodes read the image cold at once | seconds | glance-api /file requests (whole 1 GiB streams) |
| --- | --- | --- |
| from Ceph | $e8 | $b8 |
| -o norbd, through glance-api | $r8 | $r8b |
REPORT
