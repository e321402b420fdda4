#!/usr/bin/env bash
# A read after a remount against fceil, the ceiling FUSE itself sets here, side by side in one run.
# A SIZE_MIB (default 1024) random raw image is uploaded to the Glance fixture (tests/fixtures/
# glance, file store, WORKERS workers, default 2), read once through glancefs so it is cached,
# and verified. Then, best of RUNS each:
#   glancefs disk.raw after remount  a fresh process before each run (empty memory tier; the
#                                    kernel's page cache of disk.raw goes with the unmount), the
#                                    page cache dropped, then the cache's files (its data
#                                    files and RocksDB's) read back into it; dd bs=1M
#   the same with -o direct_io       disk.raw bypasses the kernel's page cache
#   fceil --cache=direct             ../shared/bench/fceil.c, a minimal FUSE pass-through of the
#                                    same bytes (src.raw, in the page cache); dd bs=1M
#   fceil --cache=direct --splice    the same, replies spliced from src.raw
#   fceil --cache=keep               the same through the kernel's page cache (as glancefs by
#                                    default), read_ahead_kb as glancefs sets it
# Usage: bench/remount.sh [BUILD_DIR]   (root). Prints a Markdown report.
# Env: SIZE_MIB (1024), RUNS (3), WORKERS (2).
source "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit  # a failed step inside $(...) stops the run
FCEIL_SRC=$(dirname "$PWD")/shared/bench/fceil.c
[[ -f $FCEIL_SRC ]] || { echo "remount.sh: $FCEIL_SRC is missing" >&2; exit 1; }
# shellcheck disable=SC2046  # pkg-config prints several flags
cc -O2 -Wall "$FCEIL_SRC" $(pkg-config --cflags --libs fuse3) -o "$W/fceil"
start_glance

SIZE_MIB=${SIZE_MIB:-1024}
SIZE=$((SIZE_MIB << 20))
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$(glance_upload "$W/src.raw" remount-raw raw)

M=$W/mnt
mkdir -p "$M"
MOUNT_EXTRA=""
mount_glancefs() { $BIN "$GLANCE_URL" "$M" -o "refresh=0,cache_dir=$W/cache$MOUNT_EXTRA" && wait_mounted "$M"; }
remount() {
  unmount_and_wait "$M"
  mount_glancefs
}
mount_glancefs
dd_read "$M/images/$ID/disk.raw"
cmp "$M/images/$ID/disk.raw" "$W/src.raw"
wait_verified "$M" "$ID"
STATE=$(getfattr --absolute-names --only-values -n user.glancefs.state "$M/cache/$ID")
shopt -s nullglob
DATA_FILES=("$W"/cache/data/*.blk)
shopt -u nullglob
((${#DATA_FILES[@]})) || { echo "no data files under $W/cache/data" >&2; exit 1; }
DATA_DU=$(du -ch "${DATA_FILES[@]}" | tail -1 | cut -f1)
# A pattern, expanded by best_of after each remount: RocksDB renames its files as it opens.
g=$(BEST_PRE=remount best_of "$W/cache/[0-9A-Z]* $W/cache/data/*.blk" dd_read "$M/images/$ID/disk.raw")
RA_KB=$(cat "/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb")
MOUNT_EXTRA=,direct_io
gd=$(BEST_PRE=remount best_of "$W/cache/[0-9A-Z]* $W/cache/data/*.blk" dd_read "$M/images/$ID/disk.raw")
cmp "$M/images/$ID/disk.raw" "$W/src.raw"
unmount_and_wait "$M"

# fceil_run VAR CACHE [FLAG]: mounts fceil over src.raw (--cache=CACHE, FLAG); sets VAR to the
# best dd seconds.
fceil_run() {
  local var=$1 cache=$2 pid t; shift 2
  mkdir -p "$W/fc"
  "$W/fceil" "$W/fc" --backend=file:"$W/src.raw" --cache="$cache" "$@" &
  pid=$!
  CLEANUP_PIDS+=("$pid")
  wait_mounted "$W/fc" || { echo "fceil did not mount" >&2; exit 1; }
  echo "$RA_KB" > "/sys/class/bdi/$(mountpoint -d "$W/fc")/read_ahead_kb"
  t=$(best_of "$W/src.raw" dd_read "$W/fc/raw")
  cmp "$W/fc/raw" "$W/src.raw"
  fusermount3 -u "$W/fc"
  wait "$pid"
  unset 'CLEANUP_PIDS[-1]'  # gone
  printf -v "$var" '%s' "$t"
}
f="" fs="" fk=""
fceil_run f direct
fceil_run fs direct --splice
fceil_run fk keep

row() { printf '| %s | %.3f | %s | %s |\n' "$1" "$2" "$(mb_per_s $SIZE "$2")" "$(ratio "$2" "$3")"; }
cat <<REPORT
# A read after a remount against fceil (FUSE's ceiling here)

$(machine_lines)
- Glance $(dpkg-query -W -f='${Version}' glance-api) (noauth fixture, file store, ${WORKERS:-2} workers) on 127.0.0.1; $SIZE_MIB MiB of random data; best of $RUNS
- glancefs: image $STATE in the cache, ${#DATA_FILES[@]} data file(s), $DATA_DU on disk; a fresh process before each run, the cache's files in the page cache
- glancefs serves disk.raw with FOPEN_KEEP_CACHE by default (kernel page cache, readahead: read_ahead_kb=$RA_KB on its bdi),
  with FOPEN_DIRECT_IO under -o direct_io. fceil --cache=direct: FOPEN_DIRECT_IO (no page cache; each 1 MiB read(2) is one FUSE READ, max_read 1 MiB), 8 threads

| dd bs=1M of the whole image | seconds | MB/s | glancefs MB/s ÷ this |
| --- | --- | --- | --- |
$(row "glancefs disk.raw after remount" "$g" "$g")
$(row "glancefs -o direct_io, the same" "$gd" "$g")
$(row "fceil --cache=direct (pread + reply)" "$f" "$g")
$(row "fceil --cache=direct --splice" "$fs" "$g")
$(row "fceil --cache=keep (page cache, read_ahead_kb=$RA_KB)" "$fk" "$g")

Against fceil --cache=direct (bar ≥ 0.70×): glancefs -o direct_io **$(ratio "$f" "$gd")**, glancefs
as mounted by default **$(ratio "$f" "$g")**; the page cache's own ceiling here (fceil --cache=keep)
$(ratio "$f" "$fk").
REPORT
