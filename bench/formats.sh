#!/usr/bin/env bash
# Disk-format benchmark (issue 11), side by side in one run, warm (the image file in the page
# cache before every timed run, and glancefs's cache files, once it holds the image; the output
# not):
#   glancefs disk.raw     dd bs=1M of the raw view, dir: catalog holding the image
#   qemu-storage-daemon   --export type=fuse of the same file with qemu's driver, dd bs=1M
# for streamOptimized vmdk (deflate), dynamic vhdx and dynamic vdi, 1 GiB virtual of random data
# (the vmdk: compressible text, so its grains are really inflated); and the qcow2 view of a raw
# image (1 GiB of data in a 4 GiB sparse file):
#   glancefs disk.qcow2   cp --sparse=always of the synthesized view to a file; with the block
#                         cache (holding the image, its files warm as the raw file is) and
#                         without (-o nocache: the view reads the raw file)
#   qemu-img convert      -O qcow2 of the raw file to a file on the same disk
#   cp of the raw file    cp --sparse=always of the raw file itself, no FUSE: what cp allows
#   cp through fceil      cp --sparse=always of qemu-img's own qcow2 output, passed through by
#                         ../shared/bench/fceil.c (a minimal FUSE file system, page cache kept,
#                         glancefs's read_ahead_kb): what any FUSE file system allows
# Usage: bench/formats.sh [BUILD_DIR]   (root). Prints a Markdown report.
source "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit  # a failed step inside $(...) stops the run
FCEIL_SRC=$(dirname "$PWD")/shared/bench/fceil.c
[[ -f $FCEIL_SRC ]] || { echo "formats.sh: $FCEIL_SRC is missing" >&2; exit 1; }
# shellcheck disable=SC2046  # pkg-config prints several flags
cc -O2 -Wall "$FCEIL_SRC" $(pkg-config --cflags --libs fuse3) -o "$W/fceil"

SIZE=$((1 << 30))
head -c $SIZE /dev/urandom > "$W/random.raw"
head -c $((SIZE * 3 / 4)) /dev/urandom | base64 -w 0 | head -c $SIZE > "$W/text.raw"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$W/text.raw" "$W/stream.vmdk"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$W/random.raw" "$W/dynamic.vhdx"
qemu-img convert -f raw -O vdi "$W/random.raw" "$W/dynamic.vdi"
rm "$W/random.raw" "$W/text.raw"
truncate -s 4G "$W/sparse.raw"
for i in 0 1 2 3; do
  head -c 256M /dev/urandom | dd of="$W/sparse.raw" bs=1M seek=$((i * 1024)) conv=notrunc status=none
done
mkdir -p "$W/catalog" "$W/mnt"
declare -A ID
ID[stream.vmdk]=$($CAT add "$W/catalog" "$W/stream.vmdk" --name vmdk --disk-format vmdk --link)
ID[dynamic.vhdx]=$($CAT add "$W/catalog" "$W/dynamic.vhdx" --name vhdx --disk-format vhdx --link)
ID[dynamic.vdi]=$($CAT add "$W/catalog" "$W/dynamic.vdi" --name vdi --disk-format vdi --link)
ID[sparse.raw]=$($CAT add "$W/catalog" "$W/sparse.raw" --name sparse --disk-format raw --link)
$BIN "dir:$W/catalog" "$W/mnt" -o "refresh=0,cache_dir=$W/cache"
# The same catalog without the block cache: the view reads the local file as qemu-img does.
mkdir -p "$W/mnt-nocache"
$BIN "dir:$W/catalog" "$W/mnt-nocache" -o refresh=0,nocache

row() {  # row FILE QEMU_DRIVER
  local img=$W/$1 drv=$2 g q
  dd_read "$W/mnt/images/${ID[$1]}/disk.raw"  # now in the block cache
  g=$(best_of "$img $W/cache/data/*.blk" dd_read "$W/mnt/images/${ID[$1]}/disk.raw")
  touch "$W/qsd.raw"
  qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$img",aio=threads \
    --blockdev driver="$drv",node-name=q,file=f \
    --export type=fuse,id=e,node-name=q,mountpoint="$W/qsd.raw" &
  local qsd=$!
  wait_mounted "$W/qsd.raw"
  q=$(best_of "$img" dd_read "$W/qsd.raw")
  cmp "$W/mnt/images/${ID[$1]}/disk.raw" "$W/qsd.raw"
  kill "$qsd"; wait "$qsd" 2>/dev/null || true
  printf '| %s (%s MiB) | %.3f s, %s MB/s | %.3f s, %s MB/s | %s |\n' "$1" \
    "$(du -m "$img" | cut -f1)" "$g" "$(mb_per_s $SIZE "$g")" "$q" "$(mb_per_s $SIZE "$q")" \
    "$(ratio "$q" "$g")"
}

# The qcow2 view of a raw image, copied out, against qemu-img making the same file.
copy_view() { cp --sparse=always "$W/mnt/images/${ID[sparse.raw]}/disk.qcow2" "$W/out.qcow2"; sync "$W/out.qcow2"; }
copy_view_nocache() { cp --sparse=always "$W/mnt-nocache/images/${ID[sparse.raw]}/disk.qcow2" "$W/out.qcow2"; sync "$W/out.qcow2"; }
copy_raw() { cp --sparse=always "$W/sparse.raw" "$W/out.raw"; sync "$W/out.raw"; }
convert_qcow2() { qemu-img convert -f raw -O qcow2 "$W/sparse.raw" "$W/out.qcow2"; sync "$W/out.qcow2"; }
rm_out() { rm -f "$W/out.qcow2" "$W/out.raw"; }
BEST_PRE=rm_out
copy_view  # the block cache now holds the image; each timed run finds its files warm
rm_out
c_view=$(best_of "$W/sparse.raw $W/cache/data/*.blk" copy_view)
qemu-img compare -q -f qcow2 -F raw "$W/out.qcow2" "$W/sparse.raw"
view_mib=$(du -m "$W/out.qcow2" | cut -f1)
c_view_nc=$(best_of "$W/sparse.raw" copy_view_nocache)
c_conv=$(best_of "$W/sparse.raw" convert_qcow2)
conv_mib=$(du -m "$W/out.qcow2" | cut -f1)
c_raw=$(best_of "$W/sparse.raw" copy_raw)
# The same copy through the thinnest FUSE file system there is: qemu-img's qcow2, passed through.
qemu-img convert -f raw -O qcow2 "$W/sparse.raw" "$W/ref.qcow2"
mkdir -p "$W/fc"
"$W/fceil" "$W/fc" --backend=file:"$W/ref.qcow2" --cache=keep &
FCEIL_PID=$!
CLEANUP_PIDS+=("$FCEIL_PID")
wait_mounted "$W/fc" || { echo "fceil did not mount" >&2; exit 1; }
cat "/sys/class/bdi/$(mountpoint -d "$W/mnt")/read_ahead_kb" > "/sys/class/bdi/$(mountpoint -d "$W/fc")/read_ahead_kb"
copy_fceil() { cp --sparse=always "$W/fc/raw" "$W/out.qcow2"; sync "$W/out.qcow2"; }
c_fceil=$(best_of "$W/ref.qcow2" copy_fceil)
cmp "$W/out.qcow2" "$W/ref.qcow2"
fusermount3 -u "$W/fc"
unset BEST_PRE

cat <<REPORT
# glancefs disk-format benchmark (bench/formats.sh)

$(machine_lines)
- 1 GiB virtual each; best of $RUNS; the image file warm in the page cache before each run

| image | glancefs disk.raw | qemu-storage-daemon FUSE | glancefs vs qsd |
| --- | --- | --- | --- |
$(row stream.vmdk vmdk)
$(row dynamic.vhdx vhdx)
$(row dynamic.vdi vdi)

| qcow2 of a raw image (4 GiB virtual, 1 GiB of data in 4 runs) | seconds | file |
| --- | --- | --- |
| glancefs: cp --sparse=always disk.qcow2, sync (block cache, as mounted by default) | $(printf %.3f "$c_view") | $view_mib MiB |
| glancefs -o nocache: cp --sparse=always disk.qcow2, sync | $(printf %.3f "$c_view_nc") | |
| qemu-img convert -O qcow2, sync | $(printf %.3f "$c_conv") | $conv_mib MiB |
| cp --sparse=always of the raw file itself (no FUSE, no qcow2), sync | $(printf %.3f "$c_raw") | |
| glancefs vs qemu-img (cache; nocache) | $(ratio "$c_conv" "$c_view"); $(ratio "$c_conv" "$c_view_nc") | |
| cp --sparse=always of qemu-img's qcow2 through fceil (a minimal FUSE pass-through), sync | $(printf %.3f "$c_fceil") | |
| cp of the local raw file vs qemu-img: the most a cp can give | $(ratio "$c_conv" "$c_raw") | |
| cp through fceil vs qemu-img: the most a cp through FUSE can give | $(ratio "$c_conv" "$c_fceil") | |
| glancefs vs cp through fceil (cache; nocache) | $(ratio "$c_fceil" "$c_view"); $(ratio "$c_fceil" "$c_view_nc") | |

Both qcow2 outputs are written to the same disk (/var/tmp); the copied view is checked with
qemu-img compare against the raw file.
REPORT
