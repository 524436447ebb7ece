#!/usr/bin/env bash
# Whole-model load benchmark of docs/performance.md, for a machine with an NVIDIA GPU.
#
#   BIN=DIR bash scripts/bench-load.sh [quantforge load options...]
#
# DIR holds release builds of `quantforge` and quant-cuda's `h2d_bench` example, and the
# cubins of `cargo xtask build-kernels` under DIR/kernels (so that no NVRTC compilation is
# timed). It writes a synthetic 7B model of the mix MIX (default q4_k_m; MODEL, default
# /tmp/qf-7b-$MIX.gguf) if
# missing, brings it into the page cache, measures the pinned and pageable host-to-device
# bandwidth, then times each configuration of CONFIGS (one per line, options of `load`),
# REPS times each, each a new process. Extra arguments are added to every configuration.
set -euo pipefail
BIN=${BIN:-.device}
MIX=${MIX:-q4_k_m}
MODEL=${MODEL:-/tmp/qf-7b-$MIX.gguf}
REPS=${REPS:-3}
CONFIGS=${CONFIGS:-"--dtype f16
--dtype native
--dtype f16 --strategy cpu-dequant"}
export QUANTFORGE_CUDA_KERNEL_DIR=$BIN/kernels

[ -f "$MODEL" ] || "$BIN/quantforge" synth --arch llama --params 7b --mix "$MIX" --quiet -o "$MODEL"
cat "$MODEL" >/dev/null
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader
nproc
[ -n "${SKIP_H2D:-}" ] || "$BIN/h2d_bench" --mib 512 --iters 10

while IFS= read -r config; do
    [ -n "$config" ] || continue
    for _ in $(seq "$REPS"); do
        # shellcheck disable=SC2086 # a configuration is a list of options
        out=$("$BIN/quantforge" load "$MODEL" --device cuda:0 --quiet --no-progress --mem $config "$@" 2>&1) || {
            echo "$out"
            exit 1
        }
        echo "$config $* | $(echo "$out" | grep -E '^total' | sed 's/.*produced, //') | $(echo "$out" | grep -oE 'peak minus file-backed [0-9.]+ MiB')"
    done
done <<<"$CONFIGS"
