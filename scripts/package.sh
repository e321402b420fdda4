#!/usr/bin/env bash
# Builds the Debian package from this tree: ./scripts/package.sh [OUT_DIR]
# Copies the tree's files (tracked and new, not ignored) to a scratch directory, runs
# dpkg-buildpackage there (debian/: debhelper, cmake), checks the result with lintian and leaves
# glancefs_<version>_<arch>.deb in OUT_DIR (default build/package). Installs the build tools it
# needs (debhelper, lintian) with scripts/install-deps.sh. Exits non-zero if lintian reports an
# error; its warnings are listed in the README with why they stay.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
out=$(realpath -m "${1:-build/package}")
mkdir -p "$out"
scratch=$(mktemp -d /tmp/glancefs-package.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
version=$(dpkg-parsechangelog -S Version)
src="$scratch/glancefs-$version"
mkdir "$src"
# Tracked and new files as they are in the tree (a tracked file deleted there is left out).
git ls-files -z -co --exclude-standard |
  while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$src"
(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)" >"$scratch/build.log" 2>&1) || {
  tail -50 "$scratch/build.log" >&2
  echo "package: dpkg-buildpackage failed (the log's end is above)" >&2
  exit 1
}
deb=$(ls "$scratch"/glancefs_"$version"_*.deb)
cp "$deb" "$out/"
echo "package: $out/$(basename "$deb")"
# lintian: errors fail the build; warnings and info are printed.
lintian --fail-on error "$out/$(basename "$deb")"
