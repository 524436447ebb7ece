#!/usr/bin/env bash
# Runs the GPU suites staged by scripts/device-stage.sh on a machine with an NVIDIA GPU, from
# the repository root, and `quantforge verify --device cuda:0` on every golden file, writing the
# log to ${OUT:-.}/gpu-suites.log. Extra arguments select test binaries (default: all of them).
# Exits non-zero if any suite or verify failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-.device}
export QUANTFORGE_GPU_TESTS=1 QUANTFORGE_CUDA_KERNEL_DIR=$DIR/kernels

suites() {
    local status=0 t f
    date
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    for t in ${@:-$(ls "$DIR/tests")}; do
        echo "== $t"
        "$DIR/tests/$t" --test-threads=1 2>&1 | grep -vE '^\s*$|^running [0-9]+ tests?$' || status=1
    done
    echo "== verify --device cuda:0"
    for f in tests/data/*.gguf; do
        out=$("$DIR/quantforge" verify "$f" --device cuda:0 2>&1) || { echo "FAILED: $f"; status=1; }
        echo "$f: $(tail -n 1 <<<"$out")"
    done
    return $status
}
suites "$@" 2>&1 | tee "${OUT:-.}/gpu-suites.log"
