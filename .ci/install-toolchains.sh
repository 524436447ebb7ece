#!/usr/bin/env bash
# Installs the GPU toolchains quantforge builds kernels with, on a fresh Debian machine with no
# GPU (CI runs it as root):
#   * AMD: Debian's HIP (ROCm 5.2): hipcc, libamdhip64-dev (headers + libamdhip64 for
#     hip-runtime-sys), rocm-device-libs (device bitcode hipcc links into HSACO);
#   * NVIDIA: nvcc from PyPI, pinned to 13.0 together with nvidia-nvvm and nvidia-cuda-crt
#     (nvcc 13.0 alone drags nvvm/crt 13.5 in, whose PTX the 13.0 ptxas rejects), and
#     cuobjdump (nvidia-cuda-cuobjdump, with the nvdisasm it runs for -sass), which build-kernels
#     runs on every cubin to prove it holds no fused multiply-add. PyPI has no 13.0 cuobjdump or
#     nvdisasm (their first wheels are 13.2), so both are pinned to 13.2: they only read cubins,
#     and a newer disassembler reads older ones;
#   * gguf (gguf-py), used by the tests to write reference files.
# hipcc's LLVM (llvm-15 on Debian) brings llvm-objdump, which build-kernels runs on every HSACO
# for the same proof.
# Idempotent and non-interactive: run it as often as you like.
set -euo pipefail

CUDA_PIN="13.0.*"
# The oldest cuobjdump and nvdisasm on PyPI (see above).
CUOBJDUMP_PIN="13.2.*"

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-toolchains.sh: run as root (or install sudo)" >&2; exit 1
    fi
fi

# ---- AMD: HIP from Debian -------------------------------------------------------------------
# hipcc pulls in clang-15, lld-15 and llvm-15 itself.
apt_pkgs=(hipcc libamdhip64-dev rocm-device-libs)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
else
    echo "==> apt packages already installed: ${apt_pkgs[*]}"
fi

# ---- NVIDIA: nvcc from PyPI, all three pinned to the same release ----------------------------
PY="${PYTHON:-python3}"
if ! $PY -m pip --version >/dev/null 2>&1; then
    echo "==> apt-get install python3-pip"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3-pip
fi
# Debian's own python3 refuses pip installs without this (PEP 668); other pythons ignore it.
export PIP_BREAK_SYSTEM_PACKAGES=1
echo "==> pip install nvcc ${CUDA_PIN} (+ nvvm, crt), cuobjdump + nvdisasm ${CUOBJDUMP_PIN} and gguf with $($PY --version 2>&1)"
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    "nvidia-cuda-nvcc==${CUDA_PIN}" \
    "nvidia-nvvm==${CUDA_PIN}" \
    "nvidia-cuda-crt==${CUDA_PIN}" \
    "nvidia-cuda-cuobjdump==${CUOBJDUMP_PIN}" \
    "nvidia-cuda-nvdisasm==${CUOBJDUMP_PIN}" \
    gguf

# ---- Report ---------------------------------------------------------------------------------
echo "==> hipcc: $(command -v hipcc || echo MISSING)"
hipcc --version 2>/dev/null | head -n 3 || true
NVCC="$(command -v nvcc || true)"
if [ -z "$NVCC" ]; then
    NVCC="$($PY - <<'PY'
import os
import nvidia
for root in nvidia.__path__:
    for sub in ("cu13", "cuda_nvcc"):
        p = os.path.join(root, sub, "bin", "nvcc")
        if os.path.isfile(p):
            print(p)
            raise SystemExit
PY
)"
fi
if [ -z "$NVCC" ] || [ ! -x "$NVCC" ]; then
    echo "install-toolchains.sh: nvcc not found after pip install" >&2
    exit 1
fi
echo "==> nvcc: $NVCC"
"$NVCC" --version | tail -n 2
echo "==> gguf: $($PY -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')"
