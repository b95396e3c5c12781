#!/usr/bin/env bash
# Runs the fuzz targets, one after another, each for SECONDS (default 60).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Every target starts from its committed seeds (fuzz/corpus/<target>/) plus
# what earlier runs found (fuzz/work/<target>/, not committed). A crash
# stops the script: libFuzzer prints the input and saves it under
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
# Needs cargo-fuzz (cargo install cargo-fuzz --locked --version 0.13.2) and
# a C++ compiler; the stable toolchain is enough with RUSTC_BOOTSTRAP=1.
#
# The targets are built without a sanitizer (`-s none`): the workspace
# forbids unsafe code, so AddressSanitizer would add its cost to every
# execution for memory errors the Rust code cannot make. Overflow checks
# and debug assertions are on.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
case "$seconds" in
    '' | *[!0-9]*)
        echo "error: SECONDS must be a whole number, e.g. bash fuzz/run.sh 60" >&2
        exit 2
        ;;
esac
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed; run: cargo install cargo-fuzz --locked --version 0.13.2" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building the fuzz targets"
cargo fuzz build -s none
summary=()
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "corpus/$target"
    log="work/$target.log"
    echo "== $target (${seconds} s)"
    if ! cargo fuzz run -s none "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "error: $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "work/$target" "corpus/$target" -type f | wc -l)
    summary+=("$(printf '%-18s %12s executions  %8s/s  corpus %s' "$target" "$execs" "$rate" "$corpus")")
done
echo
echo "== fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
