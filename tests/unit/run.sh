#!/bin/sh
# Runs every unit test program given; fails if any fails. Run from the repo root.
set -u
status=0
for t in "$@"; do
    echo "== $t"
    if ! "$t"; then
        echo "FAILED: $t" >&2
        status=1
    fi
done
[ "$#" -gt 0 ] || { echo "no unit tests given" >&2; exit 1; }
exit $status
