"""diffusers' GGUF models, dequantized through quantforge (an opt-in; tested with diffusers
0.42).

diffusers keeps a GGUF model's weights as ``GGUFParameter`` blocks and expands each one in every
forward pass with PyTorch ops written in Python (``dequantize_gguf_tensor``), which know 12
block types plus BF16, or with CUDA kernels downloaded from a model hub after the user trusts
remote code. After :func:`enable`:

- ``dequantize_gguf_tensor`` gives ggml's values bit for bit (float32, which callers cast to
  their compute dtype), through quantforge's kernels on CUDA and its fast CPU path elsewhere;
- ``GGUFLinear`` expands its weight straight into its compute dtype (the same bits as float32
  then ``.to``);
- every block type quantforge dequantizes can be loaded (``SUPPORTED_GGUF_QUANT_TYPES`` is
  extended): the i-quants IQ1–IQ3, TQ1_0/TQ2_0, MXFP4 and NVFP4 among them.

Call it once, before loading the model::

    import quantforge.diffusers
    quantforge.diffusers.enable()
    model = FluxTransformer2DModel.from_single_file(path, quantization_config=GGUFQuantizationConfig(...))

:func:`disable` restores diffusers' own functions.
"""

from __future__ import annotations

from typing import Any, Dict

__all__ = ["enable", "disable", "enabled"]

_saved: Dict[str, Any] = {}


def _modules() -> Any:
    from diffusers.quantizers.gguf import gguf_quantizer, utils

    return utils, gguf_quantizer


def _quantforge_types() -> list:
    """Every ``gguf.GGMLQuantizationType`` that quantforge dequantizes with a kernel, plus BF16."""
    import gguf

    from ._torch_ops import type_info

    types = []
    for t in gguf.GGMLQuantizationType:
        try:
            name = type_info(int(t))[1]
        except ValueError:
            continue
        if name not in ("F32", "F16", "F64"):
            types.append(t)
    return types


def _dequantize_gguf_tensor(tensor: Any) -> Any:
    """diffusers' ``dequantize_gguf_tensor``: a ``GGUFParameter``'s values (float32, ggml's
    bits); any other tensor as it is."""
    import torch

    from ._torch_ops import dequantize

    if not hasattr(tensor, "quant_type"):
        return tensor
    return dequantize(tensor, int(tensor.quant_type), tuple(tensor.quant_shape), torch.float32)


def _forward_native(self: Any, inputs: Any) -> Any:
    """``GGUFLinear.forward_native``: the weight expanded straight into the compute dtype."""
    import torch

    from ._torch_ops import dequantize

    w = self.weight
    dtype = self.compute_dtype or inputs.dtype
    if hasattr(w, "quant_type"):
        weight = dequantize(w, int(w.quant_type), tuple(w.quant_shape), dtype)
    else:
        weight = w.to(dtype)
    bias = self.bias.to(dtype) if self.bias is not None else None
    return torch.nn.functional.linear(inputs, weight, bias)


def _fused_mul_mat_gguf(x: Any, qweight: Any, qweight_type: int) -> Any:
    """``_fused_mul_mat_gguf`` (the path taken with diffusers' remote CUDA kernels): the weight
    expanded by quantforge, then a matmul."""
    from ._torch_ops import dequantize

    weight = dequantize(qweight, int(qweight_type), tuple(qweight.quant_shape), x.dtype)
    return x @ weight.T


def enable() -> None:
    """Makes diffusers' GGUF dequantization go through quantforge (see the module's doc).
    Calling it again does nothing."""
    if _saved:
        return
    utils, quantizer = _modules()
    _saved.update(
        dequantize=utils.dequantize_gguf_tensor,
        quantizer_dequantize=quantizer.dequantize_gguf_tensor,
        forward_native=utils.GGUFLinear.forward_native,
        fused=utils._fused_mul_mat_gguf,
        supported=list(utils.SUPPORTED_GGUF_QUANT_TYPES),
    )
    utils.dequantize_gguf_tensor = _dequantize_gguf_tensor
    quantizer.dequantize_gguf_tensor = _dequantize_gguf_tensor
    utils.GGUFLinear.forward_native = _forward_native
    utils._fused_mul_mat_gguf = _fused_mul_mat_gguf
    # The list is imported by name where files are read: extend it in place.
    for t in _quantforge_types():
        if t not in utils.SUPPORTED_GGUF_QUANT_TYPES:
            utils.SUPPORTED_GGUF_QUANT_TYPES.append(t)


def disable() -> None:
    """Restores diffusers' own dequantization."""
    if not _saved:
        return
    utils, quantizer = _modules()
    utils.dequantize_gguf_tensor = _saved["dequantize"]
    quantizer.dequantize_gguf_tensor = _saved["quantizer_dequantize"]
    utils.GGUFLinear.forward_native = _saved["forward_native"]
    utils._fused_mul_mat_gguf = _saved["fused"]
    utils.SUPPORTED_GGUF_QUANT_TYPES[:] = _saved["supported"]
    _saved.clear()


def enabled() -> bool:
    """Whether :func:`enable` is in force."""
    return bool(_saved)
