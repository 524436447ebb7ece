"""``safe_open(...).get_slice(name)``: for every tensor of every golden file, slices over rows
and columns (on block boundaries and not) equal slicing the whole tensor; native blocks slice at
block boundaries and refuse a cut through a block; safetensors' dtype strings and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from quantforge import MissingTensorError, safe_open

from conftest import golden_files


def keys_for(shape):
    """Row and column slices of a tensor of ``shape`` (PyTorch order): whole, a few rows, a
    block-aligned column range, columns that cut blocks, single rows and columns."""
    rows = shape[0]
    cols = shape[-1]
    keys = [
        (...,),
        (slice(1, max(2, rows // 2)),),
        (slice(None), slice(0, min(cols, 256))),
        (slice(None), slice(min(cols - 1, 5), min(cols, 77))),
        (slice(rows // 3, rows // 3 + 2), slice(cols // 4, cols // 4 + 33)),
        (0,),
        (..., -1),
    ]
    if len(shape) == 1:
        keys = [(...,), (slice(3, 40),), (7,), (slice(-17, None),)]
    return keys


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_slices_equal_slicing_the_whole_tensor(path) -> None:
    with safe_open(path, framework="numpy", dtype="f32") as f:
        for name in f.keys():
            whole = f.get_tensor(name)
            s = f.get_slice(name)
            assert s.get_shape() == list(whole.shape)
            assert s.get_dtype() == "F32"
            for key in keys_for(whole.shape):
                got = s[key]
                want = whole[key]
                assert got.shape == want.shape, (name, key)
                got, want = np.asarray(got), np.ascontiguousarray(want).reshape(np.shape(want))
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (name, key)


def test_f16_slices_round_as_the_whole_tensor() -> None:
    path = next(p for p in golden_files() if p.name == "tiny-llama-q4_k_m.gguf")
    with safe_open(path, framework="numpy", dtype="f16") as f:
        name = "blk.0.ffn_down.weight"
        whole = f.get_tensor(name)
        s = f.get_slice(name)
        assert s.get_dtype() == "F16"
        got = s[3:9, 100:300]
        assert np.array_equal(got.view(np.uint16), np.ascontiguousarray(whole[3:9, 100:300]).view(np.uint16))


def test_native_slices_take_whole_blocks_and_refuse_a_cut() -> None:
    path = next(p for p in golden_files() if p.name == "tiny-llama-q4_k_m.gguf")
    with safe_open(path, framework="numpy", dtype="native") as f:
        name = "blk.0.attn_q.weight"
        whole, ty = f.get_native(name)
        s = f.get_slice(name)
        assert s.get_dtype() == "U8" and s.get_shape() == list(whole.shape)
        bb = {"Q4_K": 144, "Q6_K": 210}[ty]
        assert np.array_equal(s[2:5], whole[2:5])
        assert np.array_equal(s[:, bb : 2 * bb], whole[:, bb : 2 * bb])
        with pytest.raises(ValueError, match=f"blocks of {bb} bytes"):
            s[:, 10:bb]


def test_bad_indices_and_names_are_refused() -> None:
    path = next(p for p in golden_files() if p.name == "tiny-llama-q4_k_m.gguf")
    with safe_open(path, framework="numpy") as f:
        s = f.get_slice("blk.0.attn_q.weight")
        with pytest.raises(ValueError, match="step 2"):
            s[::2]
        with pytest.raises(IndexError, match="out of bounds"):
            s[10**6]
        with pytest.raises(IndexError, match="too many indices"):
            s[0, 0, 0]
        with pytest.raises(TypeError, match="only slices"):
            s[[0, 1]]
        with pytest.raises(MissingTensorError, match="no.such"):
            f.get_slice("no.such")
