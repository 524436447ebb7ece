"""``quantforge.transformers`` against transformers' own GGUF loading (the real library, 5.25):
small llama (grouped-query attention), qwen2 (q/k/v biases) and gemma2 models written with
gguf-py in mixed quantized types; the names, shapes, config and values ``load_state_dict``
gives equal those of ``load_gguf_checkpoint(..., return_tensors=True)`` bit for bit (random
finite blocks, where gguf-py's dequantizer and ggml's agree); the tokenizers ``load_tokenizer``
gives (a small sentencepiece and a small byte-level BPE vocabulary in the metadata) tokenize as
``AutoTokenizer.from_pretrained(..., gguf_file=...)``'s; the processors' transforms run on torch
tensors give numpy's bits. Skipped (visibly) without torch, transformers or gguf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import quantforge.torch as qt  # noqa: E402
import quantforge.transformers as qtf  # noqa: E402
from quantforge import _native, safe_open  # noqa: E402

HIDDEN, FF, VOCAB, N_HEAD, N_KV = 512, 1024, 1024, 8, 2
TYPES = ["Q4_K", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS", "Q5_K"]


def finish(w) -> None:
    """Writes out and closes a ``gguf.GGUFWriter`` whose metadata and tensors are added."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def blocks(ty: str, rows: int, cols: int, seed: int) -> np.ndarray:
    tid, _, be, bb = qt.type_info(ty)
    raw = _native._random_blocks(tid, rows * cols // be, seed, 2.0**-8)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // be * bb)


def write(path: Path, arch: str, biases: bool = False, tokenizer=None) -> None:
    """A small model of ``arch`` in mixed quantized types; ``tokenizer(writer)`` adds a
    tokenizer's metadata."""
    w = gguf.GGUFWriter(str(path), arch)
    if tokenizer is not None:
        tokenizer(w)
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
    finish(w)


def transformers_own(path: Path) -> dict:
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = qtf.load_config(path)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]


@pytest.mark.parametrize("arch, biases", [("llama", False), ("qwen2", True), ("gemma2", False), ("nemotron", False)])
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


@pytest.mark.parametrize("arch", ["llama", "gemma2", "nemotron"])
def test_bf16_is_transformers_values_rounded(tmp_path, arch) -> None:
    """Loaded in bf16 straight, transformed after: the bits of transformers' float32 values
    rounded; gemma2's and nemotron's norms (``- 1``) are made in float32 first."""
    path = tmp_path / f"{arch}.gguf"
    write(path, arch)
    want = transformers_own(path)
    got = qtf.load_state_dict(path, dtype=torch.bfloat16)
    for name, t in want.items():
        assert torch.equal(got[name], t.to(torch.bfloat16)), name


def test_an_architecture_transformers_lacks_is_named(tmp_path) -> None:
    path = tmp_path / "rwkv.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv6")
    w.add_tensor("x.weight", np.zeros(4, dtype=np.float32))
    finish(w)
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
    finish(w)


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


# ---- the tokenizer -------------------------------------------------------------------------------

SPM_PIECES = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "\u2581h", "he", "ll", "lo", "\u2581he", "llo",
              "\u2581hello", "\u2581w", "or", "\u2581wor", "ld", "\u2581world", "!"]


def spm_tokenizer(w) -> None:
    """A llama (sentencepiece) vocabulary as llama.cpp writes one: control tokens, 256 byte
    tokens, pieces with scores; no merges (transformers derives them from the scores)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


BPE_MERGES = ["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]


def bpe_tokenizer(w) -> None:
    """A gpt2 (byte-level BPE) vocabulary: the 256 byte symbols, merges, an end-of-text control
    token, qwen2's pre-tokenizer split."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    tokens = [spelling[b] for b in range(256)] + [m.replace(" ", "") for m in BPE_MERGES] + ["<|endoftext|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 1) + [3])
    w.add_token_merges(BPE_MERGES)
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)


TEXTS = ["hello world", "hello world!", " h\u00e9llo\n w\u00f6rld 12", "<s>hello</s>", "hello<|endoftext|>", ""]


@pytest.mark.parametrize(
    "tokenizer, words",
    [(spm_tokenizer, ["<s>", "\u2581hello", "\u2581world"]), (bpe_tokenizer, ["hello", "\u0120world"])],
    ids=["sentencepiece", "byte-level-bpe"],
)
def test_the_tokenizer_is_transformers_own_conversion(tmp_path, tokenizer, words) -> None:
    d = tmp_path / "model"
    d.mkdir()
    write(d / "m.gguf", "llama", tokenizer=tokenizer)
    ours = qtf.load_tokenizer(d / "m.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(str(d), gguf_file="m.gguf")
    assert type(ours) is type(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert (ours.bos_token, ours.eos_token) == (theirs.bos_token, theirs.eos_token)
    for text in TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == theirs.decode(ids), text
    # The file's vocabulary is the one used: its merged pieces, not bytes.
    assert ours.convert_ids_to_tokens(ours("hello world")["input_ids"]) == words


def test_a_file_without_a_tokenizer_is_named(tmp_path) -> None:
    path = tmp_path / "bare.gguf"
    write(path, "llama")
    with pytest.raises(ValueError, match=r"bare\.gguf: the file carries no tokenizer.*tokenizer\.ggml\.model"):
        qtf.load_tokenizer(path)


# ---- where each processor's transform runs ---------------------------------------------------------


def processor_cases():
    """(GGUF architecture, processor class) for each entry of transformers' TENSOR_PROCESSORS,
    and the default processor under qwen2."""
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    return [("qwen2", TensorProcessor)] + list(TENSOR_PROCESSORS.items())


def gguf_names(arch: str):
    """Every tensor name gguf-py knows for ``arch`` (block 0), as weight and bias."""
    ids = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    kinds = gguf.MODEL_TENSORS[ids[arch.replace("_", "-")]]
    return [gguf.TENSOR_NAMES[k].format(bid=0) + suffix for k in kinds for suffix in (".weight", ".bias")]


def special_values(shape, seed: int) -> np.ndarray:
    """Random float32 values of ``shape`` with zeros of both signs, infinities, a NaN with a
    payload and subnormals among them."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32).reshape(-1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, -1e-45, 1.0, -1.0], dtype=np.float32)
    values[: len(specials)] = specials
    values.view(np.uint32)[len(specials)] = 0x7FC01234
    return values.reshape(shape)


def case_shape(name: str) -> tuple:
    """A shape each processor takes for tensor ``name``: 1-D norms and biases, stacked experts,
    bloom's fused QKV of 3 x hidden rows, 2-D otherwise."""
    rows = 96 if "attn_qkv" in name else 64
    if name.endswith(".bias") or "norm" in name:
        return (rows,)
    return (2, rows, 32) if "_exps." in name or "_projs." in name else (rows, 32)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("arch, processor_class", processor_cases(), ids=lambda v: getattr(v, "__name__", v))
def test_transforms_run_on_the_device_give_numpy_bits(arch, processor_class) -> None:
    """For every tensor name quantforge transforms on the device: the processor takes a meta
    tensor (no numpy function reached: a device tensor would go through too) and, on CPU torch
    tensors, gives transformers' own numpy result bit for bit, under the same name. Every name
    sent to the CPU does reach numpy (a meta tensor is refused): the list is no longer than it
    must be."""
    config = {"num_attention_heads": 4, "num_key_value_heads": 2, "n_head": 4, "hidden_size": 32}
    processor = processor_class(config=config)
    names = gguf_names(arch) + ["blk.0.ffn_down_projs.weight", "blk.0.ffn_gate_up_projs.weight"]
    listed = processor_class.__name__ in qtf._CPU_TENSORS
    for k, name in enumerate(names):
        shape = case_shape(name)
        mapping = {name.rsplit(".", 1)[0]: "model.x", "blk.0": "model.layers.0"}
        kwargs = dict(name=name, tensor_key_mapping=mapping, parsed_parameters={"tensors": {}})
        if qtf._on_cpu(processor, name):
            if listed:
                with pytest.raises(TypeError):
                    processor.process(weights=torch.empty(shape, device="meta"), **kwargs)
            continue
        assert listed, f"{processor_class.__name__} is not listed: it must run on the CPU"
        values = special_values(shape, k)
        want = processor.process(weights=values.copy(), **kwargs)
        meta = processor.process(weights=torch.empty(shape, device="meta"), **kwargs)
        got = processor.process(weights=torch.from_numpy(values.copy()), **kwargs)
        assert isinstance(meta.weights, torch.Tensor) and meta.weights.is_meta, name
        assert meta.name == got.name == want.name, name
        assert tuple(meta.weights.shape) == tuple(got.weights.shape) == want.weights.shape, name
        w = np.ascontiguousarray(want.weights)
        assert np.array_equal(got.weights.contiguous().numpy().view(np.uint32), w.view(np.uint32)), name


def test_from_pretrained_leaves_hub_kernels_off(tmp_path) -> None:
    """transformers 5.25 turns its hub kernels on by default when the ``kernels`` package is
    installed (a dependency of 5.25), and fetches them from the network: a GPU machine offline
    then fails."""
    write(tmp_path / "m.gguf", "llama")
    assert not qtf.from_pretrained(tmp_path / "m.gguf").use_kernels


def test_the_corrections_share_the_name_table_and_skip_the_warmup_until_exit() -> None:
    from transformers import modeling_utils

    table, warmup = gguf.get_tensor_name_map, modeling_utils.caching_allocator_warmup
    with qtf._corrections():
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert modeling_utils.caching_allocator_warmup(None, {"x": "cuda:0"}, None) is None
        assert modeling_utils.caching_allocator_warmup is not warmup
    assert gguf.get_tensor_name_map is table and modeling_utils.caching_allocator_warmup is warmup


def test_transcendental_and_numpy_only_transforms_stay_on_the_cpu() -> None:
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS

    def cpu(arch, name):
        return qtf._on_cpu(TENSOR_PROCESSORS[arch](config={}), name)

    assert cpu("mamba", "blk.0.ssm_a") and cpu("mamba", "blk.0.ssm_conv1d.weight")
    assert not cpu("mamba", "blk.0.ssm_in.weight")
    assert cpu("qwen2moe", "blk.3.ffn_up_exps.weight") and not cpu("qwen2moe", "blk.3.attn_q.weight")
    assert cpu("gpt2", "output.weight") and not cpu("gpt2", "blk.0.attn_output.weight")
    assert not cpu("gemma2", "blk.0.post_ffw_norm.weight") and not cpu("nemotron", "output_norm.weight")


# ---- tensor-parallel shards under Hugging Face names -----------------------------------------------


def _tp_worker(rank: int, world: int, port: int, path: str, out: str) -> None:
    import pickle

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    shards, report = qtf.load_shards(path, (rank, world))
    gathered = [None] * world
    mine = ({n: t.numpy() for n, t in shards.items()}, report.per_tensor, report.source)
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(gathered))
    dist.barrier()
    dist.destroy_process_group()


def whole_bytes(f, name: str):
    """The file bytes of tensor ``name``, its type and its shape."""
    shape = f.get_tensor_shape(name)
    rows = shape[0] if len(shape) > 1 else 1
    return f.get_slice(name).bytes_read((0, rows), (0, shape[-1])), f.get_tensor_type(name), shape


def check_hf_shards(path: Path, world: int, gathered) -> None:
    """The ranks' shards put back by :data:`HF_LLAMA_PLAN` equal ``load_state_dict``'s whole
    tensors (K and V, replicated in groups of ranks when the world is larger than the KV head
    count, once per group); a rank reads at most 1/world of a split tensor's bytes plus two
    blocks per row."""
    from quantforge._tp import HF_LLAMA_PLAN, style_of

    whole = qtf.load_state_dict(path)
    with safe_open(path, framework="numpy") as f:
        sizes = {hf: whole_bytes(f, gathered[0][2][hf]) for hf in whole}
    assert sorted(gathered[0][0]) == sorted(whole)
    for name, t in whole.items():
        style = style_of(name, HF_LLAMA_PLAN)
        shards = [torch.from_numpy(g[0][name]) for g in gathered]
        if style == "replicate":
            assert all(torch.equal(s.view(torch.int32), t.view(torch.int32)) for s in shards), name
            continue
        group = world // N_KV if world > N_KV and ("k_proj" in name or "v_proj" in name) else 1
        for r in range(0, world, group):
            assert all(torch.equal(shards[r], shards[q]) for q in range(r, r + group)), name
        put_back = torch.cat(shards[::group], dim=0 if style == "colwise" else -1)
        assert torch.equal(put_back.view(torch.int32), t.view(torch.int32)), name
        total, ty, shape = sizes[name]
        rows = shape[0] if len(shape) > 1 else 1
        for g in gathered:
            read = g[1][name][1]
            assert group > 1 or read <= total / world + 2 * qt.type_info(ty)[3] * rows, (name, read, total)


def test_hf_shards_in_two_gloo_processes_put_back_equal_the_whole_tensors(tmp_path) -> None:
    import pickle

    import torch.multiprocessing as mp

    from test_tp import free_port

    path = tmp_path / "llama.gguf"
    write(path, "llama")
    out = tmp_path / "gathered.pkl"
    mp.spawn(_tp_worker, args=(2, free_port(), str(path), str(out)), nprocs=2, join=True)
    check_hf_shards(path, 2, pickle.loads(out.read_bytes()))


@pytest.mark.parametrize("arch, biases, world", [("llama", False, 4), ("qwen2", True, 2), ("gemma2", False, 4)])
def test_hf_shards_of_every_rank_put_back_equal_the_whole_tensors(tmp_path, arch, biases, world) -> None:
    """Every rank in one process (no communication is needed to load): with 4 ranks over 2 KV
    heads, K and V are replicated in pairs of ranks; llama's Q and K are split on whole heads
    and un-permuted per head."""
    path = tmp_path / f"{arch}.gguf"
    write(path, arch, biases)
    gathered = []
    for rank in range(world):
        shards, report = qtf.load_shards(path, (rank, world))
        assert report.bytes_read < report.tensor_bytes
        assert report.source["model.layers.1.self_attn.q_proj.weight"] == "blk.1.attn_q.weight"
        gathered.append(({n: t.numpy() for n, t in shards.items()}, report.per_tensor, report.source))
    check_hf_shards(path, world, gathered)
    bf16 = qtf.load_state_dict(path, dtype=torch.bfloat16, tp=(1, world))
    assert all(t.dtype == torch.bfloat16 for t in bf16.values())
    # Loaded in bfloat16 (gemma2's norms in float32, rounded after their ``- 1``): every shard
    # equals the float32 shard rounded.
    assert bf16.keys() == gathered[1][0].keys()
    for name, t in bf16.items():
        assert torch.equal(t.view(torch.int16), torch.from_numpy(gathered[1][0][name]).bfloat16().view(torch.int16)), name


def test_hf_plans_and_architectures_that_cannot_be_sharded_are_refused(tmp_path) -> None:
    path = tmp_path / "llama.gguf"
    write(path, "llama")
    with pytest.raises(ValueError, match="colwise_gather_output.*not implemented"):
        qtf.load_state_dict(path, tp=(0, 2), tp_plan={"lm_head.weight": "colwise_gather_output"})
    with pytest.raises(ValueError, match="8 heads do not split over 3 ranks"):
        qtf.load_shards(path, (0, 3))
    with pytest.raises(ValueError, match=r"tp=\(2, 2\)"):
        qtf.load_shards(path, (2, 2))
    gpt2 = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(gpt2), "gpt2")
    for add, value in ((w.add_context_length, 64), (w.add_embedding_length, 64), (w.add_block_count, 1),
                       (w.add_feed_forward_length, 256), (w.add_head_count, 4), (w.add_layer_norm_eps, 1e-5)):
        add(value)
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    finish(w)
    with pytest.raises(ValueError, match="gpt2.gguf: tp= is not implemented for architecture 'gpt2'.*GPT2TensorProcessor"):
        qtf.load_shards(gpt2, (0, 2))


# ---- the benchmark script, end to end on the CPU ---------------------------------------------------


def test_the_transformers_benchmark_runs_on_the_cpu(tmp_path) -> None:
    """scripts/bench-transformers.py on a small llama (--device cpu, 2 ranks): every run
    succeeds, the two from_pretrained give equal logits, each rank keeps to its bound; the
    JSON and the markdown table are printed."""
    import json
    import subprocess
    import sys

    d = tmp_path / "model"
    d.mkdir()
    write(d / "m.gguf", "llama")
    warm = tmp_path / "warm"
    warm.mkdir()
    write(warm / "w.gguf", "llama")
    script = Path(__file__).resolve().parents[3] / "scripts" / "bench-transformers.py"
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(script), "--model", str(d / "m.gguf"), "--device", "cpu", "--tp", "2",
           "--workdir", str(tmp_path / "work"), "--json", str(out), "--warmup-model", str(warm / "w.gguf")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(out.read_text())
    assert [r["mode"] for r in summary["runs"]] == ["qf", "hf", "qf-state", "qf-file", "tp:0:2", "tp:1:2"]
    assert all("error" not in r and r["seconds"] > 0 for r in summary["runs"]), summary
    assert all(r["warmup_s"] > 0 and "parse" in r["stages"] for r in summary["runs"] if r["mode"] not in ("qf-file", "hf")), summary
    assert summary["logits_equal"] is True and summary["tp_all_within_bound"] is True
    assert "| qf-state |" in run.stdout and "| tp:1:2 |" in run.stdout
