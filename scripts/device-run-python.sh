#!/usr/bin/env bash
# Issue 11's checks on a machine with an NVIDIA GPU and PyTorch but no Rust and no network, from
# the repository root, after scripts/device-stage.sh (DIR, default .device) and with gguf-py,
# pytest and their dependencies as wheels in WHEELS (default .device-py):
#   the engine example (DIR/engine_matvec), the Rust hand-over suite (DIR/tests/handover), the
#   Python wheel installed into the machine's python3 and its whole pytest suite with
#   QUANTFORGE_GPU_TESTS=1. Writes ${OUT:-.}/python-gpu.log; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-.device}
WHEELS=${WHEELS:-.device-py}
export QUANTFORGE_GPU_TESTS=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONDONTWRITEBYTECODE=1

run() {
    local status=0
    date
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
    ldd --version | head -n 1
    python3 -m pip install -q --no-index --no-deps --find-links "$WHEELS" \
        gguf tqdm pyyaml pytest iniconfig pluggy packaging pygments 2>&1 | tail -n 3
    python3 -m pip install -q --no-index --no-deps --force-reinstall "$DIR"/wheels/*.whl || status=1
    echo "== engine_matvec"
    "$DIR/engine_matvec" || status=1
    echo "== handover"
    "$DIR/tests/handover" --test-threads=1 2>&1 | grep -vE '^\s*$|^running [0-9]+ tests?$' || status=1
    echo "== pytest"
    (cd crates/quantforge-py && python3 -m pytest -rs -p no:cacheprovider tests) || status=1
    return $status
}
run 2>&1 | tee "${OUT:-.}/python-gpu.log"
exit "${PIPESTATUS[0]}"
