#!/usr/bin/env bash
# Downloads into DIR (default .device/wheels-hf, ignored by git through .git/info/exclude) the
# wheels a GPU machine that has only python3.12, torch, numpy and pytest needs for
# quantforge.transformers and scripts/bench-transformers.py: transformers, tokenizers,
# safetensors, huggingface_hub, accelerate (transformers' GGUF loading and device_map need it),
# gguf, and their dependencies, as manylinux x86_64 / pure-Python wheels for CPython 3.12. The
# versions are those the tests ran with (transformers 5.25.0). accelerate's torch is left out
# (the machine has torch; pip would fetch a CUDA build of gigabytes): accelerate is downloaded
# without dependencies and its others (psutil) named here.
#
# On the GPU machine (the quantforge wheel from .device/wheels):
#   python3 -m venv --system-site-packages /tmp/hfv
#   /tmp/hfv/bin/pip install --no-index --find-links .device/wheels-hf \
#       transformers==5.25.0 tokenizers safetensors huggingface_hub accelerate gguf
#   /tmp/hfv/bin/pip install --no-index --no-deps .device/wheels/quantforge_gguf-*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.device/wheels-hf}
if [[ $DIR != /* ]]; then
    # A folder inside the repository: its top folder is ignored, as scripts/device-stage.sh does.
    EXCLUDE=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$EXCLUDE")"
    top=${DIR%%/*}
    grep -qxF "/$top/" "$EXCLUDE" 2>/dev/null || echo "/$top/" >>"$EXCLUDE"
fi
mkdir -p "$DIR"
PIP=${PIP:-python3 -m pip}
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
        --platform manylinux_2_34_x86_64 --platform linux_x86_64)

$PIP download -q -d "$DIR" "${TARGET[@]}" \
    'transformers==5.25.0' 'tokenizers==0.23.3' 'safetensors==0.8.0' 'huggingface_hub==2.5.0' \
    'gguf==0.19.0' 'psutil'
$PIP download -q -d "$DIR" "${TARGET[@]}" --no-deps 'accelerate==1.16.0'
# Nothing of torch's: the machine's own torch must stay the one imported.
if ls "$DIR" | grep -qiE '^(torch|nvidia_)'; then
    echo "error: a torch or nvidia wheel was downloaded into $DIR" >&2
    exit 1
fi
ls "$DIR"
du -sh "$DIR"
