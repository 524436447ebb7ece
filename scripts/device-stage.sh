#!/usr/bin/env bash
# Stages what a GPU machine without Rust needs into DIR (default .device, ignored by git through
# .git/info/exclude), for the device tool's `carry`:
#   DIR/quantforge, DIR/h2d_bench      release builds (CLI and the copy-bandwidth example)
#   DIR/engine_matvec                  the engine hand-over example (crates/quantforge/examples)
#   DIR/wheels/*.whl                   the Python wheel (maturin), when maturin is installed
#   DIR/tests/<name>                   the GPU test binaries (quant-cuda's gpu, quantforge-tests'
#                                      gpu_*), run from the repository root so that they find
#                                      tests/data
#   DIR/kernels/<format>/sm_XX.cubin   every kernel built ahead of time (cargo xtask build-kernels)
# On the GPU machine: `bash scripts/device-run.sh` (or the commands in it).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.device}
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qxF "/$DIR/" "$EXCLUDE" 2>/dev/null || echo "/$DIR/" >>"$EXCLUDE"
rm -rf "$DIR" && mkdir -p "$DIR/tests" "$DIR/kernels"

cargo build --release -p quantforge -p quant-cuda --example h2d_bench --example engine_matvec \
    --bin quantforge
T=${CARGO_TARGET_DIR:-target}
cp "$T/release/quantforge" "$T/release/examples/h2d_bench" "$T/release/examples/engine_matvec" "$DIR/"
# Release build of xtask: it shares the release build of the facade above.
cargo run -q --release -p xtask -- build-kernels --cuda-only --out "$DIR/kernels" >/dev/null
if python3 -m maturin --version >/dev/null 2>&1; then
    # The wheel ships the cubins (as scripts/test-python.sh builds it).
    kernels=crates/quantforge-py/python/quantforge/kernels
    rm -rf "$kernels" && mkdir -p "$kernels"
    (cd "$DIR/kernels" && find . -name 'sm_*.cubin' -exec cp --parents {} "$OLDPWD/$kernels" \;)
    mkdir -p "$DIR/wheels"
    python3 -m maturin build --release -q -m crates/quantforge-py/Cargo.toml -o "$DIR/wheels" \
        --compatibility manylinux_2_34
fi

tests=(gpu_formats gpu_golden gpu_faults gpu_fallback gpu_pipeline gpu_multi)
args=(-p quant-cuda --test gpu --test handover -p quantforge-tests)
for t in "${tests[@]}"; do args+=(--test "$t"); done
cargo test --no-run --message-format=json "${args[@]}" 2>/dev/null \
    | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/tests/" + m["target"]["name"])
        print("staged", m["target"]["name"])
' "$DIR"
# Debug info makes the binaries ~20x larger than the device tool carries.
strip "$DIR/quantforge" "$DIR/h2d_bench" "$DIR/engine_matvec" "$DIR"/tests/*
du -sh "$DIR"
