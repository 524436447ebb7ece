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
