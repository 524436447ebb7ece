"""Issue 18's equalities on ``cuda:0``: slices of every golden tensor equal slicing the whole
tensor, tensor-parallel shards put back equal the whole tensors, and ``quantforge.transformers``
gives transformers' names, values and logits, all with the values made on the GPU.

Run with ``QUANTFORGE_GPU_TESTS=1``; then a missing torch or CUDA device is a failure. Without
the variable every test here is skipped, visibly. The CPU versions of these tests are in
``test_slices.py``, ``test_tp.py`` and ``test_transformers.py``, whose helpers this file reuses.
"""

from __future__ import annotations

import os

import pytest

from conftest import golden_files, same_bits

GPU_TESTS = os.environ.get("QUANTFORGE_GPU_TESTS") == "1"
pytestmark = pytest.mark.skipif(
    not GPU_TESTS,
    reason="GPU tests run only with QUANTFORGE_GPU_TESTS=1 (needs torch and a CUDA device)",
)


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_slices_on_cuda_equal_slicing_the_whole_tensor(torch, path) -> None:
    from quantforge import safe_open
    from test_slices import keys_for

    with safe_open(path, framework="pt", device="cuda:0", dtype="f32") as f:
        for name in f.keys():
            whole = f.get_tensor(name)
            assert whole.device.type == "cuda"
            s = f.get_slice(name)
            for key in keys_for(tuple(whole.shape)):
                got = s[key]
                assert got.device.type == "cuda", (name, key)
                assert same_bits(torch, got, whole[key]), (name, key)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_tp_shards_on_cuda_put_back_equal_the_whole_tensors(torch, tmp_path, world, fused) -> None:
    import quantforge.torch as qt
    from test_tp import check, write_llama

    path = tmp_path / "gqa.gguf"
    write_llama(path, fused)
    gathered = []
    for rank in range(world):
        shards, report = qt.load_shards(path, (rank, world), device="cuda:0")
        assert all(t.device.type == "cuda" for t in shards.values())
        gathered.append(({n: t.cpu().numpy() for n, t in shards.items()}, report.bytes_read, report.per_tensor))
    check(path, world, gathered)


@pytest.mark.parametrize("arch, biases", [("llama", False), ("qwen2", True), ("gemma2", False), ("nemotron", False)])
def test_hf_state_dict_on_cuda_equals_transformers(torch, tmp_path, arch, biases) -> None:
    import quantforge.transformers as qtf
    from test_transformers import transformers_own, write

    path = tmp_path / f"{arch}.gguf"
    write(path, arch, biases)
    want = transformers_own(path)
    got = qtf.load_state_dict(path, device="cuda:0")
    assert list(got) == list(want)
    for name, t in want.items():
        assert got[name].device.type == "cuda", name
        assert same_bits(torch, got[name], t.float()), name


@pytest.mark.parametrize("arch, biases", [("llama", False), ("qwen2", True), ("gemma2", False)])
def test_from_pretrained_on_cuda_gives_transformers_logits_bit_for_bit(torch, tmp_path, arch, biases) -> None:
    import transformers

    import quantforge.transformers as qtf
    from test_transformers import write

    d = tmp_path / "model"
    d.mkdir()
    write(d / "m.gguf", arch, biases)
    ours = qtf.from_pretrained(d / "m.gguf", device="cuda:0")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(d), gguf_file="m.gguf", dtype=torch.float32)
    theirs = theirs.to("cuda:0")
    x = torch.tensor([[1, 5, 9, 100, 1023]], device="cuda:0")
    with torch.no_grad():
        assert torch.equal(ours(x).logits, theirs(x).logits)


def test_from_pretrained_on_cuda_holds_one_copy_of_the_weights(torch, tmp_path) -> None:
    """The model is built around the loaded weights: the device memory in use after the call
    (the driver's count: quantforge's allocations and PyTorch's cache) grows by the weights and
    little more. transformers' allocator warm-up, which quantforge skips, would reserve as many
    bytes again in PyTorch's cache."""
    import quantforge.transformers as qtf
    from test_transformers import write

    write(tmp_path / "m.gguf", "llama")
    warm = qtf.from_pretrained(tmp_path / "m.gguf", device="cuda:0")  # context, kernels, modules
    del warm
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    model = qtf.from_pretrained(tmp_path / "m.gguf", device="cuda:0")
    torch.cuda.synchronize()
    grown = free - torch.cuda.mem_get_info()[0]
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert weights <= grown <= 1.5 * weights, (grown, weights)
