"""Weights kept quantized in PyTorch: :class:`GGUFLinear`, :func:`replace_linear` and
:func:`load_native` (imported by :mod:`quantforge.torch` on first use)."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F

from ._torch_ops import dequantize, type_info

__all__ = ["GGUFLinear", "NativeTensor", "load_native", "replace_linear"]


class NativeTensor(NamedTuple):
    """A tensor's GGUF blocks with what they hold: ``blocks`` (``uint8``, ``(rows, row_bytes)``),
    ``ggml_type`` (its name, ``"Q4_K"``) and ``shape`` (the values' shape, PyTorch order)."""

    blocks: torch.Tensor
    ggml_type: str
    shape: torch.Size


def load_native(filename: Union[str, "os.PathLike[str]"], device: Any = "cpu") -> Dict[str, NativeTensor]:
    """Every tensor of a GGUF file as its native blocks on ``device``, each with its type and
    logical shape (``load_file(..., dtype="native")`` gives the blocks alone)."""
    from . import safe_open

    out: Dict[str, NativeTensor] = {}
    with safe_open(filename, framework="pt", device=device, dtype="native") as f:
        for name in f.keys():
            blocks, ty = f.get_native(name)
            out[name] = NativeTensor(blocks, ty, torch.Size(f.get_tensor_shape(name)))
    return out


class _DequantizedLinear(torch.autograd.Function):
    """``F.linear`` of the expanded weight, expanding it again in backward rather than saving
    it: between forward and backward only the blocks are held."""

    @staticmethod
    def forward(ctx, x, blocks, ggml_type, shape, bias):  # type: ignore[override]
        w = dequantize(blocks, ggml_type, shape, x.dtype)
        ctx.save_for_backward(blocks)
        ctx.ggml_type, ctx.shape, ctx.has_bias = ggml_type, shape, bias is not None
        return F.linear(x, w, bias)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (blocks,) = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            w = dequantize(blocks, ctx.ggml_type, ctx.shape, grad.dtype)
            grad_x = grad.matmul(w)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, None, None, None, grad_bias


class GGUFLinear(torch.nn.Module):
    """A linear layer whose weight stays as GGUF blocks on the device and is expanded, into the
    input's dtype, in every forward pass (and again in backward).

    The blocks are a ``uint8`` buffer ``weight`` of shape ``(out_features, row_bytes)``; the
    type is ``ggml_type`` (its name) and the bias, if any, an ordinary parameter. Works under
    ``torch.inference_mode``, with autograd for the activations (a LoRA on top trains without
    an expanded copy of the weight held between forward and backward), and under
    ``torch.compile``.
    """

    def __init__(self, blocks: torch.Tensor, ggml_type: Any, shape: Any, bias: Optional[torch.Tensor] = None):
        super().__init__()
        _, name, be, bb = type_info(ggml_type)
        out_features, in_features = (int(d) for d in shape)
        blocks = blocks.reshape(out_features, in_features // be * bb)
        self.register_buffer("weight", blocks)
        self.ggml_type = name
        self.in_features, self.out_features = in_features, out_features
        self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None

    @classmethod
    def from_file(cls, f: Any, name: str, bias_name: Optional[str] = None, device: Any = None) -> "GGUFLinear":
        """The layer of tensor ``name`` of an open ``safe_open`` file ``f`` (its blocks on the
        file's device, or ``device``), with tensor ``bias_name`` as its bias if given."""
        blocks, ty = f.get_native(name)
        bias = f.get_tensor(bias_name) if bias_name else None
        if device is not None:
            blocks = blocks.to(device)
            bias = bias.to(device) if bias is not None else None
        return cls(blocks, ty, f.get_tensor_shape(name), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        shape = (self.out_features, self.in_features)
        return _DequantizedLinear.apply(x, self.weight, self.ggml_type, shape, bias)

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The expanded weight, ``(out_features, in_features)`` of ``dtype``."""
        return dequantize(self.weight, self.ggml_type, (self.out_features, self.in_features), dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ggml_type={self.ggml_type}, bias={self.bias is not None}"


def replace_linear(
    model: torch.nn.Module,
    filename: Union[str, "os.PathLike[str]", Any],
    name_map: Union[Mapping[str, str], Callable[[str], Optional[str]]],
    device: Any = None,
) -> Dict[str, str]:
    """Swaps ``model``'s ``nn.Linear`` modules for :class:`GGUFLinear` ones whose blocks come from
    the GGUF file ``filename`` (a path or an open ``safe_open`` file). ``name_map`` gives, for a
    module's qualified name (``"layers.0.attn.q_proj"``), the GGUF name of its weight
    (``"blk.0.attn_q.weight"``), or ``None`` to leave the module as it is; a bias is taken from
    the same name with ``.bias`` when the file has it. Returns ``{module: gguf name}`` of what
    was swapped. A shape that disagrees with the module's is a ``ValueError``."""
    from . import safe_open

    lookup = name_map.get if isinstance(name_map, Mapping) else name_map
    if isinstance(filename, (str, os.PathLike)):
        with safe_open(filename, framework="pt", device="cpu", dtype="native") as f:
            return _swap(model, f, lookup, device)
    return _swap(model, filename, lookup, device)


def _swap(model: torch.nn.Module, f: Any, lookup: Callable[[str], Optional[str]], device: Any) -> Dict[str, str]:
    swapped: Dict[str, str] = {}
    for qual, module in list(model.named_modules()):
        gguf_name = lookup(qual) if isinstance(module, torch.nn.Linear) else None
        if gguf_name is None:
            continue
        shape = tuple(f.get_tensor_shape(gguf_name))
        if shape != (module.out_features, module.in_features):
            raise ValueError(f"{qual}: nn.Linear of ({module.out_features}, {module.in_features}), {gguf_name} is {shape}")
        bias_name = gguf_name[: -len(".weight")] + ".bias" if gguf_name.endswith(".weight") else None
        if bias_name not in f.keys():
            bias_name = None
        dev = device if device is not None else module.weight.device
        layer = GGUFLinear.from_file(f, gguf_name, bias_name, device=dev)
        parent, _, child = qual.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
        swapped[qual] = gguf_name
    return swapped
