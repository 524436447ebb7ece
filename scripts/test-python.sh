#!/usr/bin/env bash
# The Python package (crates/quantforge-py, distribution quantforge-gguf): builds the abi3 wheel
# with maturin into target/wheels (the workspace's target dir, so the Rust build is shared),
# installs it into a FRESH virtual environment with pytest, numpy and gguf-py, and runs the
# pytest suite there. GPU tests (tests/test_gpu.py) run only with QUANTFORGE_GPU_TESTS=1 and are
# skipped visibly otherwise (pytest -rs).
#
# The same wheel installs on any x86_64 Linux with glibc >= 2.34 and CPython >= 3.9
# (manylinux_2_34, abi3).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
# Debian's own python3 refuses pip installs without this (PEP 668); other pythons ignore it.
export PIP_BREAK_SYSTEM_PACKAGES=1
PIP=(-m pip install -q --disable-pip-version-check --root-user-action=ignore)

echo "==> pip install maturin"
$PY "${PIP[@]}" 'maturin>=1.9,<2'

# The wheel ships the NVIDIA cubins (sm_80, sm_90; about 1 MB), so that kernels need no NVRTC
# on those devices' generations: the ones `cargo xtask build-kernels` left in target/kernels (as
# scripts/test.sh runs it first), else built here.
kernels=crates/quantforge-py/python/quantforge/kernels
rm -rf "$kernels" && mkdir -p "$kernels"
if compgen -G 'target/kernels/*/sm_*.cubin' >/dev/null; then
    (cd target/kernels && find . -name 'sm_*.cubin' -exec cp --parents {} "$OLDPWD/$kernels" \;)
else
    cargo xtask build-kernels --cuda-only --out "$kernels"
fi
echo "==> $(find "$kernels" -name '*.cubin' | wc -l) cubins in the wheel"

echo "==> maturin build (release, manylinux_2_34, abi3)"
rm -f target/wheels/quantforge_gguf-*.whl
$PY -m maturin build --release -m crates/quantforge-py/Cargo.toml -o target/wheels \
    --compatibility manylinux_2_34
wheel="$(ls target/wheels/quantforge_gguf-*.whl)"
echo "==> built $wheel"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
venv_opts=()
if [ "${QUANTFORGE_GPU_TESTS:-}" = 1 ]; then
    # The GPU tests need the machine's own torch (built with CUDA): the venv sees its packages;
    # the wheel installed into the venv still comes first.
    venv_opts=(--system-site-packages)
fi
echo "==> fresh virtual environment in $tmp/venv ${venv_opts[*]}"
$PY -m venv "${venv_opts[@]}" "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" pytest numpy 'gguf>=0.19,<0.20'
if [ "${QUANTFORGE_GPU_TESTS:-}" != 1 ]; then
    # The optional extras' real libraries, for the torch-op and diffusers tests: PyPI's torch
    # (it runs on the CPU; about 5 GB with its CUDA libraries, a minute or two to install),
    # diffusers and accelerate (diffusers loads quantized models only with it), and the
    # transformers release quantforge.transformers is tested with (its GGUF internals move
    # between releases).
    echo "==> pip install torch diffusers accelerate transformers"
    "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check 'torch>=2.4' \
        'diffusers>=0.35,<0.43' accelerate 'transformers==5.25.*'
fi
# The package must come from the wheel, not from the source tree.
(cd "$tmp" && "$tmp/venv/bin/python" -c 'import quantforge, sys; assert "site-packages" in quantforge.__file__, quantforge.__file__; print("==> quantforge", quantforge.__version__, "from", quantforge.__file__)')

echo "==> pytest crates/quantforge-py/tests"
# No bytecode or cache files in the source tree.
PYTHONDONTWRITEBYTECODE=1 "$tmp/venv/bin/python" -m pytest -rs -p no:cacheprovider crates/quantforge-py/tests
