#!/usr/bin/env bash
# Builds target/release/candle-interop (several minutes: candle's CUDA kernels). There being no
# GPU here, CUDA_COMPUTE_CAP says what to compile them for (default 90, the H200).
set -euo pipefail
cd "$(dirname "$0")"
CANDLE=0.11.1
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# nvcc for candle's kernels: a CUDA toolkit's from PATH, else the PyPI wheel (13.0) that
# .ci/install-toolchains.sh installs. The wheel comes without CCCL (<nv/target>) and next to
# runtime headers of another release, which CCCL refuses; the 13.0 wheels of both go into
# vendor/cuda (pip --target, nothing installed system-wide) and a wrapper puts them first.
if command -v nvcc >/dev/null 2>&1; then
    CUDA_LIB=$(dirname "$(dirname "$(command -v nvcc)")")/lib64
else
    NVCC=$(python3 -c '
import os, nvidia
for root in nvidia.__path__:
    p = os.path.join(root, "cu13", "bin", "nvcc")
    if os.path.isfile(p):
        print(p)
' 2>/dev/null || true)
    [ -n "$NVCC" ] || { echo "build.sh: no nvcc (run .ci/install-toolchains.sh)" >&2; exit 1; }
    VER=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    if [ ! -d vendor/cuda/nvidia ]; then
        python3 -m pip install -q --disable-pip-version-check --no-deps --target vendor/cuda \
            "nvidia-cuda-runtime==$VER.*" "nvidia-cuda-cccl==$VER.*"
    fi
    INC="$PWD/vendor/cuda/nvidia/cu13/include"
    printf '#!/bin/sh\nexec "%s" -I"%s" -isystem "%s/cccl" "$@"\n' "$NVCC" "$INC" "$INC" >vendor/nvcc
    chmod +x vendor/nvcc
    export NVCC="$PWD/vendor/nvcc" PATH="$(dirname "$NVCC"):$PATH"
    CUDA_LIB="$PWD/vendor/cuda/nvidia/cu13/lib"
fi

# candle-core with quantforge's cudarc features (README.md says why).
if [ ! -f vendor/candle-core/Cargo.toml ]; then
    cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
    crate=$(ls "$cache"/*/candle-core-$CANDLE.crate 2>/dev/null | head -n 1 || true)
    if [ -z "$crate" ]; then
        tmp=$(mktemp -d)
        printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncandle-core = "=%s"\n' \
            "$CANDLE" >"$tmp/Cargo.toml"
        mkdir "$tmp/src" && touch "$tmp/src/lib.rs"
        cargo fetch -q --manifest-path "$tmp/Cargo.toml"
        rm -rf "$tmp"
        crate=$(ls "$cache"/*/candle-core-$CANDLE.crate | head -n 1)
    fi
    mkdir -p vendor
    tar xzf "$crate" -C vendor
    mv "vendor/candle-core-$CANDLE" vendor/candle-core
    sed -i 's/"dynamic-linking",/"dynamic-loading",/; s/"cuda-version-from-build-system",/"cuda-13000",/' \
        vendor/candle-core/Cargo.toml
    grep -q '"dynamic-loading"' vendor/candle-core/Cargo.toml \
        && grep -q '"cuda-13000"' vendor/candle-core/Cargo.toml \
        || { echo "build.sh: candle-core's cudarc features were not where expected" >&2; exit 1; }
fi

# candle-kernels links -lcudart; the wheel has only libcudart.so.13.
if [ ! -e "$CUDA_LIB/libcudart.so" ]; then
    mkdir -p cudalib
    ln -sf "$(ls "$CUDA_LIB"/libcudart.so.* | head -n 1)" cudalib/libcudart.so
    export RUSTFLAGS="${RUSTFLAGS:-} -L $PWD/cudalib"
fi

cargo build --release "$@"
echo "built $PWD/target/release/candle-interop"
