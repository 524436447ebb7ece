"""Shared helpers of the quantforge Python tests: where the golden files are and how to read
their manifests.

The golden files are ``tests/data/*.gguf`` of the repository (``QUANTFORGE_TEST_DATA`` if set),
each with a manifest ``*.sha256``: one line per tensor,
``sha256-of-ggml's-f32-output-as-little-endian-bytes  name  source-type  element-count``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest


def data_dir() -> Path:
    env = os.environ.get("QUANTFORGE_TEST_DATA")
    if env:
        return Path(env)
    # crates/quantforge-py/tests/conftest.py -> the repository root is three levels up.
    return Path(__file__).resolve().parents[3] / "tests" / "data"


@dataclass(frozen=True)
class Expected:
    """One manifest line."""

    sha256: str
    name: str
    ty: str
    elements: int


def manifest(gguf: Path) -> Dict[str, Expected]:
    """The manifest of a golden file, by tensor name, in file order."""
    out: Dict[str, Expected] = {}
    for line in gguf.with_suffix(".sha256").read_text().splitlines():
        if not line.strip():
            continue
        sha, name, ty, n = line.split()
        out[name] = Expected(sha, name, ty, int(n))
    return out


def golden_files() -> List[Path]:
    files = sorted(p.with_suffix(".gguf") for p in data_dir().glob("*.sha256"))
    assert files, f"no golden files under {data_dir()}"
    return files


def sha256_f32(values) -> str:
    """sha256 of values as little-endian f32 bytes, as the manifests hold it."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def gguf_reader(path: Path):
    """gguf-py's reader of ``path``, or None when gguf-py cannot read the file (gguf-py 0.19
    does not know Q2_0, id 42, so it cannot parse new-types.gguf at all)."""
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except ValueError as e:
        if "is not a valid GGMLQuantizationType" in str(e):
            return None
        raise


def write_gguf(path: Path, tensors: Dict[str, "np.ndarray"]) -> None:
    """Writes a minimal GGUF v3 file (no metadata, alignment 32) of float32 / float16 arrays,
    without gguf-py (the GPU machine may not have it). Shapes are numpy's (PyTorch's) order."""
    import struct

    import numpy as np

    types = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
    align = 32
    header = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0))
    offset, blobs = 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = name.encode()
        header += struct.pack("<Q", len(raw)) + raw + struct.pack("<I", arr.ndim)
        header += b"".join(struct.pack("<Q", d) for d in reversed(arr.shape))
        header += struct.pack("<IQ", types[arr.dtype], offset)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        blobs.append(data + bytes(-len(data) % align))
        offset += len(blobs[-1])
    header += bytes(-len(header) % align)
    path.write_bytes(bytes(header) + b"".join(blobs))


@pytest.fixture(params=golden_files(), ids=lambda p: p.name)
def golden(request) -> Path:
    """Each golden file in turn."""
    return request.param


# ---- raw GGUF files: any tensor type, sparse data, large metadata ------------------------------

#: ggml type id -> (elements, bytes) of a block, for the types the tests write.
BLOCKS = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 14: (256, 210)}
#: GGUF metadata value types by name.
META_TYPES = {
    "u8": (0, "B"), "i8": (1, "b"), "u16": (2, "H"), "i16": (3, "h"), "u32": (4, "I"),
    "i32": (5, "i"), "f32": (6, "f"), "bool": (7, "?"), "u64": (10, "Q"), "i64": (11, "q"),
    "f64": (12, "d"),
}


def _gguf_str(s) -> bytes:
    import struct

    raw = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(raw)) + raw


def _meta_value(kind: str, value) -> bytes:
    """One metadata value: ``("str", s)``, ``("u32", 7)``, ``("array", "u8", bytes_or_list)``
    and so on (an array's values may be raw little-endian bytes, written as they are)."""
    import struct

    if kind == "str":
        return struct.pack("<I", 8) + _gguf_str(value)
    if kind == "array":
        elem, values = value
        if elem == "str":
            body = b"".join(_gguf_str(v) for v in values)
            n = len(values)
        else:
            code, fmt = META_TYPES[elem]
            if isinstance(values, (bytes, bytearray, memoryview)):
                body = bytes(values)
                n = len(body) // struct.calcsize("<" + fmt)
            else:
                body = struct.pack(f"<{len(values)}{fmt}", *values)
                n = len(values)
        code = 8 if elem == "str" else META_TYPES[elem][0]
        return struct.pack("<IIQ", 9, code, n) + body
    code, fmt = META_TYPES[kind]
    return struct.pack("<I", code) + struct.pack("<" + fmt, value)


def write_raw_gguf(path: Path, tensors, metadata=None, align: int = 32) -> int:
    """Writes a GGUF v3 file without gguf-py: ``tensors`` is a list of ``(name, ggml_type,
    dims_in_ggml_order, data)`` where ``data`` is the tensor's bytes, or ``None`` for zero
    bytes left as a hole in a sparse file (so that a file of gigabytes costs no disk and no
    time to write); ``metadata`` maps a key to ``(kind, value)`` (see ``_meta_value``).
    Returns the size of the header (magic to the data section)."""
    import struct

    metadata = metadata or {}
    header = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, (kind, value) in metadata.items():
        header += _gguf_str(key)
        header += _meta_value(kind, value)
    offset, places = 0, []
    for name, ty, dims, data in tensors:
        elems, block = BLOCKS[ty]
        count = 1
        for d in dims:
            count *= d
        n_bytes = count // elems * block
        assert data is None or len(data) == n_bytes, name
        header += _gguf_str(name) + struct.pack("<I", len(dims))
        header += b"".join(struct.pack("<Q", d) for d in dims)
        header += struct.pack("<IQ", ty, offset)
        places.append((offset, n_bytes, data))
        offset += n_bytes + (-n_bytes % align)
    header += bytes(-len(header) % align)
    with open(path, "wb") as f:
        f.write(header)
        for at, n_bytes, data in places:
            if data is not None:
                f.seek(len(header) + at)
                f.write(data)
        f.truncate(len(header) + offset)
    return len(header)


@pytest.fixture(scope="module")
def torch():
    """torch with a CUDA device, for the GPU tests (run with ``QUANTFORGE_GPU_TESTS=1``): a
    missing torch or device fails the test rather than skipping it."""
    try:
        import torch
    except ImportError:
        pytest.fail("QUANTFORGE_GPU_TESTS=1 but torch is not installed")
    if not torch.cuda.is_available():
        pytest.fail("QUANTFORGE_GPU_TESTS=1 but torch sees no CUDA device")
    return torch


def same_bits(torch, got, want) -> bool:
    """Same shape and bits, or both NaN where either is (a GPU returns a canonical NaN). Tensors
    on different devices are compared on the CPU."""
    if got.device != want.device:
        got, want = got.cpu(), want.cpu()
    got, want = got.contiguous(), want.contiguous()
    if got.shape != want.shape:
        return False
    ints = {4: torch.int32, 2: torch.int16}[got.element_size()]
    return bool(((got.view(ints) == want.view(ints)) | (got.isnan() & want.isnan())).all())
