#!/usr/bin/env bash
# Reading a 1 GiB image from a real Glance on loopback (tests/fixtures/glance, file store,
# WORKERS glance-api workers, default 2), side by side in one run:
#   curl -o /dev/null of /v2/images/<id>/file    one sequential stream, Glance's best case
#   glancefs disk.raw, cold                      dd bs=1M through the mount (ranged GETs), the
#                                                image removed from the block cache first
#   glancefs -o nocache disk.raw                 no block cache: each kernel read is one GET
#   glancefs disk.raw, second read               the kernel's page cache
# The page cache is dropped before every cold run. Usage: bench/glance.sh [BUILD_DIR] (root).
source "$(dirname "$0")/lib.sh"
start_glance

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$(glance_upload "$W/src.raw" bench raw)
mkdir -p "$W/mnt" "$W/nocache"
$BIN "$GLANCE_URL" "$W/mnt" -o "refresh=0,cache_dir=$W/cache"
$BIN "$GLANCE_URL" "$W/nocache" -o refresh=0,nocache
curl_get() { curl -sS --fail -o /dev/null "$GLANCE_URL/v2/images/$ID/file"; }
c=$(best_of "" curl_get)
# Each cold run starts with the image out of the cache, its last verification finished.
uncache() {
  for _ in $(seq 100); do
    [[ $(getfattr --absolute-names --only-values -n user.glancefs.state "$W/mnt/cache/$ID" 2>/dev/null) != partial ]] && break
    sleep 0.1
  done
  rm -f "$W/mnt/cache/$ID"
}
g=$(BEST_PRE=uncache best_of "" dd_read "$W/mnt/images/$ID/disk.raw")
n=$(best_of "" dd_read "$W/nocache/images/$ID/disk.raw")
cmp "$W/mnt/images/$ID/disk.raw" "$W/src.raw"
hot=$(RUNS=1 best_of "$W/mnt/images/$ID/disk.raw" dd_read "$W/mnt/images/$ID/disk.raw")

cat <<REPORT
# glancefs over a real Glance

$(machine_lines)
- Glance $(dpkg-query -W -f='${Version}' glance-api) (noauth fixture, file store, ${WORKERS:-2} workers) on 127.0.0.1; best of $RUNS; 1 GiB of random data

| read of the whole image | seconds | MB/s | vs curl |
| --- | --- | --- | --- |
| curl -o /dev/null | $c | $(mb_per_s $SIZE "$c") | 1.00× |
| glancefs disk.raw, cold (not in the block cache) | $g | $(mb_per_s $SIZE "$g") | $(ratio "$c" "$g") |
| glancefs -o nocache disk.raw | $n | $(mb_per_s $SIZE "$n") | $(ratio "$c" "$n") |
| glancefs disk.raw, second read (page cache) | $hot | $(mb_per_s $SIZE "$hot") | $(ratio "$c" "$hot") |
REPORT
