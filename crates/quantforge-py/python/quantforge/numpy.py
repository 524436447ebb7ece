"""NumPy helpers, as ``safetensors.numpy`` has them (host memory only).

``numpy`` is imported when a function here is called, not when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from . import PathLike, _dtype_name
from ._native import File

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["load_file"]


def load_file(filename: PathLike, dtype: Any = None, progress: bool = False) -> Dict[str, "np.ndarray"]:
    """Loads every tensor of a GGUF file into a dict name -> ``numpy.ndarray`` (file order),
    dequantized on the CPU (all cores).

    Args:
        filename: path of the GGUF file.
        dtype: ``None``/``"f32"`` (float32), ``"f16"`` (float16, rounded to nearest-even), or
            ``"native"`` (the quantized blocks as ``uint8``, shape ``(rows, row_bytes)``).
            Integer tensors keep their type. numpy has no bfloat16.
        progress: draw a progress bar on stderr (when it is a terminal).

    The arrays wrap quantforge's buffers through DLPack: no copy of the values.
    """
    import numpy

    name = _dtype_name(dtype)
    if name == "bf16":
        raise ValueError("numpy has no bfloat16: ask for dtype='f32' or 'f16'")
    f = File(filename, device="cpu", dtype=name)
    try:
        loaded = f.load_all(progress=progress)
    finally:
        f.close()
    return {n: numpy.from_dlpack(t) for n, t in loaded}
