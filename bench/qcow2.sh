#!/usr/bin/env bash
# qcow2 decode benchmark (issue 4), side by side in one run, warm (the qcow2 file in the page
# cache before every timed run, the decoded output not):
#   glancefs disk.raw   dd bs=1M of the raw view of a dir: catalog holding the qcow2
#   qemu-img convert    -O raw into a file on tmpfs (/dev/shm): a node's usual step
#   qemu-storage-daemon --export type=fuse of the same qcow2 (driver=qcow2), dd bs=1M
# for a 1 GiB image: uncompressed random data, and compressible data (base64 text) compressed
# with zlib and with zstd.
# Usage: bench/qcow2.sh [BUILD_DIR]   (root). Prints a Markdown report.
source "$(dirname "$0")/lib.sh"
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
# A 4 GiB-virtual qcow2 holding 1 GiB: cp --sparse=always must skip the 3 GiB of holes
# (SEEK_HOLE) and take about as long as reading 1 GiB.
qemu-img create -q -f qcow2 "$W/sparse.qcow2" 4G
for i in 0 1 2 3; do
  qemu-io -f qcow2 -c "write -P $((i + 1)) $((i * 1024))M 256M" "$W/sparse.qcow2" >/dev/null
done
ID[sparse]=$($CAT add "$W/catalog" "$W/sparse.qcow2" --name sparse --link)
copy_sparse() {  # into tmpfs, so the disk is not what is measured
  local out; out=$(mktemp /dev/shm/glancefs-bench-XXXXXX)
  cp --sparse=always "$1" "$out"
  rm -f "$out"
}
$BIN "dir:$W/catalog" "$W/mnt" -o "refresh=0,cache_dir=$W/cache"
sparse_cp=$(best_of "$W/sparse.qcow2" copy_sparse "$W/mnt/images/${ID[sparse]}/disk.raw")
plain_cp=$(best_of "$W/plain.qcow2" copy_sparse "$W/mnt/images/${ID[plain]}/disk.raw")

row() {  # row KIND
  local kind=$1 img=$W/$1.qcow2 g q c
  g=$(best_of "$img" dd_read "$W/mnt/images/${ID[$kind]}/disk.raw")
  c=$(best_of "$img" convert_to_shm "$img")
  touch "$W/qsd.raw"
  qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$img",aio=threads \
    --blockdev driver=qcow2,node-name=q,file=f \
    --export type=fuse,id=e,node-name=q,mountpoint="$W/qsd.raw" &
  local qsd=$!
  wait_mounted "$W/qsd.raw"
  q=$(best_of "$img" dd_read "$W/qsd.raw")
  cmp "$W/mnt/images/${ID[$kind]}/disk.raw" "$W/qsd.raw"
  kill "$qsd"; wait "$qsd" 2>/dev/null || true
  printf '| %s | %.3f s, %.0f MB/s | %.3f s, %.0f MB/s | %.3f s, %.0f MB/s | %.2f× | %.2f× |\n' \
    "$kind" "$g" "$(awk -v t="$g" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$q" "$(awk -v t="$q" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$c" "$(awk -v t="$c" -v s=$SIZE 'BEGIN{print s/t/1e6}')" \
    "$(awk -v a="$q" -v b="$g" 'BEGIN{print a/b}')" "$(awk -v a="$c" -v b="$g" 'BEGIN{print a/b}')"
}

cat <<REPORT
# glancefs qcow2 decode benchmark

$(machine_lines)
- 1 GiB virtual, 64 KiB clusters; plain: random data; zlib/zstd: base64 text compressed
  ($(du -m "$W/zlib.qcow2" | cut -f1) MiB and $(du -m "$W/zstd.qcow2" | cut -f1) MiB); best of $RUNS; qcow2 file warm in page cache

| image | glancefs disk.raw | qemu-storage-daemon FUSE | qemu-img convert | vs qsd | vs convert |
| --- | --- | --- | --- | --- | --- |
$(row plain)
$(row zlib)
$(row zstd)

| sparse copy | seconds |
| --- | --- |
| cp --sparse=always of disk.raw: 4 GiB virtual, 1 GiB of data in 4 runs | $sparse_cp |
| cp --sparse=always of disk.raw of the plain image: 1 GiB of data, no holes | $plain_cp |
REPORT
