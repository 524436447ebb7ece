"""The Python API: names, shapes, types and metadata against gguf-py's reader; DLPack on the
CPU (zero-copy, versioned and legacy capsules, refusals); argument handling; errors (missing
file, truncated file, not a GGUF file, missing tensor, bad dtype/device/framework, closed
file) raised as QuantforgeError/ValueError with messages naming the file and the tensor; the
progress bar."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import quantforge
from quantforge import MissingTensorError, QuantforgeError, safe_open

from conftest import data_dir, gguf_reader, golden_files

MODEL = data_dir() / "tiny-llama-q4_k_m.gguf"
READABLE = [p for p in golden_files() if gguf_reader(p) is not None]


# ---- names, shapes, types, metadata ------------------------------------------------------------


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_names_shapes_and_types_match_gguf_py(path: Path) -> None:
    reader = gguf_reader(path)
    with safe_open(path, framework="numpy") as f:
        assert f.keys() == [t.name for t in reader.tensors]
        assert list(f) == f.keys() and len(f) == len(reader.tensors)
        for t in reader.tensors:
            torch_order = tuple(int(d) for d in reversed(t.shape))
            assert f.get_tensor_shape(t.name) == torch_order, t.name
            assert f.get_tensor_type(t.name) == t.tensor_type.name, t.name
            assert t.name in f
        assert "no such tensor" not in f


def _gguf_py_metadata(reader) -> dict:
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the reader's own entries (version, counts)
            continue
        out[name] = field.contents()
    return out


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_metadata_matches_gguf_py(path: Path) -> None:
    reader = gguf_reader(path)
    with safe_open(path) as f:
        ours = f.metadata()
    theirs = _gguf_py_metadata(reader)
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        got = ours[k]
        if isinstance(got, np.ndarray):  # arrays of numbers come as numpy arrays
            assert isinstance(v, list), k
            got = got.tolist()
        assert got == v, k
        if isinstance(v, list) and v:
            assert type(got[0]) is type(v[0]), k
        else:
            assert type(got) is type(v), k


def test_metadata_value_types() -> None:
    with safe_open(MODEL) as f:
        m = f.metadata()
    assert m["general.architecture"] == "llama"
    assert isinstance(m["llama.block_count"], int)
    assert isinstance(m["llama.attention.layer_norm_rms_epsilon"], float)
    tokens = m.get("tokenizer.ggml.tokens")
    if tokens is not None:
        assert isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)


# ---- tensors and DLPack on the CPU -------------------------------------------------------------


def test_tensor_properties_and_zero_copy() -> None:
    with quantforge.File(MODEL) as f:
        name = "token_embd.weight"
        t = f.get(name)
        assert t.shape == f.tensor_shape(name) == (256, 256)
        assert (t.dtype, t.ggml_type, t.device) == ("float32", "Q4_K", "cpu")
        assert t.nbytes == 256 * 256 * 4
        assert t.__dlpack_device__() == (1, 0)
        a = np.from_dlpack(t)
        b = np.from_dlpack(t)
        # No copy: both arrays are views of the tensor's own buffer.
        assert a.ctypes.data == b.ctypes.data == t.data_ptr
        assert a.shape == t.shape and a.dtype == np.float32
        assert "Q4_K" in repr(t)
        # How each was made: dequantized on the CPU, or its blocks kept.
        assert t.load_path == "cpu"
        assert f.get(name, dtype="native").load_path == "native"


def test_dlpack_capsules_and_refusals() -> None:
    with quantforge.File(MODEL) as f:
        t = f.get("output_norm.weight")
    legacy = t.__dlpack__()
    assert "dltensor" in repr(legacy) and "versioned" not in repr(legacy)
    versioned = t.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(versioned)
    assert "dltensor" in repr(t.__dlpack__(stream=None, max_version=(0, 8)))
    t.__dlpack__(dl_device=(1, 0), copy=False)
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 0))


def test_native_and_dtype_override() -> None:
    with quantforge.File(MODEL) as f:
        n = f.get("blk.0.attn_q.weight", dtype="native")
        assert (n.dtype, n.ggml_type) == ("uint8", f.tensor_type("blk.0.attn_q.weight"))
        rows, row_bytes = n.shape
        assert rows == f.tensor_shape("blk.0.attn_q.weight")[0]
        assert f.get("blk.0.attn_q.weight").dtype == "float32"
    with safe_open(MODEL, framework="dlpack", dtype="native") as f:
        t = f.get_tensor("blk.0.attn_q.weight")
        assert isinstance(t, quantforge.Tensor) and t.dtype == "uint8"


@pytest.mark.parametrize(
    "dtype, name",
    [
        (None, "float32"),
        ("f32", "float32"),
        ("float32", "float32"),
        ("F16", "float16"),
        ("half", "float16"),
        (np.float16, "float16"),
        (np.dtype("float32"), "float32"),
        ("bf16", "bfloat16"),
        ("bfloat16", "bfloat16"),
    ],
)
def test_dtype_spellings(dtype, name: str) -> None:
    with safe_open(MODEL, framework="dlpack", dtype=dtype) as f:
        assert f.get_tensor("token_embd.weight").dtype == name


def test_paths_mmap_and_load_all_agree() -> None:
    with safe_open(pathlib.Path(MODEL), framework="numpy") as f:
        one = {n: f.get_tensor(n) for n in f.keys()}
        all_ = f.load_all()
    with safe_open(str(MODEL), framework="numpy", mmap=True) as f:
        mapped = {n: f.get_tensor(n) for n in f.keys()}
    import quantforge.numpy

    helper = quantforge.numpy.load_file(MODEL)
    assert list(one) == list(all_) == list(mapped) == list(helper)
    for n in one:
        for other in (all_, mapped, helper):
            assert np.array_equal(one[n].view(np.uint32), other[n].view(np.uint32)), n


def test_threads_load_concurrently() -> None:
    """The GIL is released while loading; tensors loaded from many threads are right."""
    with safe_open(MODEL, framework="numpy") as f:
        want = {n: f.get_tensor(n) for n in f.keys()}
        got: dict = {}
        errors: list = []

        def work(names):
            try:
                for n in names:
                    got[n] = f.get_tensor(n)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        names = f.keys()
        threads = [threading.Thread(target=work, args=(names[i::4],)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors
    for n in names:
        assert np.array_equal(got[n].view(np.uint32), want[n].view(np.uint32)), n


def test_torch_helpers_on_the_cpu() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (CPU torch checks)")
    import quantforge.torch

    state = quantforge.torch.load_file(MODEL, dtype=torch.float16)
    with safe_open(MODEL, framework="pt") as f:
        for n, t in state.items():
            assert t.dtype == torch.float16 and t.device.type == "cpu"
            assert tuple(t.shape) == f.get_tensor_shape(n)
            want = f.get_tensor(n).to(torch.float16)
            nan = torch.isnan(want)
            assert torch.equal(torch.isnan(t), nan), n
            assert torch.equal(t.view(torch.int16)[~nan], want.view(torch.int16)[~nan]), n


# ---- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "absent.gguf"
    with pytest.raises(QuantforgeError, match="absent.gguf"):
        safe_open(p)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "text.gguf"
    p.write_text("this is not a GGUF file\n")
    with pytest.raises(QuantforgeError, match=r"text\.gguf.*not a GGUF file"):
        safe_open(p)


def test_truncated_file_names_file_and_tensor(tmp_path: Path) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(MODEL.read_bytes()[:200_000])
    with pytest.raises(QuantforgeError) as e:
        safe_open(p, framework="numpy")
    msg = str(e.value)
    assert "cut.gguf" in msg and "tensor" in msg and "cut short" in msg, msg


def test_file_truncated_after_open(tmp_path: Path) -> None:
    p = tmp_path / "shrinks.gguf"
    shutil.copy(MODEL, p)
    with safe_open(p, framework="numpy", mmap=False) as f:
        os.truncate(p, 100_000)
        with pytest.raises(QuantforgeError, match=r"shrinks\.gguf.*changed size"):
            f.get_tensor(f.keys()[-1])


def test_missing_tensor_is_a_key_error() -> None:
    with safe_open(MODEL, framework="numpy") as f:
        with pytest.raises(MissingTensorError) as e:
            f.get_tensor("blk.99.nothing")
        assert isinstance(e.value, KeyError) and isinstance(e.value, QuantforgeError)
        msg = str(e.value)
        assert "tiny-llama-q4_k_m.gguf" in msg and "blk.99.nothing" in msg
        assert not msg.startswith("'")  # the plain message, not a KeyError's quoted repr
        for call in (f.get_tensor_type, f.get_tensor_shape, f.get_native):
            with pytest.raises(KeyError, match="blk.99.nothing"):
                call("blk.99.nothing")


@pytest.mark.parametrize("dtype", ["f8", "int4", "float64", 3])
def test_bad_dtype(dtype) -> None:
    with pytest.raises(ValueError, match="dtype"):
        safe_open(MODEL, dtype=dtype)
    if isinstance(dtype, str):
        with pytest.raises(ValueError, match="dtype"):
            quantforge.File(MODEL, dtype=dtype)


@pytest.mark.parametrize("device", ["gpu:0", "cuda:x", "tpu", 3.5])
def test_bad_device(device) -> None:
    with pytest.raises(ValueError, match="device"):
        safe_open(MODEL, device=device)


def test_unavailable_device_names_file_and_device() -> None:
    try:
        f = safe_open(MODEL, device="cuda:7")
    except QuantforgeError as e:
        assert "tiny-llama-q4_k_m.gguf" in str(e) and "cuda:7" in str(e), str(e)
    else:  # a machine with eight GPUs
        f.close()


def test_numpy_refuses_a_gpu_and_bf16() -> None:
    with pytest.raises(ValueError, match="numpy"):
        safe_open(MODEL, framework="numpy", device="cuda:0")
    with safe_open(MODEL, framework="numpy", dtype="bf16") as f:
        with pytest.raises(ValueError, match="bfloat16"):
            f.get_tensor("token_embd.weight")


def test_bad_framework() -> None:
    with pytest.raises(ValueError, match="framework"):
        safe_open(MODEL, framework="tensorflow")


def test_closed_file() -> None:
    with safe_open(MODEL, framework="numpy") as f:
        a = f.get_tensor("token_embd.weight")
    assert f.file.closed
    with pytest.raises(QuantforgeError, match="closed"):
        f.keys()
    with pytest.raises(QuantforgeError, match="closed"):
        f.get_tensor("token_embd.weight")
    assert float(np.abs(a).sum()) > 0  # tensors outlive the file


# ---- progress bar ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="uses a pseudo-terminal")
def test_progress_bar_on_a_terminal() -> None:
    """``load_all(progress=True)`` draws a bar on stderr when it is a terminal (run in a child
    process whose stderr is a pseudo-terminal); off by default."""
    import pty

    script = (
        "import sys, quantforge\n"
        "f = quantforge.File(sys.argv[1])\n"
        "f.load_all(progress=sys.argv[2] == '1')\n"
    )

    def run(flag: str) -> str:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(MODEL), flag], stderr=slave, stdout=slave
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert proc.wait(timeout=60) == 0
        return b"".join(chunks).decode(errors="replace")

    shown = run("1")
    assert "tiny-llama-q4_k_m.gguf" in shown and "100%" in shown, shown
    assert run("0") == ""
