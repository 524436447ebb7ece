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
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
grep -h 'SKIPPED' target/test.log | sort | uniq -c || true
