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
