#!/usr/bin/env bash
# Issue 23's benchmark, for a machine with an NVIDIA GPU: every kernel's compute ceiling
# (`quantforge bench --resident`: data held in L2, many launches per timed run) and the ordinary
# streaming bench, for two builds interleaved in one run, then a side-by-side table.
#
#   bash scripts/bench-resident.sh OLD NEW
#
# OLD and NEW are `quantforge` binaries, or folders holding one (as scripts/device-stage.sh
# stages them). Each runs with QUANTFORGE_CUDA_KERNEL_DIR set to the `kernels` folder next to
# its binary when there is one, so that old and new cubins are what is compared; OLD_KERNELS /
# NEW_KERNELS name another folder, or, set empty, leave the variable unset (NVRTC builds the
# binary's own sources).
#
# Formats are taken one at a time (every quantized format the NEW binary registers, or
# FORMATS="q4_0 iq1_s ..."), each as four processes: resident old and new, then ordinary old and
# new, old and new swapping places from one format to the next so that drift of the card falls
# on both. Every process times f32, f16 and bf16 and measures its own copy.
#
# Environment:
#   DEVICE         device to time (cuda:0)
#   MODES          "resident ordinary" (default), or one of them
#   RESIDENT_ARGS  more options of `bench --resident` ("--resident-mb 16 --launches 400")
#   BENCH_ARGS     more options of the ordinary bench ("--iters 30")
#   BAR            GB/s fed every resident row must reach (3535: 85 % of an H200's copy)
#   OUT            folder for the raw JSON, the processes' stderr and table.txt (a new temp dir)
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
DEVICE=${DEVICE:-cuda:0}
MODES=${MODES:-resident ordinary}
BAR=${BAR:-3535}
OUT=${OUT:-$(mktemp -d /tmp/bench-resident.XXXXXX)}
mkdir -p "$OUT"

binary() { if [ -d "$1" ]; then echo "$1/quantforge"; else echo "$1"; fi; }
OLD=$(binary "$1")
NEW=$(binary "$2")
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
OLD_KERNELS=${OLD_KERNELS-$(dirname "$OLD")/kernels}
NEW_KERNELS=${NEW_KERNELS-$(dirname "$NEW")/kernels}

# One bench process: run WHICH MODE FORMAT writes $OUT/MODE-WHICH-FORMAT.json.
run() {
    local which=$1 mode=$2 format=$3 bin kernels args
    if [ "$which" = old ]; then bin=$OLD kernels=$OLD_KERNELS; else bin=$NEW kernels=$NEW_KERNELS; fi
    if [ "$mode" = resident ]; then args="--resident ${RESIDENT_ARGS:-}"; else args=${BENCH_ARGS:-}; fi
    local json=$OUT/$mode-$which-$format.json
    # shellcheck disable=SC2086 # the extra options are a list
    if [ -n "$kernels" ] && [ -d "$kernels" ]; then
        QUANTFORGE_CUDA_KERNEL_DIR=$kernels "$bin" bench --device "$DEVICE" --format "$format" --json $args \
            >"$json" 2>>"$OUT/stderr-$which.log"
    else
        env -u QUANTFORGE_CUDA_KERNEL_DIR "$bin" bench --device "$DEVICE" --format "$format" --json $args \
            >"$json" 2>>"$OUT/stderr-$which.log"
    fi || { echo "FAILED: $bin bench --format $format $args" >&2; tail -n 5 "$OUT/stderr-$which.log" >&2; exit 1; }
}

if [ -z "${FORMATS:-}" ]; then
    # The registry's quantized formats, as the CPU bench lists them (a few microseconds each).
    FORMATS=$("$NEW" bench --device cpu --elements 256 --iters 1 --json 2>/dev/null |
        python3 -c 'import json, sys
seen = []
for r in json.load(sys.stdin):
    if r["format"] not in seen:
        seen.append(r["format"])
print(" ".join(f.lower() for f in seen))')
fi

{
    date -u '+%Y-%m-%d %H:%M UTC'
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader || true
    echo "old: $OLD (kernels: ${OLD_KERNELS:-NVRTC})"
    echo "new: $NEW (kernels: ${NEW_KERNELS:-NVRTC})"
    echo "resident: ${RESIDENT_ARGS:-defaults}; ordinary: ${BENCH_ARGS:-defaults}; bar $BAR GB/s fed"
} | tee "$OUT/header.txt"

flip=0
for format in $FORMATS; do
    if [ $flip = 0 ]; then order="old new"; else order="new old"; fi
    flip=$((1 - flip))
    for mode in $MODES; do
        for which in $order; do run "$which" "$mode" "$format"; done
    done
    echo "$format done" >&2
done

python3 - "$OUT" "$BAR" "$FORMATS" <<'PY' | tee "$OUT/table.txt"
import json, os, statistics, sys

out, bar, formats = sys.argv[1], float(sys.argv[2]), sys.argv[3].split()

def load(mode, which, fmt):
    path = os.path.join(out, f"{mode}-{which}-{fmt}.json")
    return json.load(open(path)) if os.path.exists(path) else None

def fmt_num(x, spec=".1f"):
    return "-" if x is None else format(x, spec)

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

res, ordi = {}, {}
res_copy = {"old": [], "new": []}
ord_copy = {"old": [], "new": []}
for fmt in formats:
    for which in ("old", "new"):
        r = load("resident", which, fmt)
        if r:
            res_copy[which].append(r["copy"]["gbytes_per_s"])
            for row in r["rows"]:
                res[(row["format"], row["dtype"], which)] = row
        o = load("ordinary", which, fmt)
        if o:
            ord_copy[which].append(o[0]["copy_gbytes_per_s"])
            for row in o:
                ordi[(row["format"], row["dtype"], which)] = row

keys = []
for (f, d, _w) in list(res) + list(ordi):
    if (f, d) not in keys:
        keys.append((f, d))

print()
print(f"{'format':<8} {'dtype':<5} | {'resident Gelem/s':>17} {'fed GB/s old':>12} {'fed GB/s new':>12}"
      f" {'new/old':>7} {'bar':>4} | {'ordinary GB/s':>15} {'% copy old':>10} {'% copy new':>10} {'new/old':>7}")
below, slower = [], []
for f, d in keys:
    ro, rn = res.get((f, d, "old")), res.get((f, d, "new"))
    oo, on = ordi.get((f, d, "old")), ordi.get((f, d, "new"))
    g = lambda r, k: None if r is None else r[k]
    lb = lambda r: "*" if r and r["launch_bound"] else " "
    fed_n = g(rn, "fed_gbytes_per_s")
    ok = "" if fed_n is None else ("ok" if fed_n >= bar else "LOW")
    if ok == "LOW":
        below.append(f"{f}->{d} {fed_n:.0f}")
    pct = lambda r: None if r is None else 100 * r["gbytes_per_s"] / r["copy_gbytes_per_s"]
    p_o, p_n = pct(oo), pct(on)
    r_ord = ratio(p_n, p_o)
    if r_ord is not None and r_ord < 0.99:
        slower.append(f"{f}->{d} {p_o:.1f}% -> {p_n:.1f}%")
    gel = f"{fmt_num(g(ro, 'gelem_per_s'), '.0f')}/{fmt_num(g(rn, 'gelem_per_s'), '.0f')}"
    gbs = f"{fmt_num(g(oo, 'gbytes_per_s'), '.0f')}/{fmt_num(g(on, 'gbytes_per_s'), '.0f')}"
    print(f"{f:<8} {d:<5} | {gel:>17} {fmt_num(g(ro, 'fed_gbytes_per_s')):>11}{lb(ro)}"
          f" {fmt_num(fed_n):>11}{lb(rn)} {fmt_num(ratio(fed_n, g(ro, 'fed_gbytes_per_s')), '.3f'):>7}"
          f" {ok:>4} | {gbs:>15} {fmt_num(p_o):>10} {fmt_num(p_n):>10} {fmt_num(r_ord, '.3f'):>7}")

print()
med = lambda v: f"{statistics.median(v):.1f} GB/s (median of {len(v)} processes)" if v else "-"
print(f"resident copy: old {med(res_copy['old'])}, new {med(res_copy['new'])}")
print(f"ordinary copy: old {med(ord_copy['old'])}, new {med(ord_copy['new'])}")
print("Gelem/s and ordinary GB/s columns are old/new; '*': launch-bound (the host issued launches"
      " about as slowly as the device ran them: the figure is a floor); the ordinary new/old is the"
      " ratio of the percentages of each process's own copy.")
print(f"resident rows below {bar:.0f} GB/s fed (new): {len(below)}" + ("" if not below else ": " + ", ".join(below)))
print(f"ordinary rows more than 1 % slower of copy (new vs old): {len(slower)}"
      + ("" if not slower else ": " + ", ".join(slower)))
print(f"raw JSON: {out}")
PY
