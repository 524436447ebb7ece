"""Memory is released when the last holder lets go: ``quantforge.live_bytes()`` (bytes held by
the storages of live tensors, host and device) is above its start while a tensor or any array
made from it lives, and back at its start once all are gone. If the DLPack deleter never ran,
the exported storage would never be dropped and these tests would fail."""

from __future__ import annotations

import gc

import numpy as np

import quantforge
from quantforge import safe_open

from conftest import data_dir

MODEL = data_dir() / "tiny-llama-q4_k_m.gguf"


def host() -> int:
    gc.collect()
    return quantforge.live_bytes()[0]


def test_array_outlives_tensor_and_frees_on_drop() -> None:
    start = host()
    with quantforge.File(MODEL) as f:
        t = f.get("token_embd.weight")
        want = np.from_dlpack(f.get("token_embd.weight")).copy()
    assert host() == start + t.nbytes
    arr = np.from_dlpack(t)
    del t
    # The array alone now holds the storage: still counted, still readable.
    assert host() == start + arr.nbytes
    assert np.array_equal(arr.view(np.uint32), want.view(np.uint32))
    del arr
    assert host() == start


def test_several_consumers_any_order() -> None:
    start = host()
    with quantforge.File(MODEL) as f:
        t = f.get("output.weight")
    n = t.nbytes
    a, b, c = np.from_dlpack(t), np.from_dlpack(t), np.from_dlpack(t)
    del t, b
    assert host() == start + n
    del a
    assert host() == start + n
    del c
    assert host() == start


def test_unconsumed_capsules_release_the_storage() -> None:
    start = host()
    with quantforge.File(MODEL) as f:
        t = f.get("output.weight")
    caps = [t.__dlpack__(), t.__dlpack__(max_version=(1, 0))]
    del t
    assert host() > start
    del caps
    assert host() == start


def test_whole_model_loads_release_everything() -> None:
    start = host()
    for dtype in ("f32", "f16", "bf16", "native"):
        with safe_open(MODEL, framework="dlpack", dtype=dtype) as f:
            tensors = f.load_all()
        held = host() - start
        expected = sum(t.nbytes for t in tensors.values())
        assert held == expected, dtype
        arrays = [np.from_dlpack(t) for t in tensors.values() if t.dtype != "bfloat16"]
        del tensors
        del arrays
        assert host() == start, dtype


def test_repeated_loads_do_not_accumulate() -> None:
    start = host()
    with safe_open(MODEL, framework="numpy") as f:
        for _ in range(50):
            for name in f.keys():
                a = f.get_tensor(name)
                assert a.size > 0
            del a
    assert host() == start
    assert quantforge.live_bytes()[1] == 0  # nothing on a device in these tests


def test_minimal_writer_round_trip(tmp_path) -> None:
    """The test helper write_gguf (used by the GPU leak test, which must not need gguf-py)
    writes files that load back as written."""
    from conftest import write_gguf

    rng = np.random.default_rng(3)
    arrays = {
        "a": rng.standard_normal((3, 64)).astype(np.float16),
        "b": rng.standard_normal((5, 2, 32)).astype(np.float32),
    }
    path = tmp_path / "w.gguf"
    write_gguf(path, arrays)
    with safe_open(path, framework="numpy") as f:
        assert f.keys() == ["a", "b"]
        assert [f.get_tensor_type(n) for n in f.keys()] == ["F16", "F32"]
        for n, a in arrays.items():
            assert np.array_equal(f.get_tensor(n), a.astype(np.float32))
