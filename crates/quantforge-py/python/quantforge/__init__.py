"""quantforge: load GGUF quantized weights onto GPUs and dequantize them there, bit-exact with ggml.

The conventions of ``safetensors``::

    from quantforge import safe_open

    with safe_open("model.gguf", framework="pt", device="cuda:0", dtype="f16") as f:
        for name in f.keys():
            t = f.get_tensor(name)          # a torch.Tensor on cuda:0, no copy

    import quantforge.torch
    state = quantforge.torch.load_file("model.gguf", device="cuda:0", progress=True)

Tensors leave through DLPack (``__dlpack__``), so ``torch.from_dlpack``, ``numpy.from_dlpack``
(CPU), ``cupy.from_dlpack`` and ``jax.dlpack.from_dlpack`` take them without a copy
(``framework="dlpack"`` returns the raw :class:`Tensor`). Shapes are in PyTorch order: GGUF's
``[ne0, ne1]`` is ``(ne1, ne0)``. ``dtype="native"`` gives the quantized blocks as a ``uint8``
tensor of shape ``(rows, row_bytes)``; integer tensors (I8 ... I64) keep their own type.

Errors from the library raise :class:`QuantforgeError` (a missing tensor:
:class:`MissingTensorError`, also a ``KeyError``) whose message names the file, the tensor and
the reason; bad arguments raise ``ValueError``.

Loads release the GIL and may run from many threads at once. On the CPU they run in chunks of
rows on a thread pool each process makes for itself (so a forked child loads too), checking for
signals between chunks: Ctrl-C raises ``KeyboardInterrupt`` within a chunk's time and frees
what the load took. A file rewritten on disk after it was opened is an error, not a mix of two
versions (``docs/reliability.md`` says where that cannot be seen).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from ._native import (
    File,
    MissingTensorError,
    QuantforgeError,
    Tensor,
    __version__,
    live_bytes,
)

__all__ = [
    "File",
    "MissingTensorError",
    "QuantforgeError",
    "Tensor",
    "__version__",
    "live_bytes",
    "safe_open",
]

PathLike = Union[str, "os.PathLike[str]"]


def _use_shipped_kernels() -> None:
    """Points CUDA devices at the cubins this wheel ships (``kernels/<format>/sm_XX.cubin``, for
    sm_80 and sm_90 and the devices of their generations), so that no kernel waits for NVRTC.
    Other devices compile kernels with NVRTC, which is looked for where pip puts it
    (``nvidia/cu13/lib``, a dependency of PyTorch's CUDA 13 wheels) before the system's paths.
    Without either, a kernel falls back to the CPU, with a warning (the values are the same).
    ``QUANTFORGE_CUDA_KERNEL_DIR``, when set, still takes precedence."""
    import ctypes
    import sys

    kernels = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
    if os.path.isdir(kernels):
        _native._set_prebuilt_cubins(kernels)
    for entry in sys.path:
        lib = os.path.join(entry or ".", "nvidia", "cu13", "lib", "libnvrtc.so.13")
        if os.path.isfile(lib):
            try:  # loaded by its soname from now on, wherever the loader would look
                ctypes.CDLL(lib, mode=getattr(os, "RTLD_GLOBAL", 0))
            except OSError:
                continue
            break


from . import _native  # noqa: E402

_use_shipped_kernels()

_FRAMEWORKS = {
    "pt": "pt",
    "torch": "pt",
    "pytorch": "pt",
    "np": "numpy",
    "numpy": "numpy",
    "dlpack": "dlpack",
}


def _framework_name(framework: Optional[str]) -> str:
    if framework is None:
        return "dlpack"
    if isinstance(framework, str) and framework.lower() in _FRAMEWORKS:
        return _FRAMEWORKS[framework.lower()]
    raise ValueError(
        f"framework {framework!r}: expected 'pt' (torch), 'numpy', or 'dlpack'/None "
        "(the raw Tensor, for CuPy, JAX or any DLPack consumer)"
    )


def _device_name(device: Any) -> str:
    """The device as quantforge spells it: ``"cpu"``, ``"cuda:N"``, ``"hip:N"`` or ``"auto"``.

    Takes a string, an int (CUDA ordinal, as torch does) or a ``torch.device``.
    """
    if device is None:
        return "cpu"
    if isinstance(device, str):
        return device
    if isinstance(device, int) and not isinstance(device, bool):
        if device < 0:
            raise ValueError(f"device {device}: a CUDA ordinal is >= 0")
        return f"cuda:{device}"
    kind = getattr(device, "type", None)
    if isinstance(kind, str):  # torch.device
        index = getattr(device, "index", None)
        return kind if index is None else f"{kind}:{index}"
    raise ValueError(
        f"device {device!r}: expected 'cpu', 'cuda:N', 'auto', an int or a torch.device"
    )


_DTYPES = {
    "f32": "f32",
    "float32": "f32",
    "float": "f32",
    "f16": "f16",
    "float16": "f16",
    "half": "f16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "native": "native",
}


def _dtype_name(dtype: Any) -> str:
    """The output type as quantforge spells it: ``"f32"``, ``"f16"``, ``"bf16"`` or ``"native"``.

    Takes those strings (and ``"float32"``, ``"float16"``, ``"bfloat16"``), ``None`` (f32),
    ``torch.float32`` / ``torch.float16`` / ``torch.bfloat16`` and numpy dtypes.
    """
    if dtype is None:
        return "f32"
    if isinstance(dtype, str):
        name = dtype
    else:
        text = str(dtype)
        if text.startswith("torch."):  # torch.float16
            name = text[len("torch."):]
        else:  # numpy.float16, numpy.dtype("float16")
            name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or text
    key = str(name).strip().lower()
    if key not in _DTYPES:
        raise ValueError(
            f"dtype {dtype!r}: expected f32/float32, f16/float16, bf16/bfloat16 or 'native'"
        )
    return _DTYPES[key]


def _convert(tensor: Tensor, framework: str) -> Any:
    if framework == "pt":
        import torch

        return torch.from_dlpack(tensor)
    if framework == "numpy":
        import numpy

        if tensor.dtype == "bfloat16":
            raise ValueError(
                "numpy has no bfloat16: ask for dtype='f32' or 'f16', or use framework='pt'"
            )
        return numpy.from_dlpack(tensor)
    return tensor


class safe_open:
    """Opens a GGUF file the way ``safetensors.safe_open`` opens a safetensors file.

    Args:
        filename: path of the GGUF file.
        framework: ``"pt"`` (torch tensors), ``"numpy"`` (numpy arrays, CPU only), or
            ``"dlpack"``/``None`` (the raw :class:`Tensor`, for CuPy, JAX or any DLPack
            consumer).
        device: ``"cpu"``, ``"cuda:N"``, ``"auto"`` (the first GPU, else the CPU), an int (a CUDA
            ordinal) or a ``torch.device``.
        dtype: ``None`` or ``"f32"`` (float32 values), ``"f16"``, ``"bf16"`` (rounded to
            nearest-even from the f32 values), ``"native"`` (the quantized blocks as ``uint8``,
            shape ``(rows, row_bytes)``), or ``torch.float16``-style dtypes. Integer tensors keep
            their own type whatever this says.
        mmap: map the file instead of reading it with positioned reads (the default). As
            fast, but a file truncated by another process while it is read kills the
            interpreter with SIGBUS.

    Use it as a context manager (the file is closed on exit) or call :meth:`close`. Tensors
    already returned stay valid after the file is closed.
    """

    def __init__(
        self,
        filename: PathLike,
        framework: Optional[str] = "pt",
        device: Any = "cpu",
        dtype: Any = None,
        mmap: bool = False,
    ) -> None:
        self._framework = _framework_name(framework)
        device_name = _device_name(device)
        if self._framework == "numpy" and device_name.strip().lower() not in ("cpu", "auto"):
            raise ValueError(
                f"framework='numpy' with device={device_name!r}: numpy arrays live in host "
                "memory; use device='cpu', or framework='pt' / 'dlpack' for a GPU"
            )
        self._file = File(os.fspath(filename), device=device_name, dtype=_dtype_name(dtype), mmap=mmap)
        if self._framework == "numpy" and self._file.device != "cpu":
            device_now = self._file.device
            self._file.close()
            raise ValueError(
                f"framework='numpy' with device='auto', which chose {device_now}: use device='cpu'"
            )

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file; tensors already returned stay valid."""
        self._file.close()

    @property
    def device(self) -> str:
        """The device tensors are loaded onto (``"cpu"``, ``"cuda:N"``)."""
        return self._file.device

    @property
    def file(self) -> File:
        """The underlying :class:`quantforge._native.File`."""
        return self._file

    def keys(self) -> List[str]:
        """Tensor names, in file order."""
        return self._file.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._file.keys())

    def __len__(self) -> int:
        return len(self._file)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._file

    def metadata(self) -> Dict[str, Any]:
        """The GGUF metadata: key -> str, int, float or bool; an array of numbers or booleans
        as a compact array (a ``numpy.ndarray`` of its type when numpy can be imported, else an
        ``array.array``, or a ``memoryview`` of format ``'?'`` for booleans), an array of strings
        as a list of str, an array of arrays as a list."""
        return self._file.metadata()

    def get_tensor(self, name: str) -> Any:
        """Loads tensor ``name`` as the framework's tensor (torch.Tensor, numpy.ndarray or
        :class:`Tensor`). Raises :class:`MissingTensorError` if the file has no such tensor."""
        return _convert(self._file.get(name), self._framework)

    def get_tensor_type(self, name: str) -> str:
        """The tensor's type in the file: ``"Q4_K"``, ``"F16"``, ``"I32"``, ..."""
        return self._file.tensor_type(name)

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        """The tensor's shape in PyTorch order, without loading it."""
        return tuple(self._file.tensor_shape(name))

    def get_slice(self, name: str) -> "Slice":
        """The tensor as a slice to index, as ``safetensors``' ``get_slice``: ``get_shape()``,
        ``get_dtype()`` (``"F32"``, ``"F16"``, ``"BF16"``, ``"U8"`` for native blocks) and
        ``[...]`` with slices of step 1, integers and ``...`` on any dimension. Indexing reads
        only the rows it covers and, in each, the blocks that cover its columns."""
        from ._slice import Slice

        if name not in self:
            self._file.tensor_type(name)  # raises MissingTensorError naming the file
        return Slice(self, name)

    def get_native(self, name: str) -> Tuple[Any, str]:
        """The tensor's quantized blocks as a ``uint8`` tensor of shape ``(rows, row_bytes)``
        (integer tensors: their values) and its type name, e.g. ``(tensor, "Q4_K")``."""
        t = self._file.get(name, dtype="native")
        return _convert(t, self._framework), t.ggml_type

    def load_all(self, progress: bool = False) -> Dict[str, Any]:
        """Loads every tensor (pipelined on a GPU) into a dict name -> tensor, in file order.
        ``progress=True`` draws a progress bar on stderr (when it is a terminal)."""
        return {n: _convert(t, self._framework) for n, t in self._file.load_all(progress=progress)}
