#!/usr/bin/env bash
# Installs everything glancefs needs to build, run and test, from Debian 12's packages only.
# Idempotent and quick when everything is already there. Run as root.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config
  # libraries (the design card, plus what a storage project needs)
  libfuse3-dev libcurl4-openssl-dev librocksdb-dev nlohmann-json3-dev libboost-dev
  libgtest-dev libgmock-dev libssl-dev zlib1g-dev libzstd-dev libsystemd-dev libxxhash-dev
  libyaml-cpp-dev
  librbd-dev librados-dev   # backends/rbd (Ceph); the test cluster's daemons: tests/fixtures/ceph
  libcpp-httplib-dev        # -o metrics_listen
  # runtime
  fuse3
  # what the tests drive: the oracles and the tools a user has
  qemu-utils bzip2 tar attr rsync procps util-linux e2fsprogs coreutils openssl socat
  # the Debian package (scripts/package.sh) and the Prometheus that scrapes a mount in a test
  debhelper dpkg-dev lintian man-db prometheus
  # the oracle for image signatures: the library Nova verifies them with
  python3-cursive
  # a VM that boots from the mount (tests/integration/boot_test.cc)
  qemu-system-x86
  # the decoder fuzzer (libFuzzer) and the thread-safety check (jq reads its compile commands)
  clang-14 libclang-rt-14-dev jq
)
if [[ "${GLANCEFS_BENCH_DEPS:-0}" == 1 ]]; then
  PACKAGES+=(qemu-system-common fio hyperfine)  # qemu-storage-daemon for side-by-side runs
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || true
fi
[[ -e /dev/fuse ]] || { echo "install-deps: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
