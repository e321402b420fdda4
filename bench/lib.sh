# Shared by the bench/ scripts: sourced, not run. Sets BUILD, BIN, CAT, RUNS and a work dir W
# (removed on exit, with every FUSE mount below it and the PIDs in CLEANUP_PIDS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${1:-build}
BIN=$BUILD/tools/glancefs
CAT=$BUILD/tools/glancefs-catalog
GLANCEFS_BENCH_DEPS=1 ./scripts/install-deps.sh
[[ -x $BIN ]] || BUILD_DIR=$BUILD ./scripts/build.sh >/dev/null
RUNS=${RUNS:-3}
W=$(mktemp -d /var/tmp/glancefs-bench-XXXXXX)
CLEANUP_PIDS=()
bench_cleanup() {
  for pid in "${CLEANUP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  awk -v w="$W/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | while read -r m; do
    fusermount3 -u "$m" 2>/dev/null || true
  done
  # A daemon closes its cache (RocksDB) after the unmount: give it a moment.
  for _ in $(seq 50); do rm -rf "$W" 2>/dev/null && break; sleep 0.2; done
}
trap bench_cleanup EXIT

secs() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
mb_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
# unmount_and_wait MOUNT: unmounts the glancefs at MOUNT and waits (10 s at most) for its daemon
# to exit, so its cache is closed and the next mount of that cache does not wait for its lock.
unmount_and_wait() {
  local pid; pid=$(pgrep -f -- "$BIN .* $1( |$)" | head -1 || true)
  fusermount3 -u "$1"
  for _ in $(seq 100); do
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
}
# Waits for a FUSE mount at $1 (10 s at most).
wait_mounted() { for _ in $(seq 100); do grep -q " $1 " /proc/self/mounts && return 0; sleep 0.1; done; return 1; }
# best_of WARM_FILE CMD...: the fastest of RUNS runs, the page cache dropped before each and
# WARM_FILE (if not empty; several paths separated by spaces) read back into it. BEST_PRE, if set, is a command run (untimed)
# before the page cache is dropped.
best_of() {
  local warm=$1 best="" t0 t1 t; shift
  for _ in $(seq "$RUNS"); do
    [[ -n ${BEST_PRE:-} ]] && $BEST_PRE
    sync; echo 3 > /proc/sys/vm/drop_caches
    # shellcheck disable=SC2086  # WARM_FILE may be a list of files
    [[ -n $warm ]] && cat $warm > /dev/null
    t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
    t=$(secs "$t0" "$t1")
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { if (a == "" || b < a) print b; else print a }')
  done
  echo "$best"
}
dd_read() { dd if="$1" of=/dev/null bs=1M status=none; }
machine_lines() {
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "- glancefs $(git rev-parse --short HEAD 2>/dev/null || echo '?'), libfuse $(pkg-config --modversion fuse3), qemu $(qemu-img --version | head -1 | awk '{print $3}')"
}
# Starts the project's Glance fixture (file store, WORKERS workers, default 2) under $W/glance on a
# free port, exports GLANCE_URL, and stops it on exit.
start_glance() {
  local fixture=tests/fixtures/glance port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  eval "$($fixture/glance-up.sh --port "$port" --workers "${WORKERS:-2}" "$W/glance" 2>"$W/up.log")"
  trap 'tests/fixtures/glance/glance-down.sh --purge "$W/glance" >/dev/null 2>&1; bench_cleanup' EXIT
}
# glance_upload FILE NAME FORMAT: creates an image in that Glance, uploads FILE; prints its id.
glance_upload() {
  local id
  id=$(curl -sS -X POST -H 'Content-Type: application/json' \
    -d "{\"name\": \"$2\", \"disk_format\": \"$3\", \"container_format\": \"bare\"}" \
    "$GLANCE_URL/v2/images" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  curl -sS -X PUT -H 'Content-Type: application/octet-stream' -T "$1" \
    "$GLANCE_URL/v2/images/$id/file"
  echo "$id"
}
# wait_verified MOUNT ID: waits (10 s at most, untimed) until image ID's cache state is verified,
# so the hash of one run is not the next one's CPU.
wait_verified() {
  for _ in $(seq 100); do
    [[ $(getfattr --absolute-names --only-values -n user.glancefs.state "$1/cache/$2" 2>/dev/null) == verified ]] && return 0
    sleep 0.1
  done
}
