#!/usr/bin/env bash
# The README's first command: installs, builds, installs glancefs to /usr/local, creates a small
# demo catalog and mounts it at MOUNTPOINT (default /mnt/glance), then says what to try.
set -euo pipefail
cd "$(dirname "$0")/.."
MNT=${1:-/mnt/glance}
DEMO=${GLANCEFS_DEMO_DIR:-/var/tmp/glancefs-demo}

./scripts/install-deps.sh
BUILD_DIR=build ./scripts/build.sh
cmake --install build >/dev/null  # /usr/local/bin/glancefs, so mount -t fuse.glancefs works

if [[ ! -d "$DEMO/catalog" ]]; then
  echo "demo: creating a demo catalog in $DEMO/catalog"
  mkdir -p "$DEMO/work" "$DEMO/catalog"
  # A 256 MiB disk holding an ext4 file system with a few files: mostly holes.
  mkdir -p "$DEMO/work/root"
  echo "Hello from a glancefs demo image." > "$DEMO/work/root/README"
  head -c 8M /dev/urandom > "$DEMO/work/root/random.bin"
  truncate -s 256M "$DEMO/work/demo.raw"
  mkfs.ext4 -q -F -L glancefs-demo -d "$DEMO/work/root" "$DEMO/work/demo.raw"
  qemu-img convert -c -O qcow2 "$DEMO/work/demo.raw" "$DEMO/work/demo.qcow2"
  add() { glancefs-catalog add "$DEMO/catalog" "$@" >/dev/null; }
  add "$DEMO/work/demo.raw" --name demo-raw --property os_distro=debian --property hw_disk_bus=virtio
  add "$DEMO/work/demo.qcow2" --name demo-qcow2 --property os_distro=debian
  add "$DEMO/work/demo.qcow2" --name "team/base image" --property owner_team=storage
  add "$DEMO/work/demo.raw" --name twin
  add "$DEMO/work/demo.raw" --name twin
  add "$DEMO/work/demo.raw" --name hidden-one --hidden
  rm -rf "$DEMO/work"
fi

mkdir -p "$MNT"
if grep -q " $MNT fuse.glancefs " /proc/self/mounts; then fusermount3 -u "$MNT"; fi
glancefs "dir:$DEMO/catalog" "$MNT" -o allow_other,refresh=5

cat <<TXT

glancefs: the demo catalog in $DEMO/catalog is mounted at $MNT. Try:
  ls -l $MNT/images $MNT/by-name/
  cat $MNT/by-name/demo-raw/metadata.json
  getfattr -d $MNT/by-name/demo-raw/
  qemu-img info $MNT/by-name/demo-qcow2/disk.qcow2
  cp --sparse=always $MNT/by-name/demo-raw/disk.raw /tmp/demo.raw && du -h /tmp/demo.raw
  glancefs-catalog add $DEMO/catalog FILE --name NAME     (shows up within 5 s)
  fusermount3 -u $MNT
TXT
