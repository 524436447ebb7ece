"""``quantforge.transformers`` against transformers' own GGUF loading (the real library, 5.25):
small llama (grouped-query attention), qwen2 (q/k/v biases) and gemma2 models written with
gguf-py in mixed quantized types; the names, shapes, config and values ``load_state_dict``
gives equal those of ``load_gguf_checkpoint(..., return_tensors=True)`` bit for bit (random
finite blocks, where gguf-py's dequantizer and ggml's agree). Skipped (visibly) without torch,
transformers or gguf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import quantforge.torch as qt  # noqa: E402
import quantforge.transformers as qtf  # noqa: E402
from quantforge import _native  # noqa: E402

HIDDEN, FF, VOCAB, N_HEAD, N_KV = 512, 1024, 1024, 8, 2
TYPES = ["Q4_K", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS", "Q5_K"]


def blocks(ty: str, rows: int, cols: int, seed: int) -> np.ndarray:
    tid, _, be, bb = qt.type_info(ty)
    raw = _native._random_blocks(tid, rows * cols // be, seed, 2.0**-8)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // be * bb)


def write(path: Path, arch: str, biases: bool = False) -> None:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(2)
    w.add_feed_forward_length(FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(VOCAB)
    w.add_key_length(64)
    w.add_value_length(64)
    k = 0

    def add(name, rows, cols):
        nonlocal k
        ty = TYPES[k % len(TYPES)]
        k += 1
        w.add_tensor(name, blocks(ty, rows, cols, 100 + k), raw_dtype=gguf.GGMLQuantizationType[ty])

    rng = np.random.default_rng(0)
    add("token_embd.weight", VOCAB, HIDDEN)
    kv = N_KV * 64
    for i in range(2):
        p = f"blk.{i}."
        add(p + "attn_q.weight", HIDDEN, HIDDEN)
        add(p + "attn_k.weight", kv, HIDDEN)
        add(p + "attn_v.weight", kv, HIDDEN)
        add(p + "attn_output.weight", HIDDEN, HIDDEN)
        add(p + "ffn_gate.weight", FF, HIDDEN)
        add(p + "ffn_up.weight", FF, HIDDEN)
        add(p + "ffn_down.weight", HIDDEN, FF)
        if biases:
            for n, size in (("attn_q", HIDDEN), ("attn_k", kv), ("attn_v", kv)):
                w.add_tensor(p + n + ".bias", rng.standard_normal(size, dtype=np.float32))
        w.add_tensor(p + "attn_norm.weight", rng.standard_normal(HIDDEN, dtype=np.float32))
        w.add_tensor(p + "ffn_norm.weight", rng.standard_normal(HIDDEN, dtype=np.float32))
        if arch == "gemma2":
            w.add_tensor(p + "post_attention_norm.weight", rng.standard_normal(HIDDEN, dtype=np.float32))
            w.add_tensor(p + "post_ffw_norm.weight", rng.standard_normal(HIDDEN, dtype=np.float32))
    w.add_tensor("output_norm.weight", rng.standard_normal(HIDDEN, dtype=np.float32))
    if arch != "gemma2":
        add("output.weight", VOCAB, HIDDEN)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def transformers_own(path: Path) -> dict:
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = qtf.load_config(path)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]


@pytest.mark.parametrize("arch, biases", [("llama", False), ("qwen2", True), ("gemma2", False)])
def test_names_shapes_config_and_values_equal_transformers(tmp_path, arch, biases) -> None:
    path = tmp_path / f"{arch}.gguf"
    write(path, arch, biases)
    want = transformers_own(path)
    got = qtf.load_state_dict(path)
    assert list(got) == list(want)
    for name, t in want.items():
        assert got[name].shape == t.shape, name
        assert torch.equal(got[name].view(torch.int32), t.float().view(torch.int32)), name
    config = qtf.load_config(path)
    assert config.model_type == arch and config.num_key_value_heads == N_KV
    assert config.num_attention_heads == N_HEAD and config.hidden_size == HIDDEN


def test_bf16_is_transformers_values_rounded(tmp_path) -> None:
    path = tmp_path / "llama.gguf"
    write(path, "llama")
    want = transformers_own(path)
    got = qtf.load_state_dict(path, dtype=torch.bfloat16)
    for name, t in want.items():
        assert torch.equal(got[name], t.to(torch.bfloat16)), name


def test_an_architecture_transformers_lacks_is_named(tmp_path) -> None:
    path = tmp_path / "rwkv.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv6")
    w.add_tensor("x.weight", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="rwkv6.*llama"):
        qtf.load_state_dict(path)


@pytest.mark.parametrize("arch, biases", [("llama", False), ("qwen2", True), ("gemma2", False)])
def test_from_pretrained_gives_transformers_logits_bit_for_bit(tmp_path, arch, biases) -> None:
    d = tmp_path / "model"
    d.mkdir()
    write(d / "m.gguf", arch, biases)
    ours = qtf.from_pretrained(d / "m.gguf")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(d), gguf_file="m.gguf", dtype=torch.float32)
    assert type(ours) is type(theirs)
    x = torch.tensor([[1, 5, 9, 100, 1023]])
    with torch.no_grad():
        assert torch.equal(ours(x).logits, theirs(x).logits)


def write_like_convert(path: Path, model) -> None:
    """``model``'s weights (a Qwen2MoeForCausalLM) as llama.cpp's convert_hf_to_gguf.py writes
    them, in F32: gguf-py's tensor names (transformers' own map, inverted), the experts as
    ``ffn_{gate,up,down}_exps`` of shape (experts, rows, columns), the shared expert's gate as
    a vector, and the expert sizes in ``expert_feed_forward_length`` /
    ``expert_shared_feed_forward_length``."""
    from transformers.modeling_gguf_pytorch_utils import Qwen2MoeTensorProcessor, get_gguf_hf_weights_map

    c = model.config
    to_gguf = {hf: g for g, hf in get_gguf_hf_weights_map(model, Qwen2MoeTensorProcessor(c.to_dict())).items()}
    w = gguf.GGUFWriter(str(path), "qwen2moe")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"] if hasattr(c, "rope_parameters") else c.rope_theta)
    w.add_vocab_size(c.vocab_size)
    w.add_expert_count(c.num_experts)
    w.add_expert_used_count(c.num_experts_per_tok)
    w.add_expert_feed_forward_length(c.moe_intermediate_size)
    w.add_expert_shared_feed_forward_length(c.shared_expert_intermediate_size)
    ff = c.moe_intermediate_size
    for name, t in model.state_dict().items():
        t = t.float().numpy()
        if name.endswith("mlp.experts.gate_up_proj"):
            base = "blk." + name.split(".")[2]
            w.add_tensor(f"{base}.ffn_gate_exps.weight", np.ascontiguousarray(t[:, :ff]))
            w.add_tensor(f"{base}.ffn_up_exps.weight", np.ascontiguousarray(t[:, ff:]))
        elif name.endswith("shared_expert_gate.weight"):
            w.add_tensor(to_gguf[name], t.reshape(-1))
        elif name.endswith("mlp.experts.down_proj"):
            w.add_tensor("blk." + name.split(".")[2] + ".ffn_down_exps.weight", t)
        else:
            w.add_tensor(to_gguf[name], t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_a_converted_qwen2moe_loads_with_its_expert_sizes(tmp_path) -> None:
    config = transformers.Qwen2MoeConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
        shared_expert_intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    original = transformers.Qwen2MoeForCausalLM(config).eval()
    path = tmp_path / "qwen2moe.gguf"
    write_like_convert(path, original)
    # transformers 5.25 alone ignores the expert sizes: its experts get the default size and
    # every expert weight mismatches.
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name)
    assert "qwen2moe" in qtf.CONFIG_CORRECTIONS
    loaded = qtf.load_config(path)
    assert (loaded.moe_intermediate_size, loaded.shared_expert_intermediate_size) == (128, 384)
    want = original.state_dict()
    got = qtf.load_state_dict(path)
    assert set(got) == set(want)
    for name, t in want.items():
        assert torch.equal(got[name].reshape(t.shape), t.float()), name
    x = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(qtf.from_pretrained(path)(x).logits, original(x).logits)
