#!/usr/bin/env bash
# Runs every test of quantforge on this machine, installing first what the tests need:
# the kernel toolchains (Debian's hipcc for AMD, nvcc from PyPI for NVIDIA) and gguf-py.
# GPU tests run only when QUANTFORGE_GPU_TESTS=1 (and then fail if no GPU is present); without
# it they print a visible SKIPPED line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-toolchains.sh

# Every format's kernel must compile for AMD (HSACO) and NVIDIA (cubin): a kernel that does not
# compile for either vendor fails here.
cargo xtask build-kernels

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# No two modules of a crate import each other (docs/ARCHITECTURE.md, invariants).
python3 scripts/module-cycles.py
cargo test --workspace --no-fail-fast

# The GPU suites once more with their output shown, so that a skip (no QUANTFORGE_GPU_TESTS=1,
# as in CI) is visible rather than a silent pass.
cargo test -p quant-cuda --test gpu -p quantforge-tests --test gpu_formats --test gpu_golden --test gpu_faults \
    --test gpu_fallback --test gpu_pipeline --test gpu_multi -- --nocapture 2>&1 \
    | grep -E 'SKIPPED|^test |test result'
cargo test -p quant-rocm --test gpu -- --nocapture 2>&1 | grep -E 'SKIPPED|^test |test result'

# The Python package (quantforge-gguf): the wheel built and installed into a fresh virtual
# environment, then its pytest suite (GPU tests skipped visibly without QUANTFORGE_GPU_TESTS=1).
bash scripts/test-python.sh
