"""PyTorch helpers, as ``safetensors.torch`` has them.

``torch`` is imported when a function here is called, not when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from . import PathLike, _device_name, _dtype_name
from ._native import File

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["load_file"]


def load_file(
    filename: PathLike,
    device: Any = "cpu",
    dtype: Any = None,
    progress: bool = False,
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

    The tensors are handed over through DLPack: no copy, and each one's memory is freed when
    the torch tensor is.
    """
    import torch

    f = File(filename, device=_device_name(device), dtype=_dtype_name(dtype))
    try:
        loaded = f.load_all(progress=progress)
    finally:
        f.close()
    return {name: torch.from_dlpack(t) for name, t in loaded}
