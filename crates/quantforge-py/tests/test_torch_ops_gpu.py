"""``quantforge.torch.dequantize`` on a CUDA device: every golden tensor in f32, f16 and bf16
against ggml's values, 10^6 random blocks per format (special scales included) against the CPU
path, the op on a non-default stream without a synchronisation, a CUDA graph capture and
replay, and device memory back to its start after 1,000 calls with ``out``.

Run with ``QUANTFORGE_GPU_TESTS=1``; then a missing torch or CUDA device is a failure. Without
the variable every test here is skipped, visibly."""

from __future__ import annotations

import os

import pytest

from conftest import golden_files, same_bits

GPU_TESTS = os.environ.get("QUANTFORGE_GPU_TESTS") == "1"
pytestmark = pytest.mark.skipif(
    not GPU_TESTS,
    reason="GPU tests run only with QUANTFORGE_GPU_TESTS=1 (needs torch and a CUDA device)",
)


@pytest.fixture(scope="module")
def qt(torch):
    import quantforge.torch as qt

    return qt


def quantized_types(qt):
    from quantforge import _native

    out = []
    for tid in range(64):
        try:
            if _native.ggml_type_info(tid)[4] == "quantized":
                out.append(qt.type_info(tid)[1])
        except ValueError:
            continue
    return out


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_tensors_on_cuda_in_every_dtype(torch, qt, path) -> None:
    from quantforge import safe_open

    with safe_open(path, framework="pt", device="cpu", dtype="native") as f:
        for name in f.keys():
            blocks, ty = f.get_native(name)
            shape = f.get_tensor_shape(name)
            want32 = qt.dequantize(blocks, ty, shape, torch.float32)
            dev = blocks.to("cuda:0")
            for dt in (torch.float32, torch.float16, torch.bfloat16):
                got = qt.dequantize(dev, ty, shape, dt).cpu()
                assert same_bits(torch, got, want32.to(dt)), f"{path.name}: {name} ({ty}) {dt}"


def test_a_million_random_blocks_per_format_with_special_scales(torch, qt) -> None:
    from quantforge import _native

    specials = [None, 0.0, -0.0, float("inf"), float("nan"), 2.0**-24, 65504.0]
    for name in quantized_types(qt):
        tid, _, be, bb = qt.type_info(name)
        per = (1 << 20) // len(specials) + 1
        raw = b"".join(_native._random_blocks(tid, per, 17 + i, s) for i, s in enumerate(specials))
        blocks = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        n = len(raw) // bb * be
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            cpu = qt.dequantize(blocks, name, (n,), dt)
            gpu = qt.dequantize(blocks.cuda(), name, (n,), dt).cpu()
            assert same_bits(torch, gpu, cpu), f"{name} {dt}"


def test_on_a_side_stream_without_a_synchronisation(torch, qt) -> None:
    from quantforge import _native

    tid, _, be, bb = qt.type_info("Q4_K")
    blocks = torch.frombuffer(bytearray(_native._random_blocks(tid, 4096, 5)), dtype=torch.uint8).cuda()
    want = qt.dequantize(blocks, "Q4_K", (4096 * be,), torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # keep the stream busy: an unordered read would see zeros
        out = torch.zeros(4096 * be, dtype=torch.float16, device="cuda")
        qt.dequantize(blocks, "Q4_K", (4096 * be,), out=out)
        doubled = out * 2
    torch.cuda.current_stream().wait_stream(side)
    assert same_bits(torch, doubled.cpu(), (want * 2).cpu())


def test_a_cuda_graph_captures_and_replays_the_op(torch, qt) -> None:
    from quantforge import _native

    tid, _, be, bb = qt.type_info("IQ2_XS")
    static = torch.frombuffer(bytearray(_native._random_blocks(tid, 1024, 9)), dtype=torch.uint8).cuda()
    n = 1024 * be
    out = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    qt.dequantize(static, "IQ2_XS", (n,), out=out)  # warm-up: the module is loaded here
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        qt.dequantize(static, "IQ2_XS", (n,), out=out)
        made = qt.dequantize(static, "IQ2_XS", (n,), torch.float32)
    for seed in (10, 11):
        static.copy_(torch.frombuffer(bytearray(_native._random_blocks(tid, 1024, seed)), dtype=torch.uint8))
        g.replay()
        torch.cuda.synchronize()
        want = qt.dequantize(static.cpu(), "IQ2_XS", (n,), torch.float32)
        assert same_bits(torch, made.cpu(), want)
        assert same_bits(torch, out.cpu(), want.to(torch.bfloat16))


def test_device_memory_returns_after_a_thousand_calls_with_out(torch, qt) -> None:
    from quantforge import _native

    tid, _, be, bb = qt.type_info("Q6_K")
    blocks = torch.frombuffer(bytearray(_native._random_blocks(tid, 256, 3)), dtype=torch.uint8).cuda()
    out = torch.empty(256 * be, dtype=torch.float16, device="cuda")
    qt.dequantize(blocks, "Q6_K", (256 * be,), out=out)
    torch.cuda.synchronize()
    free0, _ = torch.cuda.mem_get_info()
    for _ in range(1000):
        qt.dequantize(blocks, "Q6_K", (256 * be,), out=out)
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    assert free1 >= free0, (free0, free1)


def test_misaligned_blocks_and_outputs_take_the_aligned_copy(torch, qt) -> None:
    from quantforge import _native

    tid, _, be, bb = qt.type_info("Q6_K")
    raw = torch.frombuffer(bytearray(_native._random_blocks(tid, 8, 4)), dtype=torch.uint8)
    big = torch.zeros(bb * 8 + 3, dtype=torch.uint8, device="cuda")
    big[3:] = raw.cuda()
    odd = big[3:]  # a row's worth of Q6_K starts 3 bytes in: not 16-byte aligned
    want = qt.dequantize(raw, "Q6_K", (8 * be,), torch.float16)
    assert same_bits(torch, qt.dequantize(odd, "Q6_K", (8 * be,), torch.float16).cpu(), want)
    out = torch.zeros(8 * be + 1, dtype=torch.float16, device="cuda")
    qt.dequantize(odd, "Q6_K", (8 * be,), out=out[1:])
    assert same_bits(torch, out[1:].cpu(), want) and float(out[0]) == 0.0
