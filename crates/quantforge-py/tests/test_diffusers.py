"""diffusers as a real client: a small ``FluxTransformer2DModel`` built from a local config with
random weights, written as GGUF (diffusers' own names, so ``from_single_file`` takes it as it
is) in legacy, K, i-quant, ternary and FP4 types, loaded through diffusers' own GGUF loading and
run with diffusers' dequantization and with quantforge's (:func:`quantforge.diffusers.enable`).

The weights diffusers sees through quantforge equal ggml's bit for bit (gguf-py's dequantizer,
a second reference, where it has one; quantforge's CPU reference otherwise); outputs match
diffusers' own within its float16 compute tolerance where diffusers knows the type; where it
doesn't, the model runs. Skipped (visibly) without torch, diffusers or gguf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
gguf = pytest.importorskip("gguf")

import diffusers  # noqa: E402
from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig  # noqa: E402
from diffusers.quantizers.gguf import utils as dutils  # noqa: E402

import quantforge.diffusers as qd  # noqa: E402
import quantforge.torch as qt  # noqa: E402
from quantforge import _native  # noqa: E402

# Types diffusers' torch path knows, and types only quantforge expands.
KNOWN = ["Q4_0", "Q8_0", "Q5_1", "Q4_K", "Q6_K", "IQ4_XS"]
NEW = ["IQ1_S", "IQ2_XS", "IQ3_S", "TQ2_0", "MXFP4", "NVFP4"]


def tiny_flux() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=256,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=2,
        joint_attention_dim=256,
        pooled_projection_dim=256,
        axes_dims_rope=(16, 56, 56),
    )


# Types gguf-py quantizes: their weights are the model's own random weights, quantized.
QUANTIZABLE = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4"}


def blocks_for(t: torch.Tensor, ty: str, seed: int) -> np.ndarray:
    """``t`` (2-D) as blocks of ``ty``: quantized by gguf-py where it can, else random blocks
    whose f16 scales are small, so that the model's activations stay finite."""
    tid, _, be, bb = qt.type_info(ty)
    rows, cols = t.shape
    if ty in QUANTIZABLE:
        return gguf.quants.quantize(t.detach().float().numpy(), gguf.GGMLQuantizationType(tid))
    raw = _native._random_blocks(tid, rows * cols // be, seed, 2.0**-9)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // be * bb)


def write_model(path: Path, model: FluxTransformer2DModel, types: list) -> dict:
    """Writes ``model``'s state dict as GGUF: every 2-D weight whose rows are whole 256-value
    blocks as blocks of the next type of ``types`` (:func:`blocks_for`), the rest as F32.
    Returns ``{name: type}`` of the quantized ones."""
    w = gguf.GGUFWriter(str(path), "flux")
    chosen = {}
    for i, (name, t) in enumerate(model.state_dict().items()):
        if t.dim() == 2 and t.shape[1] % 256 == 0:
            ty = types[len(chosen) % len(types)]
            tid = qt.type_info(ty)[0]
            w.add_tensor(name, blocks_for(t, ty, 1000 + i), raw_dtype=gguf.GGMLQuantizationType(tid))
            chosen[name] = ty
        else:
            w.add_tensor(name, t.detach().float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return chosen


def load(path: Path, config_dir: Path) -> FluxTransformer2DModel:
    cfg = GGUFQuantizationConfig(compute_dtype=torch.float32)
    return FluxTransformer2DModel.from_single_file(str(path), config=str(config_dir), quantization_config=cfg)


def inputs() -> dict:
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(1, 16, 256, generator=g),
        encoder_hidden_states=torch.randn(1, 8, 256, generator=g),
        pooled_projections=torch.randn(1, 256, generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(16, 3),
        txt_ids=torch.zeros(8, 3),
    )


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("flux-config")
    tiny_flux().save_config(str(d))
    return d


@pytest.fixture(autouse=True)
def restore_diffusers():
    yield
    qd.disable()


def gguf_layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, dutils.GGUFLinear)}


def check_weights_are_ggml_bits(model, chosen: dict) -> None:
    """Each GGUF weight as diffusers now sees it equals ggml's values: gguf-py's dequantizer
    where it has one (finite random blocks: no NaN case where gguf-py deviates), else
    quantforge's CPU reference through the loader's host path."""
    layers = gguf_layers(model)
    assert len(layers) == len(chosen)
    for name, m in layers.items():
        seen = dutils.dequantize_gguf_tensor(m.weight)
        assert seen.dtype == torch.float32
        raw = m.weight.as_tensor().numpy()
        try:
            want = gguf.quants.dequantize(raw, m.weight.quant_type).astype(np.float32)
        except NotImplementedError:
            want = qt.dequantize(m.weight.as_tensor().clone(), int(m.weight.quant_type), dtype=torch.float32).numpy()
        assert np.array_equal(seen.numpy().view(np.uint32), want.reshape(seen.shape).view(np.uint32)), name


def test_known_types_match_diffusers_own_dequantization(tmp_path, config_dir) -> None:
    path = tmp_path / "known.gguf"
    chosen = write_model(path, tiny_flux(), KNOWN)
    assert set(chosen.values()) == set(KNOWN)
    own = load(path, config_dir)
    theirs = {n: dutils.dequantize_gguf_tensor(m.weight).float() for n, m in gguf_layers(own).items()}
    with torch.no_grad():
        want = own(**inputs()).sample
    qd.enable()
    model = load(path, config_dir)
    check_weights_are_ggml_bits(model, chosen)
    # diffusers' torch path computes in float16: its weights are ggml's within float16's
    # rounding of the scales and products (a few ulps of the block's largest value).
    for name, m in gguf_layers(model).items():
        ours = dutils.dequantize_gguf_tensor(m.weight)
        tol = 4 * 2.0**-10 * ours.abs().max()
        assert float((ours - theirs[name]).abs().max()) <= tol, name
    with torch.no_grad():
        got = model(**inputs()).sample
    rel = float((got - want).norm() / want.norm())
    assert rel < 1e-2, rel


def test_types_diffusers_lacks_load_and_run_through_quantforge(tmp_path, config_dir) -> None:
    path = tmp_path / "new.gguf"
    chosen = write_model(path, tiny_flux(), NEW)
    # diffusers refuses the types on its own (and wraps its ValueError in an OSError).
    with pytest.raises((ValueError, OSError)):
        load(path, config_dir)
    qd.enable()
    model = load(path, config_dir)
    check_weights_are_ggml_bits(model, chosen)
    with torch.no_grad():
        out = model(**inputs()).sample
    assert out.shape == (1, 16, 256)


def test_enable_and_disable_swap_diffusers_functions() -> None:
    own = dutils.dequantize_gguf_tensor
    n = len(dutils.SUPPORTED_GGUF_QUANT_TYPES)
    qd.enable()
    assert qd.enabled() and dutils.dequantize_gguf_tensor is not own
    assert gguf.GGMLQuantizationType.IQ1_S in dutils.SUPPORTED_GGUF_QUANT_TYPES
    qd.disable()
    assert dutils.dequantize_gguf_tensor is own and len(dutils.SUPPORTED_GGUF_QUANT_TYPES) == n
    assert diffusers.__version__
