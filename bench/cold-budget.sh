#!/usr/bin/env bash
# Where a cold read's CPU goes on this machine, and the fastest cold read any FUSE cache could
# make here. Glance, glancefs and the reader share the machine's cores, so a cold read through
# any FUSE file system costs at least:
#   Glance serving the bytes      (Glance's CPU under curl, its cheapest case: one plain GET)
#   + receiving them              (curl's own CPU: recv into user memory, written to /dev/null)
#   + FUSE handing them over      (glancefs serving the image from its memory tier, plus dd:
#                                  the reply into the page cache and the reader's copy out)
# and no more than all cores can run at once. The bound leaves out everything a cache adds
# (hashing, storing, fetching in parallel), so it is generous. It is more generous still in
# taking Glance's CPU under curl, whose receiver keeps up with Glance: a second bound takes
# Glance's CPU when curl takes the bytes no faster than 0.8x its own rate (--limit-rate), the
# most issue 3 asks of a cold read; any FUSE reader is at least that slow. The report adds the other floor
# of a cache: the time to write 1 GiB to its file system. Every number is the minimum of
# RUNS runs, and Glance's image file stays in the page cache throughout, so the disk is out of
# it.
# Usage: bench/cold-budget.sh [BUILD_DIR]   (root). Prints a Markdown report.
source "$(dirname "$0")/lib.sh"
start_glance

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/src.raw"
ID=$(glance_upload "$W/src.raw" budget-raw raw)
GLANCE_FILE=$W/glance/images/$ID
[[ -f $GLANCE_FILE ]] || { echo "no Glance store file $GLANCE_FILE" >&2; exit 1; }
mapfile -t GLANCE_PIDS < <(pgrep -f -- "--config-file $W/glance/glance-api.conf")
((${#GLANCE_PIDS[@]})) || { echo "no glance-api processes found" >&2; exit 1; }

M=$W/mnt
mkdir -p "$M"
mount_glancefs() { $BIN "$GLANCE_URL" "$M" -o "refresh=0,cache_dir=$W/cache${1:+,$1}"; }
gfs_pid() { pgrep -f -- "$BIN $GLANCE_URL $M" | head -1; }

TCK=$(getconf CLK_TCK)
CORES=$(nproc)
# CPU ticks (user + system, all threads) that the processes $@ have used so far.
ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
# measure CMD...: runs CMD once, Glance's image file in the page cache and the rest of the page
# cache dropped; prints "wall glance glancefs reader", in seconds (CPU: user + system).
measure() {
  local g0 f0 t0 t1 r g1 f1 gfs
  gfs=$(gfs_pid)
  sync; echo 3 > /proc/sys/vm/drop_caches
  cat "$GLANCE_FILE" > /dev/null
  g0=$(ticks "${GLANCE_PIDS[@]}"); f0=$(ticks "$gfs")
  t0=$(date +%s.%N)
  # The subshell's cutime + cstime: the reader's CPU once it has been waited for.
  r=$( ( "$@" > /dev/null; awk '{ print $16 + $17 }' "/proc/$BASHPID/stat" ) )
  t1=$(date +%s.%N)
  g1=$(ticks "${GLANCE_PIDS[@]}"); f1=$(ticks "$gfs")
  awk -v w="$(secs "$t0" "$t1")" -v g=$((g1 - g0)) -v f=$((f1 - f0)) -v r="$r" -v t="$TCK" \
    'BEGIN { printf "%.3f %.2f %.2f %.2f\n", w, g / t, f / t, r / t }'
}
# min_of CMD...: the column-wise minimum of RUNS measure runs (BEST_PRE run untimed before each).
min_of() {
  for _ in $(seq "$RUNS"); do
    [[ -n ${BEST_PRE:-} ]] && $BEST_PRE
    measure "$@"
  done | awk '{ for (i = 1; i <= NF; i++) if (NR == 1 || $i < m[i]) m[i] = $i }
              END { printf "%s %s %s %s\n", m[1], m[2], m[3], m[4] }'
}
mount_glancefs
read -r c_wall c_glance _ c_reader < <(min_of curl -sS --fail -o /dev/null "$GLANCE_URL/v2/images/$ID/file")
rate80=$(awk -v s=$SIZE -v w="$c_wall" 'BEGIN { printf "%.0f", 0.8 * s / w }')
read -r s_wall s_glance _ s_reader < <(min_of curl -sS --fail --limit-rate "$rate80" -o /dev/null "$GLANCE_URL/v2/images/$ID/file")
cold_read() { rm -f "$M/cache/$ID"; dd_read "$M/images/$ID/disk.raw"; }
read -r g_wall g_glance g_gfs g_reader < <(BEST_PRE="wait_verified $M $ID" min_of cold_read)
cmp "$M/images/$ID/disk.raw" "$W/src.raw"
wait_verified "$M" "$ID"
# The floor of FUSE itself: the whole image in glancefs's memory tier, replied from there.
fusermount3 -u "$M"
mount_glancefs cache_memory=$((SIZE * 5 / 4 >> 20))M
dd_read "$M/images/$ID/disk.raw"
read -r f_wall _ f_gfs f_reader < <(min_of dd_read "$M/images/$ID/disk.raw")

# The other floor of a cache that keeps what it reads: writing 1 GiB to the cache's file system
# (fio, O_DIRECT 2 MiB sequential writes from 2 threads, as glancefs's store threads write).
disk_write() {
  local f=$W/fio.tmp
  truncate -s $SIZE "$f"
  fio --name=w --filename="$f" --rw=write --bs=2M --direct=1 --ioengine=psync --numjobs=2 \
    --offset_increment=$((SIZE / 2)) --size=$((SIZE / 2)) --fallocate=none --group_reporting \
    --output-format=json 2>/dev/null |
    python3 -c 'import json, sys; print(round(2**30 / json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"], 3))'
  rm -f "$f"
}
d_wall=$(for _ in $(seq "$RUNS"); do disk_write; done | sort -n | head -1)

bound=$(awk -v a="$c_glance" -v b="$c_reader" -v c="$f_gfs" -v d="$f_reader" -v n="$CORES" \
  'BEGIN { printf "%.3f", (a + b + c + d) / n }')
bound80=$(awk -v a="$s_glance" -v b="$s_reader" -v c="$f_gfs" -v d="$f_reader" -v n="$CORES" \
  'BEGIN { printf "%.3f", (a + b + c + d) / n }')
busy() { awk -v w="$1" -v s="$2" -v n="$CORES" 'BEGIN { printf "%.0f %%", 100 * s / (w * n) }'; }
sum() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN { printf "%.2f", a + b + c }'; }

cat <<REPORT
# Cold read: CPU budget on this machine

$(machine_lines)
- Glance $(dpkg-query -W -f='${Version}' glance-api) (noauth fixture, file store, ${WORKERS:-2} workers) on 127.0.0.1; 1 GiB of random data
- minimum of $RUNS runs per cell; Glance's image file in the page cache; CPU is user + system seconds

| CPU seconds for 1 GiB | curl -o /dev/null | curl --limit-rate 0.8x | glancefs cold read (dd bs=1M) | FUSE floor: glancefs memory tier (dd bs=1M) |
| --- | --- | --- | --- | --- |
| Glance (all workers) | $c_glance | $s_glance | $g_glance | — |
| receiver: curl / glancefs | $c_reader | $s_reader | $g_gfs | $f_gfs |
| reader: dd | — | — | $g_reader | $f_reader |
| total | $(sum "$c_glance" "$c_reader" 0) | $(sum "$s_glance" "$s_reader" 0) | $(sum "$g_glance" "$g_gfs" "$g_reader") | $(sum "$f_gfs" "$f_reader" 0) |
| wall seconds | $c_wall | $s_wall | $g_wall | $f_wall |
| cores busy (of $CORES) | $(busy "$c_wall" "$(sum "$c_glance" "$c_reader" 0)") | $(busy "$s_wall" "$(sum "$s_glance" "$s_reader" 0)") | $(busy "$g_wall" "$(sum "$g_glance" "$g_gfs" "$g_reader")") | $(busy "$f_wall" "$(sum "$f_gfs" "$f_reader" 0)") |

Lower bound for a cold read through any FUSE cache here: (Glance under curl + curl + FUSE floor)
/ $CORES cores = **$bound s**, so at most **$(ratio "$c_wall" "$bound") curl**. With Glance's and
curl's CPU at 0.8x curl's rate instead: **$bound80 s**, at most **$(ratio "$c_wall" "$bound80")
curl** (0.8x needs $(awk -v w="$c_wall" 'BEGIN { printf "%.3f", w / 0.8 }') s). glancefs's cold read: $g_wall s =
$(ratio "$c_wall" "$g_wall") curl.

A cache that keeps what it reads must also write it: 1 GiB of O_DIRECT 2 MiB sequential writes
from 2 threads takes **$d_wall s** on this file system (fio, best of $RUNS; nothing else
running): alone, the disk takes in bytes at $(ratio "$c_wall" "$d_wall") curl's rate.

Issue 13's bars, from the table above:
- glancefs's own CPU per cold GiB against curl's receive plus glancefs's memory reply:
  $g_gfs / ($c_reader + $f_gfs) = **$(awk -v g="$g_gfs" -v c="$c_reader" -v f="$f_gfs" 'BEGIN { printf "%.2f×", g / (c + f) }')** (bar ≤ 1.5×)
- Glance's CPU serving glancefs's cold read against serving curl: $g_glance / $c_glance =
  **$(ratio "$g_glance" "$c_glance")** (bar ≤ 1.15×); against curl held to 0.8× its rate:
  $(ratio "$g_glance" "$s_glance")
REPORT
