#!/usr/bin/env bash
# Whole-model load benchmark of docs/performance.md, for a machine with an NVIDIA GPU.
#
#   BIN=DIR [OLD=PATH] [MIXES="q4_k_m iq4_xs q8_0"] [REPS=10] [EXTRA="name|options;..."] \
#       bash scripts/bench-load.sh
#
# DIR holds a release build of `quantforge` and the cubins of `cargo xtask build-kernels` under
# DIR/kernels (so that no NVRTC compilation is timed); OLD is another `quantforge` binary to
# compare with (the build before a change). For each mix it writes a synthetic 7B model (MODEL_DIR,
# default /tmp) if missing and brings it into the page cache. Then, REPS times, it runs every
# configuration on every model, interleaved (each run a new process), and prints per model and
# configuration the median load time with the spread, and each median over the bare loop's:
#   bare    `load --bare-copy`: reads, pinned staging and host-to-device copies through the
#           same ring, no outputs, no kernels;
#   f16     `load --dtype f16`;   native  `load --dtype native`;   f16-mmap  f16, file mapped;
#   old-f16, old-native: the same with OLD;
#   EXTRA: more configurations, each a name, its `load` options and optionally a binary
#           (default DIR's): EXTRA="f16-s8|--dtype f16 --slot-mib 8;mid-f16|--dtype f16|/x/quantforge".
# The time is the load's own total (the report's, which excludes opening the device).
set -euo pipefail
BIN=${BIN:-.device}
OLD=${OLD:-}
MIXES=${MIXES:-"q4_k_m iq4_xs q8_0"}
REPS=${REPS:-10}
MODEL_DIR=${MODEL_DIR:-/tmp}
export QUANTFORGE_CUDA_KERNEL_DIR=$BIN/kernels
log=$(mktemp)

nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader
nproc
configs=("bare|$BIN/quantforge|--bare-copy" "f16|$BIN/quantforge|--dtype f16"
    "native|$BIN/quantforge|--dtype native" "f16-mmap|$BIN/quantforge|--dtype f16 --mmap")
if [ -n "$OLD" ]; then
    configs+=("old-f16|$OLD|--dtype f16" "old-native|$OLD|--dtype native")
fi
IFS=';' read -ra extra <<<"${EXTRA:-}"
for e in "${extra[@]}"; do
    IFS='|' read -r name opts bin <<<"$e"
    [ -n "$name" ] && configs+=("$name|${bin:-$BIN/quantforge}|$opts")
done
for mix in $MIXES; do
    model=$MODEL_DIR/qf-7b-$mix.gguf
    [ -f "$model" ] || "$BIN/quantforge" synth --arch llama --params 7b --mix "$mix" --quiet -o "$model"
    cat "$model" >/dev/null
done
for rep in $(seq "$REPS"); do
    for mix in $MIXES; do
        for c in "${configs[@]}"; do
            IFS='|' read -r name bin opts <<<"$c"
            # shellcheck disable=SC2086 # opts is a list of options
            out=$("$bin" load "$MODEL_DIR/qf-7b-$mix.gguf" --device cuda:0 --quiet --no-progress \
                $opts 2>&1) || { echo "$out"; exit 1; }
            ms=$(sed -nE 's/^total: .*, ([0-9.]+) ms, .*/\1/p' <<<"$out")
            echo "$rep $mix $name $ms" | tee -a "$log"
        done
    done
done
python3 - "$log" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, mix, name, ms = line.split()
    runs[(mix, name)].append(float(ms))
mixes = list(dict.fromkeys(m for m, _ in runs))
names = list(dict.fromkeys(n for _, n in runs))
print(f"{'model':<8} {'config':<11} {'median ms':>10} {'min':>8} {'max':>8} {'/ bare':>7}  (n)")
for m in mixes:
    bare = statistics.median(runs[(m, "bare")])
    for n in names:
        v = runs[(m, n)]
        med = statistics.median(v)
        print(f"{m:<8} {n:<11} {med:>10.1f} {min(v):>8.1f} {max(v):>8.1f} {med / bare:>7.3f}  ({len(v)})")
EOF
