"""The ``quantforge::dequantize`` and ``quantforge::dequantize_out`` PyTorch custom ops and the
wrappers that check their arguments (imported by :mod:`quantforge.torch` on first use: it needs
torch 2.4 or later).

Both ops expand GGUF blocks that a tensor already holds. On a CUDA device the kernel is queued
on PyTorch's current stream for the blocks' device, without a synchronisation; on the CPU the
fast CPU path runs on all cores. Each op has a fake implementation, so ``torch.compile``
traces it as one node, and nothing in a CUDA call allocates through the driver, loads a module
(after a first call on that device) or waits, so a CUDA graph captures it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from . import _native

__all__ = ["dequantize", "ggml_dequantize", "dequantize_tensor", "type_info"]

if tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 4):  # pragma: no cover
    raise ImportError(f"quantforge.torch.dequantize needs torch 2.4 or later, not {torch.__version__}")

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
# ggml's float types as the torch dtype their blocks hold (one value per "block").
_FLOAT_VIEWS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
# Rows of a kernel's blocks and outputs must start on 16-byte boundaries.
_ALIGN = 16


def _type_table() -> Dict[Any, Tuple[int, str, int, int, str]]:
    """Every ggml type the native module knows, by id and by upper-case name, read once so that
    argument checks are plain Python (``torch.compile`` traces them without a graph break)."""
    table: Dict[Any, Tuple[int, str, int, int, str]] = {}
    for tid in range(256):
        try:
            info = _native.ggml_type_info(tid)
        except ValueError:
            continue
        table[tid] = info
        table[info[1].upper()] = info
    return table


_TYPES = _type_table()


def type_info(ggml_type: Any) -> Tuple[int, str, int, int]:
    """``(id, name, block_elems, block_bytes)`` of a ggml type given by name (``"Q4_K"``), id, or
    ``gguf.GGMLQuantizationType``. Raises ``ValueError`` for an unknown type, one no linked
    format dequantizes (Q8_1, Q8_K: ggml has no dequantizer for them either), and the integer
    types (which hold ids, not weights)."""
    key = ggml_type.value if hasattr(ggml_type, "value") and not isinstance(ggml_type, int) else ggml_type
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise ValueError(f"ggml_type {ggml_type!r}: expected a name, an id or a gguf.GGMLQuantizationType")
    info = _TYPES.get(int(key) if isinstance(key, int) else key.strip().upper())
    if info is None:
        what = f"id {int(key)}" if isinstance(key, int) else f"'{key}'"
        raise ValueError(f"unknown ggml type {what}")
    tid, name, be, bb, kind = info
    if kind == "unsupported":
        raise ValueError(f"ggml type {name} (id {tid}) cannot be dequantized: no format handles it")
    if kind == "integer":
        raise ValueError(f"ggml type {name} is an integer type (ids, not weights): it has no float values")
    return tid, name, be, bb


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The tensor as a plain ``torch.Tensor`` (diffusers' ``GGUFParameter``, ComfyUI's
    ``GGMLTensor`` and other subclasses stripped, the storage shared)."""
    if type(t) is torch.Tensor:
        return t
    return t.as_subclass(torch.Tensor)


def _shape_of(blocks: torch.Tensor, name: str, be: int, bb: int, shape: Optional[Sequence[int]]) -> List[int]:
    """The logical shape: as given, or for 2-D blocks ``(rows, row_bytes)`` what the rows imply.
    Checked against the bytes."""
    if shape is None:
        if blocks.dim() != 2:
            raise ValueError(
                f"blocks of shape {tuple(blocks.shape)}: give shape= for blocks that are not 2-D (rows, row_bytes)"
            )
        rows, row_bytes = blocks.shape
        if row_bytes % bb:
            raise ValueError(f"rows of {row_bytes} bytes are not whole {name} blocks of {bb} bytes")
        shape = (rows, row_bytes // bb * be)
    shape = [int(d) for d in shape]
    n = math.prod(shape)
    if any(d < 0 for d in shape) or n % be:
        raise ValueError(f"shape {tuple(shape)} holds {n} values, not whole {name} blocks of {be} values")
    want = n // be * bb
    if blocks.numel() != want:
        raise ValueError(
            f"shape {tuple(shape)} of {name} takes {want} bytes ({n // be} blocks of {bb}); "
            f"the blocks have {blocks.numel()}"
        )
    return shape


def _check_blocks(blocks: torch.Tensor) -> torch.Tensor:
    if not isinstance(blocks, torch.Tensor):
        raise TypeError(f"blocks must be a torch.Tensor of uint8, not {type(blocks).__name__}")
    blocks = _plain(blocks)
    if blocks.dtype != torch.uint8:
        raise TypeError(f"blocks must be torch.uint8, not {blocks.dtype}")
    if not blocks.is_contiguous():
        raise ValueError(f"blocks must be contiguous (shape {tuple(blocks.shape)}, strides {blocks.stride()})")
    return blocks


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in _DTYPE_NAMES:
        raise TypeError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, not {dtype}")


def _info(ggml_type: Any) -> Tuple[int, str, int, int]:
    """:func:`type_info`, with one dictionary lookup for a known id or upper-case name."""
    info = _TYPES.get(ggml_type) if type(ggml_type) in (int, str) else None
    if info is None or info[4] in ("integer", "unsupported"):
        return type_info(ggml_type)
    return info[0], info[1], info[2], info[3]


def _current_stream(device_index: int) -> int:
    """The raw ``cudaStream_t`` of PyTorch's current stream on a device."""
    return torch.cuda.current_stream(device_index).cuda_stream


# PyTorch's own accessor for the raw stream, when it has one: it skips building a Stream object
# on every call (the op's host time is one of its benchmarked figures).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or _current_stream


def _run(blocks: torch.Tensor, type_id: int, out: torch.Tensor) -> None:
    """Expands ``blocks`` into ``out``, on the CPU or on the current stream of the blocks' CUDA
    device."""
    # The ops can be called directly (torch.ops.quantforge.*): the native call reads and
    # writes memory by address, so what it is given is checked here, whoever called.
    name = _info(type_id)[1]
    _check_blocks(blocks)
    _check_dtype(out.dtype)
    if not out.is_contiguous() or out.device != blocks.device:
        raise ValueError(f"out must be contiguous and on {blocks.device}")
    n, dt = out.numel(), _DTYPE_NAMES[out.dtype]
    if blocks.is_cuda:
        _run_cuda(blocks, type_id, name, out, n, dt)
    elif blocks.device.type == "cpu":
        _native._dequantize_host(blocks.data_ptr(), blocks.numel(), type_id, n, out.data_ptr(), n * out.element_size(), dt)
    else:
        raise ValueError(f"blocks on {blocks.device}: quantforge dequantizes on the CPU and on CUDA devices")


def _run_cuda(blocks: torch.Tensor, type_id: int, name: str, out: torch.Tensor, n: int, dt: str) -> None:
    if name in _FLOAT_VIEWS:
        # No kernel for plain floats: an IEEE conversion through f32, as ggml converts them.
        out.copy_(blocks.view(_FLOAT_VIEWS[name]).reshape(out.shape).to(torch.float32))
        return
    # The kernels read and write 16-byte vectors: misaligned memory takes an aligned copy
    # (stream-ordered allocations of PyTorch's caching allocator, safe to free at once).
    src = blocks if blocks.data_ptr() % _ALIGN == 0 else blocks.clone()
    dst = out if out.data_ptr() % _ALIGN == 0 else torch.empty_like(out)
    index = blocks.get_device()
    _native._dequantize_cuda(
        src.data_ptr(), src.numel(), type_id, n, dst.data_ptr(), n * dst.element_size(), dt, index, _raw_stream(index)
    )
    if dst is not out:
        out.copy_(dst)


def _dequantize_impl(blocks: torch.Tensor, ggml_type: int, shape: List[int], dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=blocks.device)
    _run(blocks, ggml_type, out)
    return out


def _dequantize_out_impl(blocks: torch.Tensor, ggml_type: int, out: torch.Tensor) -> None:
    _run(blocks, ggml_type, out)


# The ops are defined with torch.library's schema API rather than ``torch.library.custom_op``:
# the same operators to the dispatcher, torch.compile and opcheck, without custom_op's Python
# layers around every call (a third of an empty custom_op's host time). One implementation
# serves every backend key; ``_run`` refuses devices other than the CPU and CUDA by name.
_LIB = torch.library.Library("quantforge", "DEF")
_LIB.define("dequantize(Tensor blocks, int ggml_type, SymInt[] shape, ScalarType dtype) -> Tensor")
_LIB.define("dequantize_out(Tensor blocks, int ggml_type, Tensor(a!) out) -> ()")
_LIB.impl("dequantize", _dequantize_impl, "CompositeExplicitAutograd")
_LIB.impl("dequantize_out", _dequantize_out_impl, "CompositeExplicitAutograd")


@torch.library.register_fake("quantforge::dequantize", lib=_LIB)
def _(blocks: torch.Tensor, ggml_type: int, shape: List[int], dtype: torch.dtype) -> torch.Tensor:
    return blocks.new_empty(shape, dtype=dtype)


@torch.library.register_fake("quantforge::dequantize_out", lib=_LIB)
def _(blocks: torch.Tensor, ggml_type: int, out: torch.Tensor) -> None:
    return None


_OP = torch.ops.quantforge.dequantize.default
_OUT_OP = torch.ops.quantforge.dequantize_out.default


def dequantize(
    blocks: torch.Tensor,
    ggml_type: Any,
    shape: Optional[Sequence[int]] = None,
    dtype: torch.dtype = torch.float16,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Expands GGUF blocks held in a tensor into values, bit for bit as ggml's CPU dequantizer
    gives them (rounded to nearest-even for float16/bfloat16).

    Args:
        blocks: a contiguous ``uint8`` tensor (a subclass such as diffusers' ``GGUFParameter``
            is stripped), 2-D ``(rows, row_bytes)`` or flat bytes, on the CPU or a CUDA device.
        ggml_type: the blocks' type: a name (``"Q4_K"``), an id, or a
            ``gguf.GGMLQuantizationType``.
        shape: the values' shape; for 2-D blocks it defaults to ``(rows, values_per_row)``,
            for flat bytes it is required.
        dtype: ``torch.float16`` (default), ``torch.bfloat16`` or ``torch.float32``.
        out: a contiguous tensor of ``dtype``, of the values' number of elements, on the blocks'
            device, to write into instead of a new one (its shape is kept).

    On CUDA the kernel runs on PyTorch's current stream for the blocks' device, without a
    synchronisation. Bad arguments raise ``TypeError`` or ``ValueError`` saying what was
    expected and what came.
    """
    blocks = _check_blocks(blocks)
    tid, name, be, bb = _info(ggml_type)
    shape = _shape_of(blocks, name, be, bb, shape)
    if out is None:
        _check_dtype(dtype)
        return _OP(blocks, tid, shape, dtype)
    _check_out(out, blocks, math.prod(shape))
    _OUT_OP(blocks, tid, out)
    return out


def _check_out(out: torch.Tensor, blocks: torch.Tensor, n: int) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, not {type(out).__name__}")
    _check_dtype(out.dtype)
    if out.device != blocks.device:
        raise ValueError(f"out is on {out.device}, the blocks on {blocks.device}")
    if not out.is_contiguous():
        raise ValueError(f"out must be contiguous (shape {tuple(out.shape)}, strides {out.stride()})")
    if out.numel() != n:
        raise ValueError(f"out has {out.numel()} elements; the blocks hold {n} values")


def ggml_dequantize(W: torch.Tensor, quant_type: Any, m: int, n: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """vLLM's and diffusers' ``ggml_dequantize(W, quant_type, m, n, dtype)``: ``W``'s blocks as
    an ``(m, n)`` tensor of ``dtype`` (float16 when ``None``)."""
    return dequantize(W, quant_type, (m, n), dtype or torch.float16)


def dequantize_tensor(tensor: torch.Tensor, dtype: Optional[torch.dtype] = None, dequant_dtype: Any = None) -> torch.Tensor:
    """ComfyUI-GGUF's ``dequantize_tensor(tensor, dtype)``: a tensor carrying ``tensor_type``
    (a ``gguf.GGMLQuantizationType``) and ``tensor_shape``. Float types (F32, F16, BF16) are
    converted with ``.to``, as ComfyUI does; a tensor without ``tensor_type`` is returned
    converted to ``dtype``. ``dequant_dtype`` (ComfyUI's intermediate type) is accepted and
    unused: quantforge expands straight into ``dtype``."""
    qtype = getattr(tensor, "tensor_type", None)
    oshape = getattr(tensor, "tensor_shape", None)
    if qtype is None:
        return tensor if dtype is None else tensor.to(dtype)
    _, name, _, _ = type_info(qtype)
    if name in ("F32", "F16", "BF16"):
        plain = _plain(tensor)
        return plain if dtype is None else plain.to(dtype)
    return dequantize(tensor, qtype, tuple(oshape), dtype or torch.float16)
