"""``quantforge.torch.dequantize`` and ``GGUFLinear`` on the CPU: every golden tensor through
the op equals ggml's manifest, the custom ops pass ``torch.library.opcheck``, a model of
``GGUFLinear`` layers compiles with no graph break, a LoRA step gives the gradients of the same
step on the expanded weights, and every bad input gets its error. Skipped (visibly) without
torch."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import quantforge.torch as qt  # noqa: E402
from quantforge import _native, safe_open  # noqa: E402

from conftest import golden_files, manifest, sha256_f32  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_blocks(name: str, rows: int, cols: int, seed: int = 7) -> torch.Tensor:
    tid, _, be, bb = qt.type_info(name)
    raw = _native._random_blocks(tid, rows * cols // be, seed)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(rows, cols // be * bb)


def reference(blocks: torch.Tensor, name: str, shape) -> torch.Tensor:
    """ggml's f32 values through the loader's host path (a different code path from the op's:
    the file-less native call is checked against it, and both against the manifests)."""
    return qt.dequantize(blocks, name, shape, torch.float32)


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_every_golden_tensor_through_the_op_equals_ggml(path) -> None:
    expected = manifest(path)
    with safe_open(path, framework="pt", device="cpu", dtype="native") as f:
        for name in f.keys():
            blocks, ty = f.get_native(name)
            shape = f.get_tensor_shape(name)
            got = qt.dequantize(blocks.reshape(-1), ty, shape, torch.float32)
            assert tuple(got.shape) == tuple(shape)
            assert sha256_f32(got.numpy()) == expected[name].sha256, f"{path.name}: {name} ({ty})"
            # f16/bf16 are f32 rounded to nearest-even, as torch rounds.
            for dt in (torch.float16, torch.bfloat16):
                half = qt.dequantize(blocks, ty, shape, dt)
                want = got.to(dt)
                same = (half.view(torch.int16) == want.view(torch.int16)) | (half.isnan() & want.isnan())
                assert bool(same.all()), f"{path.name}: {name} {dt}"


def test_out_writes_in_place_and_matches_a_new_tensor() -> None:
    for name in ("Q4_0", "Q4_K", "Q6_K", "IQ2_XS", "MXFP4", "TQ1_0"):
        blocks = random_blocks(name, 4, 512)
        for dt in DTYPES:
            new = qt.dequantize(blocks, name, dtype=dt)
            out = torch.full((4, 512), 7.0, dtype=dt)
            ret = qt.dequantize(blocks, name, out=out)
            assert ret is out
            assert torch.equal(out.view(torch.uint8), new.view(torch.uint8)), f"{name} {dt}"


def test_opcheck_passes_on_both_ops() -> None:
    blocks = random_blocks("Q4_K", 2, 256)
    tid = qt.type_info("Q4_K")[0]
    torch.library.opcheck(torch.ops.quantforge.dequantize.default, (blocks, tid, [2, 256], torch.float16))
    out = torch.empty(2, 256, dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.quantforge.dequantize_out.default, (blocks, tid, out))


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = qt.GGUFLinear(random_blocks("Q4_K", 256, 512, 1), "Q4_K", (256, 512), torch.randn(256))
        self.b = qt.GGUFLinear(random_blocks("Q8_0", 128, 256, 2), "Q8_0", (128, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.gelu(self.a(x)))


def test_gguf_linear_compiles_with_no_graph_break() -> None:
    model = Tiny()
    x = torch.randn(3, 512)
    eager = model(x)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    torch._dynamo.reset()
    aot = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(aot, eager), "aot_eager must give eager's bits"
    torch._dynamo.reset()
    inductor = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(inductor, eager, rtol=1e-4, atol=1e-4)


def test_gguf_linear_under_inference_mode_equals_linear_on_expanded_weights() -> None:
    model = Tiny()
    x = torch.randn(5, 512)
    with torch.inference_mode():
        got = model(x)
    wa, wb = model.a.dequantized(), model.b.dequantized()
    want = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, wa, model.a.bias)), wb)
    assert torch.equal(got, want)


def test_a_lora_step_gives_the_gradients_of_the_expanded_weights() -> None:
    torch.manual_seed(0)
    base = qt.GGUFLinear(random_blocks("Q4_K", 256, 512, 3), "Q4_K", (256, 512))
    dense = torch.nn.Linear(512, 256, bias=False)
    with torch.no_grad():
        dense.weight.copy_(base.dequantized())
    dense.weight.requires_grad_(False)
    lora_a = torch.nn.Parameter(torch.randn(8, 512) * 0.01)
    lora_b = torch.nn.Parameter(torch.randn(256, 8) * 0.01)
    x = torch.randn(4, 512, requires_grad=True)

    def step(layer):
        for p in (lora_a, lora_b):
            p.grad = None
        x.grad = None
        y = layer(x) + x @ lora_a.T @ lora_b.T
        y.square().mean().backward()
        return lora_a.grad.clone(), lora_b.grad.clone(), x.grad.clone()

    for got, want in zip(step(base), step(dense)):
        assert torch.equal(got, want)


def test_vllm_and_comfyui_forms() -> None:
    blocks = random_blocks("Q6_K", 8, 256)
    want = qt.dequantize(blocks, "Q6_K", dtype=torch.float16)
    assert torch.equal(qt.ggml_dequantize(blocks, 14, 8, 256, torch.float16), want)
    gguf = pytest.importorskip("gguf")
    t = blocks.clone()
    t.tensor_type = gguf.GGMLQuantizationType.Q6_K
    t.tensor_shape = torch.Size([8, 256])
    assert torch.equal(qt.dequantize_tensor(t, torch.float16), want)
    plain = torch.randn(3, 4)
    plain.tensor_type = gguf.GGMLQuantizationType.F32
    plain.tensor_shape = plain.shape
    assert torch.equal(qt.dequantize_tensor(plain, torch.float16), plain.to(torch.float16))


def test_flat_bytes_need_a_shape_and_ids_and_enums_name_types() -> None:
    blocks = random_blocks("Q4_0", 2, 64)
    want = qt.dequantize(blocks, "Q4_0")
    flat = blocks.reshape(-1)
    assert torch.equal(qt.dequantize(flat, 2, (2, 64)), want)
    with pytest.raises(ValueError, match="give shape="):
        qt.dequantize(flat, "Q4_0")
    gguf = pytest.importorskip("gguf")
    assert torch.equal(qt.dequantize(flat, gguf.GGMLQuantizationType.Q4_0, (2, 64)), want)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda b: qt.dequantize(b.float(), "Q4_0"), TypeError, "torch.uint8, not torch.float32"),
        (lambda b: qt.dequantize(b.t(), "Q4_0", (2, 64)), ValueError, "contiguous"),
        (lambda b: qt.dequantize(b[:, :17].clone(), "Q4_0"), ValueError, "not whole Q4_0 blocks of 18 bytes"),
        (lambda b: qt.dequantize(b.reshape(-1), "Q4_0", (3, 64)), ValueError, "takes 108 bytes"),
        (lambda b: qt.dequantize(b, "Q4_0", (2, 60)), ValueError, "not whole Q4_0 blocks of 32"),
        (lambda b: qt.dequantize(b, "Q4_0", dtype=torch.int32), TypeError, "dtype must be"),
        (lambda b: qt.dequantize(b, "Q4_0", out=torch.empty(2, 64, dtype=torch.int8)), TypeError, "dtype must be"),
        (lambda b: qt.dequantize(b, "Q4_0", out=torch.empty(2, 63)), ValueError, "out has 126 elements"),
        (lambda b: qt.dequantize(b, "Q4_0", out=torch.empty(64, 2).t()), ValueError, "out must be contiguous"),
        (lambda b: qt.dequantize(b, 4242), ValueError, "unknown ggml type id 4242"),
        (lambda b: qt.dequantize(b, "Q9_9"), ValueError, "unknown ggml type 'Q9_9'"),
        (lambda b: qt.dequantize(b, "Q8_1"), ValueError, "Q8_1 (id 9) cannot be dequantized"),
        (lambda b: qt.dequantize(b, "Q8_K"), ValueError, "Q8_K (id 15) cannot be dequantized"),
        (lambda b: qt.dequantize(b, "I32"), ValueError, "integer type"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, words) -> None:
    blocks = random_blocks("Q4_0", 2, 64)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(blocks)


def test_the_ops_called_directly_check_their_tensors() -> None:
    blocks = random_blocks("Q4_0", 2, 64)
    tid = qt.type_info("Q4_0")[0]
    with pytest.raises(TypeError, match="torch.uint8"):
        torch.ops.quantforge.dequantize(blocks.float(), tid, [2, 64], torch.float16)
    with pytest.raises(ValueError, match="out must be contiguous"):
        torch.ops.quantforge.dequantize_out(blocks, tid, torch.empty(64, 2).t())
    # Sizes that disagree are refused by the native call, naming what was expected.
    with pytest.raises(Exception, match="bytes"):
        torch.ops.quantforge.dequantize(blocks, tid, [3, 64], torch.float16)


def test_blocks_and_out_on_different_devices_are_refused() -> None:
    blocks = random_blocks("Q4_0", 2, 64)
    meta = torch.empty(2, 64, dtype=torch.float16, device="meta")
    with pytest.raises(ValueError, match="out is on meta, the blocks on cpu"):
        qt.dequantize(blocks, "Q4_0", out=meta)


def test_load_native_keeps_the_type_and_shape() -> None:
    path = next(p for p in golden_files() if p.name.startswith("tiny-llama-q4_k_m"))
    native = qt.load_native(path)
    with safe_open(path, framework="pt", dtype="f32") as f:
        for name, t in native.items():
            assert t.ggml_type == f.get_tensor_type(name)
            assert tuple(t.shape) == f.get_tensor_shape(name)
            if t.ggml_type.startswith(("Q", "I")):
                got = qt.dequantize(t.blocks, t.ggml_type, t.shape, torch.float32)
                assert torch.equal(got, f.get_tensor(name)), name
    assert math.prod(native["output_norm.weight"].shape) > 0
