"""transformers' world: a GGUF file's tensors under Hugging Face's names and layouts, with the
config transformers reads from it (an optional extra: transformers is imported only here;
tested with transformers 5.25).

transformers' own tables are used at run time, not copies of them: the config keys and the
architecture checks of ``load_gguf_checkpoint``, the name map of ``get_gguf_hf_weights_map`` and
the per-architecture ``TensorProcessor`` (llama's reverse permutation of Q and K, gemma's norms,
the MoE expert splits, ...). The values are ggml's (quantforge's dequantization, not gguf-py's,
where the two differ: NaN signs in IQ2_XS/IQ3_S, quieting of f16 signalling NaNs), put through
the same transform:

- on the device, as torch tensors, for the processors whose transform only moves data or uses
  IEEE basic arithmetic (the default processor, llama's, gemma2/3's): the same bits as
  transformers' numpy;
- on the CPU in float32 on numpy arrays, as transformers runs it, for every other processor
  (its transform may call numpy functions such as ``log``), then moved to the device.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple, Union

__all__ = ["from_pretrained", "load_state_dict", "load_config", "TESTED_TRANSFORMERS"]

TESTED_TRANSFORMERS = "5.25"

# Processors whose transform is data movement or IEEE basic arithmetic on whatever array it is
# given (checked against transformers 5.25's source): safe to run on device tensors.
_DEVICE_SAFE = ("TensorProcessor", "LlamaTensorProcessor", "Gemma2TensorProcessor")


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
    path: Union[str, "os.PathLike[str]"], device: Any = "cpu", dtype: Any = None
) -> Dict[str, Any]:
    """Every tensor of a GGUF file under the Hugging Face name transformers gives it, in its
    layout, as ``torch.Tensor`` of ``dtype`` (``None``: float32) on ``device``: what
    ``load_gguf_checkpoint(..., return_tensors=True)`` gives, with ggml's values."""
    return _load(os.fspath(path), device, dtype)[1]


def _load(path: str, device: Any, dtype: Any) -> Tuple[Any, Dict[str, Any]]:
    """The file's config and state dict, from one parse of its metadata."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    from . import safe_open

    parsed, arch = _parse(path)
    config = _config(parsed)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    processor_class = TENSOR_PROCESSORS.get(arch, TensorProcessor)
    processor = processor_class(config=parsed["config"])
    mapping = get_gguf_hf_weights_map(model, processor)
    on_device = processor_class.__name__ in _DEVICE_SAFE
    where = device if on_device else "cpu"
    out: Dict[str, Any] = {}
    # Processors that merge tensors (the MoE experts) write into this, as transformers' loop
    # lets them.
    parsed["tensors"] = {}
    with safe_open(path, framework="pt", device=where, dtype="f32") as f:
        for name in f.keys():
            values = f.get_tensor(name)
            result = processor.process(
                weights=values if on_device else values.numpy(),
                name=name,
                tensor_key_mapping=mapping,
                parsed_parameters=parsed,
            )
            if result.name not in mapping:
                continue
            t = result.weights
            t = t.contiguous() if isinstance(t, torch.Tensor) else torch.from_numpy(t.copy())
            if dtype is not None:
                t = t.to(dtype)
            out[mapping[result.name]] = t.to(device)
    for hf_name, t in parsed["tensors"].items():
        out[hf_name] = (t if dtype is None else t.to(dtype)).to(device)
    return config, out


def from_pretrained(path: Union[str, "os.PathLike[str]"], device: Any = "cpu", dtype: Any = None) -> Any:
    """The model transformers would pick for the file's config (``AutoModelForCausalLM``'s
    class), with :func:`load_state_dict`'s weights: built by transformers from the config and
    that state dict (``from_pretrained(None, config=..., state_dict=...)``), so buffers it
    computes (rotary ``inv_freq``), tied weights and modules kept in float32 come out as
    transformers sets them. ``dtype=None`` is float32."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    config, state = _load(os.fspath(path), device, dtype)
    model_class = AutoModelForCausalLM._model_mapping[type(config)]
    device_map = None if str(device) == "cpu" else str(device)
    return model_class.from_pretrained(None, config=config, state_dict=state, dtype=dtype, device_map=device_map)
