#!/usr/bin/env bash
# The Debian package, as an operator uses it: built from the tree with one command
# (scripts/package.sh, which fails on any lintian error), installed with apt, mounted with
# `mount -t fuse.glancefs` and from an fstab line with `mount -a`, read, unmounted, purged.
# Needs root (apt, mount, /etc/fstab). Restores /etc/fstab and purges the package on any exit.
#   tests/package/package_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$(realpath "$1")
work=$(realpath -m "$2")
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (apt install, mount, /etc/fstab)"
export DEBIAN_FRONTEND=noninteractive

mnt="$work/mnt"
# What the test changes on the host is saved outside WORK_DIR first and put back on any exit;
# a backup left by a run that was killed is put back before anything else.
backup=/var/tmp/glancefs-package-test.backup
tools=(glancefs glancefs-catalog glancefs-cache)
restore() {
  set +e
  for m in "$mnt"; do
    grep -q " $m fuse.glancefs " /proc/mounts && umount -l "$m"
  done
  if [[ -d $backup ]]; then
    [[ -f $backup/fstab ]] && cp "$backup/fstab" /etc/fstab
    # mount.fuse3 finds glancefs on a fixed PATH where /usr/local/bin (scripts/demo.sh
    # installs there) comes first: such copies were set aside for the test.
    for t in "${tools[@]}"; do
      [[ -e $backup/$t ]] && mv "$backup/$t" "/usr/local/bin/$t"
    done
    rm -rf "$backup"
  fi
  if dpkg-query -W -f='${Status}' glancefs 2>/dev/null | grep -q "install ok installed"; then
    apt-get purge -y -qq -o DPkg::Lock::Timeout=600 glancefs >/dev/null 2>&1
  fi
}
cleanup() {
  local rc=$?
  restore
  exit $rc
}
restore  # what a killed run left behind
trap cleanup EXIT
mkdir -p "$backup"
cp /etc/fstab "$backup/fstab" 2>/dev/null || : >"$backup/fstab"
for t in "${tools[@]}"; do
  if [[ -e /usr/local/bin/$t ]]; then mv "/usr/local/bin/$t" "$backup/$t"; fi
done
rm -rf "$work"
mkdir -p "$work"

echo "== build the package (scripts/package.sh: dpkg-buildpackage, then lintian)"
"$src/scripts/package.sh" "$work/out"
deb=$(ls "$work"/out/glancefs_*.deb)

echo "== apt install $deb"
if dpkg-query -W -f='${Status}' glancefs 2>/dev/null | grep -q installed; then
  apt-get purge -y -qq -o DPkg::Lock::Timeout=600 glancefs >/dev/null
fi
apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "$deb" >/dev/null
for f in /usr/bin/glancefs /usr/bin/glancefs-catalog /usr/bin/glancefs-cache \
         /lib/systemd/system/glancefs@.service /usr/share/doc/glancefs/examples/glancefs.conf.example; do
  [[ -e $f ]] || fail "$f is not installed"
done
[[ -d /var/cache/glancefs && -d /etc/glancefs ]] || fail "/var/cache/glancefs or /etc/glancefs missing"
grep -q '^ExecStart=/usr/bin/glancefs ' /lib/systemd/system/glancefs@.service ||
  fail "the unit does not run /usr/bin/glancefs"
for page in glancefs.8 glancefs-cache.8 glancefs-catalog.1; do
  section=${page##*.}
  out=$(man -l "/usr/share/man/man$section/$page.gz" 2>&1 >/dev/null) || fail "man -l $page"
  [[ -z $out ]] || fail "man -l $page warns: $out"
done
/usr/bin/glancefs --version | grep -q "glancefs version" || fail "glancefs --version"

echo "== a catalog, made with the installed glancefs-catalog"
catalog="$work/catalog"
mkdir -p "$catalog" "$mnt"
head -c 3M /dev/urandom >"$work/disk.raw"
truncate -s 8M "$work/disk.raw"
id=$(/usr/bin/glancefs-catalog add "$catalog" "$work/disk.raw" --name packaged)

echo "== mount -t fuse.glancefs"
mount -t fuse.glancefs "dir:$catalog" "$mnt" -o "cache_dir=$work/cache,refresh=1"
grep -q " $mnt fuse.glancefs " /proc/mounts || fail "not in /proc/mounts as fuse.glancefs"
cmp "$mnt/by-name/packaged/disk.raw" "$work/disk.raw" || fail "wrong bytes through mount -t"
pid=$(pgrep -f "glancefs dir:$catalog" | head -1)
[[ $(readlink "/proc/$pid/exe") == /usr/bin/glancefs ]] || fail "not the packaged binary"
umount "$mnt"

echo "== an fstab line, mounted by mount -a"
printf '%s\n' "# glancefs package_test" \
  "dir:$catalog $mnt fuse.glancefs _netdev,nofail,allow_other,cache_dir=$work/cache,refresh=1 0 0" \
  >>/etc/fstab
mount -a -t fuse.glancefs
grep -q " $mnt fuse.glancefs " /proc/mounts || fail "mount -a did not mount the fstab line"
cmp "$mnt/images/$id/disk.raw" "$work/disk.raw" || fail "wrong bytes through the fstab mount"
umount "$mnt"
cp "$backup/fstab" /etc/fstab

echo "== apt purge"
apt-get purge -y -qq -o DPkg::Lock::Timeout=600 glancefs >/dev/null
[[ ! -e /usr/bin/glancefs && ! -e /lib/systemd/system/glancefs@.service ]] ||
  fail "purge left files behind"
echo "package_test: OK"
