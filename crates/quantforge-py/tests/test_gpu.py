"""GPU tests through PyTorch on ``cuda:0``: the golden comparison via ``torch.from_dlpack``
(f32 equal to the CPU values, which test_golden_cpu.py holds to ggml's manifests, bit for bit
with NaN for NaN; f16 and bf16 equal to those values rounded), stream ordering (the consumer's
stream, no explicit synchronisation), device memory back to its start after the tensors are
dropped, and CuPy if it is installed.

Run with ``QUANTFORGE_GPU_TESTS=1``; then a missing torch or CUDA device is a failure. Without
the variable every test here is skipped, visibly (``pytest -rs`` shows the reason).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

import quantforge
from quantforge import safe_open

from conftest import data_dir, manifest, sha256_f32, write_gguf

GPU_TESTS = os.environ.get("QUANTFORGE_GPU_TESTS") == "1"
pytestmark = pytest.mark.skipif(
    not GPU_TESTS,
    reason="GPU tests run only with QUANTFORGE_GPU_TESTS=1 (needs torch and a CUDA device)",
)

DEVICE = "cuda:0"
MODEL = data_dir() / "tiny-llama-q4_k_m.gguf"


def cpu_reference(path: Path) -> dict:
    """f32 values on the CPU, checked against ggml's manifest first."""
    expected = manifest(path)
    with safe_open(path, framework="numpy", device="cpu") as f:
        ref = {n: f.get_tensor(n) for n in f.keys()}
    for n, v in ref.items():
        assert sha256_f32(v) == expected[n].sha256, f"{path.name}: {n}: CPU values are not ggml's"
    return ref


def same_bits_or_both_nan(torch, got, want) -> bool:
    """Bit-equal, or NaN where the other is NaN (a GPU's NaN payloads are not held to x86's)."""
    ints = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[got.dtype]
    nan = torch.isnan(want)
    if not torch.equal(torch.isnan(got), nan):
        return False
    return torch.equal(got.view(ints)[~nan], want.view(ints)[~nan])


def test_golden_files_through_from_dlpack(torch, golden: Path) -> None:
    ref = cpu_reference(golden)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        name = str(dtype).replace("torch.", "")
        with safe_open(golden, framework="pt", device=DEVICE, dtype=dtype) as f:
            for n, r in ref.items():
                t = f.get_tensor(n)
                assert t.is_cuda and t.device.index == 0, n
                assert t.dtype == dtype and tuple(t.shape) == r.shape, (n, name)
                want = torch.from_numpy(r).to(dtype)  # round to nearest-even on the CPU
                assert same_bits_or_both_nan(torch, t.cpu(), want), f"{golden.name}: {n} {name}"


def test_every_kernel_runs_on_the_gpu(torch, golden: Path) -> None:
    """No tensor of a golden file falls back to the CPU (the bits would be the same, so the
    comparisons above cannot tell): every quantized tensor is expanded by its kernel, from the
    cubins the wheel ships on an sm_80/sm_90-generation device (QUANTFORGE_CUDA_KERNEL_DIR
    unset) or NVRTC."""
    assert "QUANTFORGE_CUDA_KERNEL_DIR" not in os.environ
    with quantforge.File(golden, device=DEVICE, dtype="f16") as f:
        by_name = dict(f.load_all())
        for n in f.keys():
            path = f.get(n).load_path
            assert by_name[n].load_path == path, n
            if f.tensor_type(n) in ("F32", "F16", "BF16", "F64"):
                assert path == "host", (n, path)
            else:
                assert path == "kernel", (n, f.tensor_type(n), path)


def test_native_blocks_on_the_gpu(torch, golden: Path) -> None:
    with safe_open(golden, framework="numpy", device="cpu") as cpu, safe_open(
        golden, framework="pt", device=DEVICE
    ) as gpu:
        for n in cpu.keys():
            want, ty = cpu.get_native(n)
            got, ty_gpu = gpu.get_native(n)
            assert ty == ty_gpu and got.is_cuda and got.dtype == torch.uint8
            assert np.array_equal(got.cpu().numpy(), want), n


def test_load_file_pipelined(torch) -> None:
    import quantforge.torch

    ref = cpu_reference(MODEL)
    for dtype in (torch.float32, torch.float16):
        state = quantforge.torch.load_file(MODEL, device=DEVICE, dtype=dtype, progress=True)
        assert list(state) == list(ref)
        for n, t in state.items():
            assert t.is_cuda and t.dtype == dtype
            assert same_bits_or_both_nan(torch, t.cpu(), torch.from_numpy(ref[n]).to(dtype)), n


def test_consumer_stream_waits_for_the_load(torch) -> None:
    """Tensors taken on a side stream and used there at once, with no synchronisation of ours:
    ``torch.from_dlpack`` passes the current stream to ``__dlpack__``, which makes it wait for
    the load. Repeated so that a missing wait has chances to show.

    This is the consumer's view; it cannot prove the wait, since ``load_all`` returns after its
    last kernel. The proof that ``make_stream_wait`` orders another stream (and that without it
    the other stream reads the poison) is quant-cuda's ``tests/handover.rs``, behind a spin
    kernel."""
    ref = cpu_reference(MODEL)
    side = torch.cuda.Stream()
    for _ in range(5):
        with torch.cuda.stream(side):
            f = quantforge.File(MODEL, device=DEVICE, dtype="f32")
            loaded = f.load_all()
            # Queued on `side` right after the hand-over: copies made on the consumer's stream.
            copies = {n: torch.from_dlpack(t).clone() for n, t in loaded}
            # The same through an explicit stream pointer and a raw capsule.
            n0, t0 = loaded[0]
            capsule = t0.__dlpack__(stream=side.cuda_stream)
            raw = torch.utils.dlpack.from_dlpack(capsule).clone()
        side.synchronize()  # wait for our own copies only, before reading them on the host
        for n, c in copies.items():
            assert same_bits_or_both_nan(torch, c.cpu(), torch.from_numpy(ref[n])), n
        assert same_bits_or_both_nan(torch, raw.cpu(), torch.from_numpy(ref[n0]))
        del copies, loaded, raw, capsule
        f.close()


def test_device_memory_is_released(torch, tmp_path: Path) -> None:
    """Device memory goes back to where it was (torch.cuda.mem_get_info) once the torch tensors
    are dropped, and quantforge.live_bytes() counts nothing on the device any more."""
    import quantforge.torch

    path = tmp_path / "big.gguf"
    rng = np.random.default_rng(1)
    write_gguf(
        path, {f"w{i}": rng.standard_normal((2048, 4096)).astype(np.float16) for i in range(4)}
    )

    def settle() -> int:
        gc.collect()
        torch.cuda.synchronize()
        return torch.cuda.mem_get_info()[0]

    # Warm up: the backend and its kernels are made once per process.
    state = quantforge.torch.load_file(MODEL, device=DEVICE)
    del state
    free0, live0 = settle(), quantforge.live_bytes()[1]

    state = quantforge.torch.load_file(path, device=DEVICE, dtype=torch.float32)
    held = sum(t.numel() * t.element_size() for t in state.values())
    assert held == 4 * 2048 * 4096 * 4
    assert quantforge.live_bytes()[1] - live0 >= held
    assert free0 - settle() >= held
    del state
    free1 = settle()
    assert quantforge.live_bytes()[1] == live0
    assert abs(free1 - free0) <= 8 << 20, f"{(free0 - free1) / 2**20:.1f} MiB not given back"


def test_cupy_takes_tensors(torch) -> None:
    cupy = pytest.importorskip("cupy", reason="cupy is not installed")
    ref = cpu_reference(MODEL)
    with safe_open(MODEL, framework="dlpack", device=DEVICE) as f:
        for n in f.keys():
            a = cupy.from_dlpack(f.get_tensor(n))
            assert np.array_equal(cupy.asnumpy(a).view(np.uint32), ref[n].view(np.uint32)), n


def test_jax_takes_tensors(torch) -> None:
    jax = pytest.importorskip("jax", reason="jax is not installed")
    ref = cpu_reference(MODEL)
    with safe_open(MODEL, framework="dlpack", device=DEVICE) as f:
        for n in f.keys():
            a = jax.dlpack.from_dlpack(f.get_tensor(n))
            assert np.array_equal(np.asarray(a).view(np.uint32), ref[n].view(np.uint32)), n


def test_dlpack_device_and_refusals_on_the_gpu(torch) -> None:
    with quantforge.File(MODEL, device=DEVICE) as f:
        t = f.get("token_embd.weight")
    assert t.device == DEVICE and t.__dlpack_device__() == (2, 0)
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(1, 0))
    with pytest.raises(ValueError):
        t.__dlpack__(stream=0)  # ambiguous for CUDA: the protocol forbids it
    t.__dlpack__(stream=-1)  # no ordering asked for
    with pytest.raises(ValueError, match="numpy"):
        safe_open(MODEL, framework="numpy", device=DEVICE)
