"""PyTorch helpers, as ``safetensors.torch`` has them, and weights kept quantized in PyTorch.

``load_file`` loads a file's tensors. ``dequantize`` (and the ``ggml_dequantize`` and
``dequantize_tensor`` forms that vLLM, diffusers and ComfyUI-GGUF call) expands GGUF blocks
that a tensor already holds, through the ``quantforge::dequantize`` custom ops (torch 2.4 or
later); ``GGUFLinear`` keeps a linear layer's weight as blocks and expands it in every forward
pass; ``replace_linear`` swaps a model's ``nn.Linear`` modules for them; ``load_native`` gives
a file's blocks with their types and shapes.

``torch`` is imported when a function here is first used, not when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from . import PathLike, _device_name, _dtype_name
from ._native import File

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "load_file",
    "load_shards",
    "dequantize",
    "ggml_dequantize",
    "dequantize_tensor",
    "GGUFLinear",
    "NativeTensor",
    "load_native",
    "replace_linear",
]

_OPS = ("dequantize", "ggml_dequantize", "dequantize_tensor", "type_info")
_NN = ("GGUFLinear", "NativeTensor", "load_native", "replace_linear")


def __getattr__(name: str) -> Any:
    """The op wrappers and layers, imported (and the custom ops registered) on first use."""
    if name in _OPS:
        from . import _torch_ops

        return getattr(_torch_ops, name)
    if name in _NN:
        from . import _torch_nn

        return getattr(_torch_nn, name)
    raise AttributeError(f"module 'quantforge.torch' has no attribute {name!r}")


def load_file(
    filename: PathLike,
    device: Any = "cpu",
    dtype: Any = None,
    progress: bool = False,
    tp: Optional[Tuple[int, int]] = None,
    tp_plan: Optional[Mapping[str, str]] = None,
) -> Dict[str, "torch.Tensor"]:
    """Loads every tensor of a GGUF file into a dict name -> ``torch.Tensor`` (file order).

    Args:
        filename: path of the GGUF file.
        device: ``"cpu"``, ``"cuda:N"``, ``"auto"``, an int (CUDA ordinal) or a ``torch.device``.
            On a GPU the whole model is loaded by the pipelined loader (quantized bytes up,
            dequantized there).
        dtype: ``torch.float32`` (the default, also ``None``), ``torch.float16``,
            ``torch.bfloat16`` (rounded to nearest-even), or ``"native"`` (the quantized
            blocks as ``uint8``, shape ``(rows, row_bytes)``). Integer tensors keep their type.
        progress: draw a progress bar on stderr (when it is a terminal).
        tp: ``(rank, world_size)``: load only this rank's shard of each tensor, reading only
            its bytes (see :func:`load_shards`).
        tp_plan: name patterns to ``"colwise"``, ``"rowwise"`` or ``"replicate"`` (default:
            the plan for llama.cpp's tensor names).

    The tensors are handed over through DLPack: no copy, and each one's memory is freed when
    the torch tensor is.
    """
    import torch

    if tp is not None:
        return load_shards(filename, tp, tp_plan, device=device, dtype=dtype)[0]
    f = File(filename, device=_device_name(device), dtype=_dtype_name(dtype))
    try:
        loaded = f.load_all(progress=progress)
    finally:
        f.close()
    return {name: torch.from_dlpack(t) for name, t in loaded}


def load_shards(
    filename: PathLike,
    tp: Tuple[int, int],
    tp_plan: Optional[Mapping[str, str]] = None,
    device: Any = "cpu",
    dtype: Any = None,
) -> Tuple[Dict[str, "torch.Tensor"], Any]:
    """Rank ``tp[0]``'s shard of every tensor of a GGUF file, out of ``tp[1]`` ranks, and a
    report of the file bytes this rank read (``report.bytes_read`` against
    ``report.tensor_bytes``). Colwise tensors take their rows (on whole heads for Q, K, V;
    per component for fused ``attn_qkv`` and gate/up), rowwise ones their columns; only the
    rows and blocks a shard covers are read."""
    from . import safe_open
    from ._tp import load_shards as shards

    with safe_open(filename, framework="pt", device=device, dtype=dtype) as f:
        return shards(f, tp[0], tp[1], tp_plan)
