#!/usr/bin/env bash
# Instructions per `tools/call` in the gateway, counted by valgrind's
# callgrind: a figure that does not move with the machine's load, for
# comparing two builds (throughput on a shared VM needs many runs to show a
# 5 % change; this shows 1 % in one run).
#
#   cortex-bench/instructions.sh [BIN]
#
# BIN is the cortex-bench binary whose gateway is counted (default:
# target/release/cortex-bench). The bench itself drives it: the counted
# gateway runs as the "compare build" of one `call` run, under callgrind,
# and callgrind is asked for a dump every few seconds. Each dump that
# covers at least 500 calls is printed as instructions per call, in total
# and without the SHA-256 block function: valgrind does not emulate the
# SHA extensions, so aws-lc falls back to its vector code there, which
# costs about ten times the instructions it does on the real CPU.
#
# Needs valgrind (Debian: apt-get install valgrind) and python3.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$here/target/release/cortex-bench}")
for tool in valgrind callgrind_control python3; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is not installed (Debian: apt-get install valgrind python3)" >&2
        exit 2
    }
done
[ -x "$bin" ] || {
    echo "error: $bin is not an executable; build it with: cargo build --release -p cortex-bench" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/counted" <<EOF
#!/usr/bin/env bash
exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.%p "$bin" "\$@"
EOF
chmod +x "$work/counted"

"$bin" call --rounds 1 --warmup 2s --duration 10s --compare-bench-bin "$work/counted" \
    >"$work/bench.txt" 2>&1 &
bench=$!
while kill -0 "$bench" 2>/dev/null; do
    sleep 4
    callgrind_control --dump >/dev/null 2>&1 || true
done
# The bench exits 1 when a target of this run is missed (a busy machine
# misses the throughput ratio); the counts are still good if the run
# finished, which its comparison line shows.
wait "$bench" || grep -q "this build / compare build" "$work/bench.txt" || {
    echo "error: the bench run failed:" >&2
    cat "$work/bench.txt" >&2
    exit 1
}

python3 - "$work" <<'EOF'
import glob, re, sys

found = False
for path in sorted(glob.glob(sys.argv[1] + "/callgrind.*.*"), key=lambda p: int(p.rsplit(".", 1)[1])):
    names, callee, caller, calls, total, sha, after_calls = {}, None, None, 0, 0, 0, False
    for line in open(path):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "cfn":
                callee = ident
            else:
                caller = ident
            continue
        if line.startswith("totals:") or line.startswith("summary:"):
            total = int(line.split()[1])
        m = re.match(r"^calls=(\d+)", line)
        if m:
            if "ModernCall::read" in names.get(callee, ""):
                calls += int(m.group(1))
            after_calls = True
            continue
        if after_calls:
            # The inclusive cost of a call: count the SHA-256 block function
            # where something else calls it.
            block = "sha256_block_data_order"
            if block in names.get(callee, "") and block not in names.get(caller, ""):
                sha += int(line.split()[1])
            after_calls = False
    if calls >= 500:
        found = True
        print(f"{calls} calls: {total / calls:,.0f} instructions per call, "
              f"{(total - sha) / calls:,.0f} without SHA-256 blocks")
if not found:
    sys.exit("error: no dump covered 500 calls; is the machine very busy?")
EOF
