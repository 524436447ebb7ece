"""transformers' world: a GGUF file's tensors under Hugging Face's names and layouts, with the
config and the tokenizer transformers reads from it (an optional extra: transformers is imported
only here; tested with transformers 5.25).

transformers' own tables are used at run time, not copies of them: the config keys and the
architecture checks of ``load_gguf_checkpoint``, the name map of ``get_gguf_hf_weights_map``, the
per-architecture ``TensorProcessor`` (llama's reverse permutation of Q and K, gemma's norms,
the MoE expert splits, ...) and, for :func:`load_tokenizer`, transformers' GGUF tokenizer
conversion. The values are ggml's (quantforge's dequantization, not gguf-py's, where the two
differ: NaN signs in IQ2_XS/IQ3_S, quieting of f16 signalling NaNs), put through the same
transform:

- on the device, as torch tensors, for the tensors whose transform only moves data (reshape,
  swapaxes, transpose) or uses IEEE basic arithmetic (gemma's and nemotron's norms,
  ``weights - 1``): the same bits as transformers' numpy (a NaN stays a NaN; on a GPU its
  payload may be the canonical one). That is every tensor of the default processor (qwen2,
  phi3, ...), llama's, gemma2/3's, nemotron's and t5's, and all but a few of the others';
- on the CPU in float32 on numpy arrays, as transformers runs them, for the tensors whose
  transform calls a numpy function: the MoE experts of qwen2moe/qwen3moe/minimax-m2/gpt-oss
  (copies into merged tensors), gpt2's ``output.weight``, bloom's fused QKV, lfm2's and
  mamba's convolutions (``expand_dims``) and mamba's ``ssm_a`` (``log(-A)``, a transcendental
  function whose rounding a device need not share), then moved to the device.

:func:`load_shards` (or ``load_state_dict(..., tp=(rank, world))``) gives one tensor-parallel
rank's shard of each tensor under the same names, reading only the bytes it covers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from ._tp import HF_LLAMA_PLAN

__all__ = [
    "from_pretrained",
    "load_state_dict",
    "load_shards",
    "load_config",
    "load_tokenizer",
    "HF_LLAMA_PLAN",
    "TESTED_TRANSFORMERS",
]

TESTED_TRANSFORMERS = "5.25"

# Per TensorProcessor of transformers 5.25 (each one's source read), the GGUF tensor names
# (fnmatch patterns) whose transform calls a numpy function (np.copy, np.expand_dims, np.stack,
# np.log): those are transformed on the CPU, on numpy arrays, as transformers runs them. Every
# other tensor a listed processor returns as it is, moves (reshape, swapaxes, ``.T``) or gives
# ``weights - 1`` with Python's operator, which a torch tensor takes on its own device with
# numpy's bits. A processor not listed here runs on the CPU for every tensor.
_MOE_EXPERTS = ("*.ffn_gate_exps.weight", "*.ffn_up_exps.weight", "*.ffn_down_exps.weight")
_CPU_TENSORS: Dict[str, Tuple[str, ...]] = {
    "TensorProcessor": (),
    "LlamaTensorProcessor": (),  # Q and K: reshape, swapaxes, reshape
    "Gemma2TensorProcessor": (),  # gemma2 and gemma3 norms: weights - 1
    "NemotronTensorProcessor": (),  # norms: weights - 1
    "T5TensorProcessor": (),  # block ids from the name only
    "GPT2TensorProcessor": ("output.weight",),  # .T elsewhere; lm_head stored by np.copy
    "Qwen2MoeTensorProcessor": _MOE_EXPERTS + ("*ffn_gate_inp_shexp*",),  # np.copy; np.expand_dims
    "MiniMaxM2TensorProcessor": _MOE_EXPERTS,  # np.copy into the merged gate_up
    "GptOssTensorProcessor": ("blk.*.ffn_*_projs.weight",),  # torch.tensor of numpy slices
    "BloomTensorProcessor": ("*attn_qkv*",),  # np.stack
    "Lfm2TensorProcessor": ("*shortconv.conv.weight*",),  # np.expand_dims
    "MambaTensorProcessor": ("*ssm_conv1d.weight*", "*ssm_a*"),  # np.expand_dims; np.log
}

# Per TensorProcessor, the tensors (fnmatch patterns) whose transform is arithmetic on the device
# (``weights - 1``): their values are made in float32 and rounded to the requested dtype after
# the transform, as transformers does. Every other tensor's transform only moves data, or runs
# on the CPU in float32 (:data:`_CPU_TENSORS`), so the rest are loaded straight in the requested
# dtype by the pipelined whole-file load: rounding commutes with moving data.
_F32_TENSORS: Dict[str, Tuple[str, ...]] = {
    "Gemma2TensorProcessor": ("*norm.weight*",),
    "NemotronTensorProcessor": ("*norm.weight*",),
}

# Processors whose transform commutes with taking whole heads or rows first: each tensor
# unchanged, elementwise (``- 1``) or, for llama's Q and K, permuted within each head. Only
# these are sharded by :func:`load_shards`.
_TP_PROCESSORS = ("TensorProcessor", "LlamaTensorProcessor", "Gemma2TensorProcessor", "NemotronTensorProcessor")


def _on_cpu(processor: Any, name: str) -> bool:
    """Whether tensor ``name``'s transform by ``processor`` must run on numpy arrays."""
    patterns = _CPU_TENSORS.get(type(processor).__name__, ("*",))
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _needs_f32(processor: Any, name: str) -> bool:
    """Whether tensor ``name`` must reach ``processor`` as float32 values (see
    :data:`_F32_TENSORS`)."""
    patterns = _F32_TENSORS.get(type(processor).__name__, ())
    return _on_cpu(processor, name) or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@contextlib.contextmanager
def _corrections() -> Iterator[None]:
    """quantforge's run-time corrections to transformers 5.25, undone on exit:

    - ``get_gguf_hf_weights_map`` calls gguf-py's ``get_tensor_name_map(arch, layers)`` once per
      module of the model, and each call builds the whole name table again (seconds for a 7B
      model); the table is a pure function of its arguments, so the calls share one;
    - ``from_pretrained`` with a ``device_map`` first reserves as many device bytes as the model
      holds (``caching_allocator_warmup``), to speed up copying weights in; the weights handed to
      it are already on the device, so the reservation would only double the peak."""
    import gguf
    from transformers import modeling_utils

    saved = gguf.get_tensor_name_map, getattr(modeling_utils, "caching_allocator_warmup", None)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(saved[0])
    if saved[1] is not None:
        modeling_utils.caching_allocator_warmup = lambda *args, **kwargs: None
    try:
        yield
    finally:
        gguf.get_tensor_name_map = saved[0]
        if saved[1] is not None:
            modeling_utils.caching_allocator_warmup = saved[1]


def _parse(path: str) -> Tuple[Dict[str, Any], str]:
    """transformers' own parse of the file's metadata (config, tokenizer), no tensors, with
    :data:`CONFIG_CORRECTIONS` applied, and the file's GGUF architecture. An architecture
    transformers does not support is a ``ValueError`` naming it and those it supports."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        return _corrected(path, load_gguf_checkpoint(path, return_tensors=False))
    except ValueError as e:
        if "not supported" not in str(e):
            raise
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        raise ValueError(f"{path}: {e} transformers supports: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}") from e


# quantforge's corrections to transformers' config parse, per GGUF architecture: metadata keys
# transformers 5.25 ignores, and the config field each one sets. Without them transformers
# refuses a qwen2moe file that llama.cpp's convert_hf_to_gguf.py wrote (every expert's size
# taken from the dense feed-forward length: a size mismatch).
CONFIG_CORRECTIONS: Dict[str, Dict[str, str]] = {
    "qwen2moe": {
        "expert_feed_forward_length": "moe_intermediate_size",
        "expert_shared_feed_forward_length": "shared_expert_intermediate_size",
    },
}


def _corrected(path: str, parsed: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """``parsed`` with :data:`CONFIG_CORRECTIONS` applied where the file has the key, and the
    file's GGUF architecture (read from its metadata once, for both)."""
    from . import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    arch = str(meta.get("general.architecture", ""))
    for key, field in CONFIG_CORRECTIONS.get(arch, {}).items():
        value = meta.get(f"{arch}.{key}")
        if value is not None:
            parsed["config"][field] = int(value)
    return parsed, arch


def _config(parsed: Dict[str, Any]) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(**dict(parsed["config"]))


def load_config(path: Union[str, "os.PathLike[str]"]) -> Any:
    """The ``PretrainedConfig`` transformers makes for the file (``AutoConfig.for_model`` of
    what its GGUF parse reads)."""
    return _config(_parse(os.fspath(path))[0])


def load_state_dict(
    path: Union[str, "os.PathLike[str]"],
    device: Any = "cpu",
    dtype: Any = None,
    tp: Optional[Tuple[int, int]] = None,
    tp_plan: Optional[Mapping[str, str]] = None,
) -> Dict[str, Any]:
    """Every tensor of a GGUF file under the Hugging Face name transformers gives it, in its
    layout, as ``torch.Tensor`` of ``dtype`` (``None``: float32) on ``device``: what
    ``load_gguf_checkpoint(..., return_tensors=True)`` gives, with ggml's values. With
    ``tp=(rank, world_size)``, only that rank's shard of each tensor (see :func:`load_shards`,
    which also gives what the rank read)."""
    if tp is not None:
        return load_shards(path, tp, tp_plan, device=device, dtype=dtype)[0]
    return _load(os.fspath(path), device, dtype)[1]


def _processor(parsed: Dict[str, Any], arch: str, config: Any) -> Tuple[Any, Dict[str, str]]:
    """transformers' ``TensorProcessor`` for the architecture (made with the parsed config) and
    its map of GGUF names to Hugging Face names, for the model class ``config`` picks."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=parsed["config"])
    with _corrections():
        return processor, get_gguf_hf_weights_map(model, processor)


def _finish(t: Any, device: Any, dtype: Any) -> Any:
    """A processor's result (torch tensor or numpy array) as a contiguous torch tensor of
    ``dtype`` (``None``: as it is) on ``device``."""
    import torch

    t = t.contiguous() if isinstance(t, torch.Tensor) else torch.from_numpy(t.copy())
    if dtype is not None:
        t = t.to(dtype)
    return t.to(device)


def _load(path: str, device: Any, dtype: Any) -> Tuple[Any, Dict[str, Any]]:
    """The file's config and state dict, from one parse of its metadata. Every tensor is loaded
    by the pipelined whole-file load in ``dtype``; those :func:`_needs_f32` again in float32
    from the same open file."""
    from . import _convert, _dtype_name, safe_open

    parsed, arch = _parse(path)
    config = _config(parsed)
    processor, mapping = _processor(parsed, arch, config)
    out: Dict[str, Any] = {}
    # Processors that merge tensors (the MoE experts) write into this, as transformers' loop
    # lets them.
    parsed["tensors"] = {}
    rounded = _dtype_name(dtype) != "f32"  # else every tensor is loaded in float32 already
    with safe_open(path, framework="pt", device=device, dtype=dtype) as f:
        loaded = f.load_all()
        for name in list(loaded):
            values = loaded.pop(name)  # each tensor freed once transformed
            if rounded and _needs_f32(processor, name):
                values = _convert(f.file.get(name, dtype="f32"), "pt")
            if _on_cpu(processor, name):
                values = values.cpu().numpy()
            result = processor.process(
                weights=values, name=name, tensor_key_mapping=mapping, parsed_parameters=parsed
            )
            if result.name in mapping:
                out[mapping[result.name]] = _finish(result.weights, device, dtype)
    for hf_name, t in parsed["tensors"].items():
        out[hf_name] = _finish(t, device, dtype)
    return config, out


def load_shards(
    path: Union[str, "os.PathLike[str]"],
    tp: Tuple[int, int],
    tp_plan: Optional[Mapping[str, str]] = None,
    device: Any = "cpu",
    dtype: Any = None,
) -> Tuple[Dict[str, Any], Any]:
    """Rank ``tp[0]``'s shard, out of ``tp[1]`` ranks, of every tensor :func:`load_state_dict`
    gives (Hugging Face names and layouts), and a report of the file bytes this rank read
    (``bytes_read`` against ``tensor_bytes``; ``per_tensor`` by Hugging Face name, and
    ``source``, the GGUF tensor each was read from).

    ``tp_plan`` maps Hugging Face name patterns to ``"colwise"``, ``"rowwise"`` or
    ``"replicate"`` (default :data:`HF_LLAMA_PLAN`). Each shard is read from the file alone and
    then put through the architecture's processor: Q and K split on whole heads (K and V
    replicated in groups when the world is larger than the KV head count) before llama's
    reverse permutation, which works within each head; GGUF's fused ``attn_qkv`` and
    ``ffn_gate_up`` split per component. Sharding is implemented for the processors whose
    transform commutes with such a split (the default one: qwen2, phi3, ...; llama's,
    gemma2/3's and nemotron's); another architecture is a ``ValueError`` naming it."""
    from . import safe_open
    from ._tp import ShardReport, check_plan, check_rank, shard_all, style_of

    path = os.fspath(path)
    rank, world = tp
    check_rank(rank, world)
    plan = HF_LLAMA_PLAN if tp_plan is None else tp_plan
    check_plan(plan)
    parsed, arch = _parse(path)
    processor, mapping = _processor(parsed, arch, _config(parsed))
    kind = type(processor).__name__
    if kind not in _TP_PROCESSORS:
        raise ValueError(
            f"{path}: tp= is not implemented for architecture {arch!r}: transformers' {kind} "
            f"does not commute with a split on whole heads; tp= takes the architectures of "
            f"{', '.join(_TP_PROCESSORS)}"
        )
    report = ShardReport(rank, world)
    out: Dict[str, Any] = {}
    # Shards come in ``dtype`` from one pipelined load; those :func:`_needs_f32` in float32 from
    # a second one, rounded after their transform as transformers rounds them.
    for f32 in (False, True) if any(_needs_f32(processor, n) for n in mapping) else (False,):
        with safe_open(path, framework="pt", device=device, dtype="f32" if f32 else dtype) as f:
            meta = f.metadata()
            styles = {
                name: style_of(mapping[name], plan)
                for name in f.keys()
                if name in mapping and _needs_f32(processor, name) == f32
            }
            for name, (values, read, whole) in shard_all(f, styles, meta, rank, world).items():
                hf_name = mapping[name]
                rows = f.get_tensor_shape(name)[0] if values.dim() else 1
                shard_processor = type(processor)(config=_shard_config(parsed["config"], name, rows, values))
                result = shard_processor.process(
                    weights=values, name=name, tensor_key_mapping=mapping, parsed_parameters=parsed
                )
                out[hf_name] = _finish(result.weights, device, dtype)
                report.add(hf_name, name, styles[name], read, whole)
    return out, report


def _shard_config(config: Mapping[str, Any], name: str, rows: int, shard: Any) -> Mapping[str, Any]:
    """The processor config for a shard of Q or K holding ``shard.shape[0]`` of the tensor's
    ``rows`` rows: the head count scaled to the heads it holds (llama's processor reverses its
    permutation per head, sizing heads from the count). Other tensors keep ``config``."""
    key = "num_attention_heads" if ".attn_q." in name else "num_key_value_heads" if ".attn_k." in name else None
    heads = config.get(key) if key else None
    if not heads or not shard.dim() or shard.shape[0] == rows:
        return config
    return dict(config, **{key: heads * shard.shape[0] // rows})


def load_tokenizer(path: Union[str, "os.PathLike[str]"], **kwargs: Any) -> Any:
    """The tokenizer the GGUF file carries, as transformers builds it: its own conversion of
    llama.cpp's ``tokenizer.ggml.*`` metadata into a fast tokenizer
    (``AutoTokenizer.from_pretrained(folder, gguf_file=name, **kwargs)``). A separate call from
    the weights: it reads metadata only.

    A file without a tokenizer (no ``tokenizer.ggml.model`` or ``tokenizer.ggml.tokens``, as
    quantforge's synthetic models) is a ``ValueError`` naming the file, and so is a tokenizer
    transformers cannot build (its message, after the file's name)."""
    from transformers import AutoTokenizer

    from . import safe_open

    path = os.fspath(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    missing = [k for k in ("tokenizer.ggml.model", "tokenizer.ggml.tokens") if k not in meta]
    if missing:
        raise ValueError(f"{path}: the file carries no tokenizer (no {' or '.join(missing)} in its metadata)")
    folder, name = os.path.split(os.path.abspath(path))
    try:
        return AutoTokenizer.from_pretrained(folder, gguf_file=name, **kwargs)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def from_pretrained(path: Union[str, "os.PathLike[str]"], device: Any = "cpu", dtype: Any = None) -> Any:
    """The model transformers would pick for the file's config (``AutoModelForCausalLM``'s
    class), with :func:`load_state_dict`'s weights: built by transformers from the config and
    that state dict (``from_pretrained(None, config=..., state_dict=...)``), so buffers it
    computes (rotary ``inv_freq``), tied weights and modules kept in float32 come out as
    transformers sets them. ``dtype=None`` is float32. transformers' hub kernels stay off
    (``use_kernels=False``): loading a local file fetches nothing from the network, and the
    forward pass is transformers' own PyTorch code, as with its own GGUF loading."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    config, state = _load(os.fspath(path), device, dtype)
    model_class = AutoModelForCausalLM._model_mapping[type(config)]
    device_map = None if str(device) == "cpu" else str(device)
    with _corrections():
        return model_class.from_pretrained(
            None, config=config, state_dict=state, dtype=dtype, device_map=device_map, use_kernels=False
        )
