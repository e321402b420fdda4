#!/usr/bin/env bash
# The option table, the man page and the example config agree: every glancefs option that
# `glancefs --help` prints is described in glancefs(8) and listed in
# systemd/glancefs.conf.example, and every man page renders with `man -l` without a warning.
#   tests/docs/options_documented.sh GLANCEFS_BIN SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
fail=0
command -v man >/dev/null || { echo "options_documented: man is missing (apt install man-db)" >&2; exit 1; }
names=$("$bin" --help | sed '/^FUSE options:/,$d' | grep -oE '^ +-o [a-z_]+' | awk '{print $2}')
[[ $(wc -w <<<"$names") -ge 30 ]] || { echo "options_documented: too few options in --help: $names" >&2; exit 1; }
for n in $names; do
  if ! grep -qE -- "(-o \"? ?|\", \" ?)${n}([=\" ]|$)" "$src/docs/glancefs.8"; then
    echo "options_documented: -o $n is in --help but not described in docs/glancefs.8" >&2
    fail=1
  fi
  if ! grep -qE "^#? ?${n} =" "$src/systemd/glancefs.conf.example"; then
    echo "options_documented: $n is in --help but not in systemd/glancefs.conf.example" >&2
    fail=1
  fi
done
for page in "$src"/docs/*.[18]; do
  warnings=$(man --warnings -l "$page" 2>&1 >/dev/null) || { echo "man -l $page failed" >&2; fail=1; }
  if [[ -n $warnings ]]; then
    echo "options_documented: man -l $page warns: $warnings" >&2
    fail=1
  fi
done
[[ $fail -eq 0 ]] && echo "options_documented: $(wc -w <<<"$names") options in --help, man page and example agree"
exit $fail
