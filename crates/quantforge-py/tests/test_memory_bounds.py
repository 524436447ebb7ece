"""Memory bounds from Python, measured as the resident set of a child interpreter (its peak,
``VmHWM``, reset before the step measured):

- ``metadata()`` of a 10^8-element array returns a compact array (numpy's, or without numpy an
  ``array.array``), about the array's bytes, not a list of 10^8 Python ints;
- ``safe_open`` of a file with 10^6 tiny tensors, or with a 100 MiB metadata string, stays
  within the reader's bound (docs/reliability.md, P3);
- ``load_file`` to the CPU holds its outputs plus one chunk's scratch, never a whole tensor's
  intermediate values.

Also: a file rewritten in place at the same size after ``safe_open`` is an error naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from quantforge import QuantforgeError, safe_open

from conftest import write_raw_gguf

MiB = 1 << 20
pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"), reason="measures the resident set through /proc"
)

PRELUDE = r"""
import gc, json, os, sys

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

def reset_peak():
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident set starts again from the current one
    return rss()[0]

def peak_since(base):
    return rss()[1] - base
"""


def measure(body: str, *args: str, block_numpy: bool = False) -> dict:
    """Runs `body` (which prints one JSON line) in a child interpreter after PRELUDE."""
    head = "import sys\nsys.modules['numpy'] = None\n" if block_numpy else ""
    script = head + PRELUDE + textwrap.dedent(body)
    r = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


# ---- metadata ----------------------------------------------------------------------------------

METADATA = r"""
import quantforge
f = quantforge.File(sys.argv[1])
base = reset_peak()
m = f.metadata()
a = m["big.u8"]
print(json.dumps({
    "peak": peak_since(base), "type": type(a).__module__ + "." + type(a).__name__,
    "len": len(a), "sum": sum(int(x) for x in a[:1000]), "last": int(a[-1]),
    "small": {k: (type(v).__name__, (v.tolist() if hasattr(v, "tolist") else list(v))
                  if not isinstance(v, (str, int, float)) else v)
              for k, v in m.items() if k != "big.u8"},
}))
"""


@pytest.fixture(scope="module")
def big_array_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("meta") / "big-array.gguf"
    big = (np.arange(10**8) % 251).astype(np.uint8)
    write_raw_gguf(
        path,
        [("w", 0, (4,), np.ones(4, np.float32).tobytes())],
        metadata={
            "big.u8": ("array", ("u8", big.tobytes())),
            "small.i32": ("array", ("i32", [1, -2, 3])),
            "small.f32": ("array", ("f32", [0.5, -1.25])),
            "small.bool": ("array", ("bool", [True, False, True])),
            "small.str": ("array", ("str", ["a", "bc"])),
            "small.u64": ("u64", 2**63),
        },
    )
    return path


def test_metadata_of_a_large_array_is_a_compact_numpy_array(big_array_file: Path) -> None:
    r = measure(METADATA, str(big_array_file))
    assert r["type"] == "numpy.ndarray", r
    assert r["len"] == 10**8 and r["last"] == (10**8 - 1) % 251
    assert r["sum"] == sum(i % 251 for i in range(1000))
    # About the array's bytes (a list would hold 8 bytes of pointer per element: 800 MB).
    assert r["peak"] < 10**8 + 32 * MiB, r
    small = r["small"]
    assert small["small.i32"] == ["ndarray", [1, -2, 3]]
    assert small["small.f32"] == ["ndarray", [0.5, -1.25]]
    assert small["small.bool"] == ["ndarray", [True, False, True]]
    assert small["small.str"] == ["list", ["a", "bc"]]
    assert small["small.u64"] == ["int", 2**63]
    with safe_open(big_array_file) as f:
        m = f.metadata()
    assert m["small.i32"].dtype == np.int32 and m["small.f32"].dtype == np.float32
    assert m["small.bool"].dtype == np.bool_ and m["big.u8"].dtype == np.uint8


def test_metadata_without_numpy_is_a_compact_array(big_array_file: Path) -> None:
    r = measure(METADATA, str(big_array_file), block_numpy=True)
    assert r["type"] == "array.array", r
    assert r["len"] == 10**8 and r["last"] == (10**8 - 1) % 251
    # array.array copies from a bytes buffer: at most twice the array's bytes for a moment.
    assert r["peak"] < 2 * 10**8 + 32 * MiB, r
    small = r["small"]
    assert small["small.i32"] == ["array", [1, -2, 3]]
    assert small["small.f32"] == ["array", [0.5, -1.25]]
    assert small["small.bool"] == ["memoryview", [True, False, True]]
    assert small["small.str"] == ["list", ["a", "bc"]]


# ---- safe_open ---------------------------------------------------------------------------------

OPEN = r"""
import quantforge
base = reset_peak()
f = quantforge.safe_open(sys.argv[1], framework="dlpack")
n = len(f)
print(json.dumps({"peak": peak_since(base), "tensors": n}))
"""


def test_safe_open_of_a_million_tiny_tensors_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "many.gguf"
    n = 10**6
    header = write_raw_gguf(path, [(f"t{i}", 0, (1,), None) for i in range(n)])
    r = measure(OPEN, str(path))
    assert r["tensors"] == n
    # The reader's bound (P3) in resident memory: twice the header. The prefix an unmapped
    # open reads the header from (or the mapped pages) is at most about 1.5 times it, and the
    # tensor table keeps the tensor infos' bytes as the file has them plus 8 bytes per tensor;
    # the Python side adds nothing per tensor until `keys()` is called.
    bound = 2 * header + 16 * MiB
    print(f"header {header / MiB:.1f} MiB, peak {r['peak'] / MiB:.1f} MiB, bound {bound / MiB:.1f}")
    assert r["peak"] < bound, (r, header)


def test_safe_open_of_a_100_mib_string_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "long-string.gguf"
    header = write_raw_gguf(
        path,
        [("w", 0, (4,), np.ones(4, np.float32).tobytes())],
        metadata={"general.description": ("str", "x" * (100 * MiB))},
    )
    r = measure(OPEN, str(path))
    print(f"header {header / MiB:.1f} MiB, peak {r['peak'] / MiB:.1f} MiB")
    assert r["peak"] < 2 * header + 16 * MiB, (r, header)


# ---- load_file ---------------------------------------------------------------------------------

LOAD = r"""
import quantforge, quantforge.numpy
quantforge.numpy.load_file(sys.argv[2])  # warm-up: the library, the thread pool
base = reset_peak()
arrays = quantforge.numpy.load_file(sys.argv[1], dtype=sys.argv[3])
out = sum(a.nbytes for a in arrays.values())
print(json.dumps({"peak": peak_since(base), "out": out, "live": quantforge.live_bytes()[0]}))
"""


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_load_file_holds_its_outputs_and_a_chunk(tmp_path: Path, dtype: str) -> None:
    """A 64 M-value tensor (256 MiB of f32) and a smaller one: the load's peak is its outputs
    plus one chunk's scratch (16 MiB of output, its f32 values and quantized bytes) and a
    constant, never the whole tensor's f32 values beside its f16 output."""
    path = tmp_path / "model.gguf"
    write_raw_gguf(path, [("a", 12, (4096, 16384), None), ("b", 12, (4096, 1024), None)])
    warm = tmp_path / "warm.gguf"
    write_raw_gguf(warm, [("w", 12, (4096, 2048), None)])
    r = measure(LOAD, str(path), str(warm), dtype)
    assert r["out"] == r["live"] == 4096 * (16384 + 1024) * (4 if dtype == "f32" else 2)
    extra = r["peak"] - r["out"]
    print(f"{dtype}: outputs {r['out'] / MiB:.0f} MiB, peak {r['peak'] / MiB:.0f} MiB")
    assert extra < 64 * MiB, f"{extra / MiB:.0f} MiB beyond the outputs"


# ---- files that change -------------------------------------------------------------------------


@pytest.mark.parametrize("mmap", [False, True])
def test_a_file_rewritten_in_place_is_an_error_naming_it(tmp_path: Path, mmap: bool) -> None:
    path = tmp_path / "rewritten.gguf"
    data = np.arange(1024, dtype=np.float32)
    write_raw_gguf(path, [("w", 0, (1024,), data.tobytes())])
    hour_ago = os.stat(path).st_mtime - 3600
    os.utime(path, (hour_ago, hour_ago))  # so that the rewrite changes it, whatever the clock
    with safe_open(path, framework="numpy", mmap=mmap) as f:
        assert np.array_equal(f.get_tensor("w"), data)
        with open(path, "r+b") as w:  # same size, same inode, other bytes
            w.seek(-4096, os.SEEK_END)
            w.write((-data).tobytes())
        with pytest.raises(QuantforgeError, match=r"rewritten\.gguf.*modified"):
            f.get_tensor("w")
        os.utime(path, (hour_ago, hour_ago))  # the old time put back: still seen
        with pytest.raises(QuantforgeError, match=r"rewritten\.gguf.*modified"):
            f.get_tensor("w")
