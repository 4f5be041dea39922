#!/bin/sh
# Runs each libFuzzer target for SECONDS, starting from its seed corpus in
# tests/fuzz/corpus/<target>/ (committed) and keeping new inputs in
# tests/fuzz/corpus-run/<target>/ (not committed). A crash fails the run and
# leaves the crashing input under build/fuzz/crashes/; add it to the seed
# corpus as a regression test once fixed.
set -u
seconds=$1; shift
[ "$#" -gt 0 ] || { echo "fuzz: no targets given" >&2; exit 1; }
status=0
for bin in "$@"; do
    name=$(basename "$bin")
    seeds=tests/fuzz/corpus/$name
    work=tests/fuzz/corpus-run/$name
    if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
        echo "fuzz: $name has no seed corpus in $seeds" >&2
        status=1
        continue
    fi
    mkdir -p "$work" build/fuzz/crashes
    echo "== fuzz $name for ${seconds}s"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix=build/fuzz/crashes/"$name"- -print_final_stats=0 \
        "$work" "$seeds" >build/fuzz/"$name".log 2>&1; then
        tail -n 40 build/fuzz/"$name".log >&2
        echo "FAILED: fuzz $name" >&2
        status=1
    else
        grep -E '^(#[0-9]+.*DONE|Done)' build/fuzz/"$name".log | tail -n 1
    fi
done
exit $status
