"""Tensor-parallel loading with torch.distributed (gloo on 127.0.0.1): ``load_file(...,
tp=(rank, N))`` in N = 2 and 4 processes, on a llama model with grouped-query attention
(8 query heads, 2 KV heads) in separate and fused (``attn_qkv``, ``ffn_gate_up``) layouts. The
ranks' shards, put back by the plan, equal the whole tensors; each rank reads at most 1/N of a
split tensor's bytes plus two blocks per row; bad plans and splits are refused by name.
Skipped (visibly) without torch or gguf."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

import quantforge.torch as qt  # noqa: E402
from quantforge import _convert, _native, safe_open  # noqa: E402
from quantforge._tp import LLAMA_PLAN, _part, row_ranges, style_of  # noqa: E402

HIDDEN, FF, N_HEAD, N_KV, HEAD_DIM = 512, 1024, 8, 2, 64


def blocks(ty: str, rows: int, cols: int, seed: int) -> np.ndarray:
    tid, _, be, bb = qt.type_info(ty)
    raw = _native._random_blocks(tid, rows * cols // be, seed, 2.0**-8)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // be * bb)


def write_llama(path: Path, fused: bool) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    q = gguf.GGMLQuantizationType

    def add(name, ty, rows, cols, seed):
        w.add_tensor(name, blocks(ty, rows, cols, seed), raw_dtype=q[ty])

    add("token_embd.weight", "Q4_K", 1024, HIDDEN, 1)
    for i in range(2):
        p = f"blk.{i}."
        kv = N_KV * HEAD_DIM
        if fused:
            add(p + "attn_qkv.weight", "Q8_0", HIDDEN + 2 * kv, HIDDEN, 10 + i)
            add(p + "ffn_gate_up.weight", "Q4_K", 2 * FF, HIDDEN, 20 + i)
        else:
            add(p + "attn_q.weight", "Q4_K", HIDDEN, HIDDEN, 30 + i)
            add(p + "attn_k.weight", "Q6_K", kv, HIDDEN, 40 + i)
            add(p + "attn_v.weight", "Q8_0", kv, HIDDEN, 50 + i)
            w.add_tensor(p + "attn_q.bias", np.random.default_rng(i).standard_normal(HIDDEN, dtype=np.float32))
            add(p + "ffn_gate.weight", "Q4_K", FF, HIDDEN, 60 + i)
            add(p + "ffn_up.weight", "IQ4_XS", FF, HIDDEN, 70 + i)
        add(p + "attn_output.weight", "Q4_0", HIDDEN, HIDDEN, 80 + i)
        add(p + "ffn_down.weight", "Q6_K", HIDDEN, FF, 90 + i)
        w.add_tensor(p + "attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    add("output.weight", "Q6_K", 1024, HIDDEN, 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _worker(rank: int, world: int, port: int, path: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    shards, report = qt.load_shards(path, (rank, world))
    gathered = [None] * world
    mine = ({n: t.numpy() for n, t in shards.items()}, report.bytes_read, report.per_tensor)
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(gathered))
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(path: Path, world: int, gathered) -> None:
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        for name in f.keys():
            whole = f.get_tensor(name)
            style = style_of(name, LLAMA_PLAN)
            bb = qt.type_info(f.get_tensor_type(name))[3]
            rows = whole.shape[0] if whole.ndim > 1 else 1
            covered = np.zeros(whole.shape, dtype=bool)
            for rank, (shards, _, per_tensor) in enumerate(gathered):
                got = shards[name]
                if style == "replicate":
                    assert np.array_equal(got.view(np.uint32), whole.view(np.uint32)), name
                    covered[...] = True
                    continue
                if style == "colwise":
                    ranges = row_ranges(name, whole.shape[0], meta, rank, world)
                    at = 0
                    for a, b in ranges:
                        assert np.array_equal(got[at : at + b - a].view(np.uint32), whole[a:b].view(np.uint32)), name
                        covered[a:b] = True
                        at += b - a
                    assert at == got.shape[0], name
                else:
                    a, b = _part(name, whole.shape[-1], world, rank, world, "columns")
                    assert np.array_equal(got.view(np.uint32), whole[..., a:b].view(np.uint32)), name
                    covered[..., a:b] = True
                replicated_kv = name.endswith(("attn_k.weight", "attn_v.weight")) and world > N_KV
                total = f.get_slice(name).bytes_read((0, whole.shape[0] if whole.ndim > 1 else 1), (0, whole.shape[-1]))
                _, read = per_tensor[name]
                if not replicated_kv:
                    assert read <= total / world + 2 * bb * rows, (name, rank, read, total)
            assert covered.all(), f"{name}: the shards do not cover the tensor"


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_shards_put_back_equal_the_whole_tensors(tmp_path, world, fused) -> None:
    import torch.multiprocessing as mp

    path = tmp_path / "gqa.gguf"
    write_llama(path, fused)
    out = tmp_path / "gathered.pkl"
    mp.spawn(_worker, args=(world, free_port(), str(path), str(out)), nprocs=world, join=True)
    check(path, world, pickle.loads(out.read_bytes()))


def test_plans_and_splits_that_cannot_work_are_refused(tmp_path) -> None:
    path = tmp_path / "gqa.gguf"
    write_llama(path, False)
    with pytest.raises(ValueError, match="colwise_rep.*not implemented"):
        qt.load_shards(path, (0, 2), {"blk.*.attn_q.weight": "colwise_rep"})
    with pytest.raises(ValueError, match="8 heads do not split over 3 ranks"):
        qt.load_shards(path, (0, 3))
    with pytest.raises(ValueError, match=r"tp=\(2, 2\)"):
        qt.load_shards(path, (2, 2))
    # Native blocks split on columns must keep whole blocks: 512 values over 4 ranks cut
    # Q4_0's rows into 128-value pieces, whole 32-value blocks; ffn_down's Q6_K rows of 1024
    # values over 8 ranks are 128 values, not whole blocks of 256.
    with pytest.raises(ValueError, match="blocks of 210 bytes"):
        qt.load_shards(path, (0, 8), {"blk.*.ffn_down.weight": "rowwise"}, dtype="native")
    assert os.path.exists(path)


def test_regions_load_as_values_of_the_whole_tensors_and_bad_regions_are_named(tmp_path) -> None:
    """The batched load of regions that a rank's shards come from: rows, columns of every row,
    a one-dimensional tensor's values."""
    path = tmp_path / "gqa.gguf"
    write_llama(path, False)
    with safe_open(path, framework="numpy") as f:
        name = "blk.0.ffn_gate.weight"
        whole = f.get_tensor(name)
        width = whole.shape[1]
        regions = [(name, (3, 7), (0, width)), (name, (0, whole.shape[0]), (32, 96)), ("blk.0.attn_norm.weight", (0, 1), (0, 8))]
        a, b, c = (_convert(t, "numpy") for t in _native._load_regions(f.file, regions))
        assert np.array_equal(a.view(np.uint32), whole[3:7].view(np.uint32))
        assert np.array_equal(b.view(np.uint32), whole[:, 32:96].view(np.uint32))
        assert c.reshape(-1).shape == (8,)
        with pytest.raises(Exception, match=r"gqa.gguf.*blk.0.ffn_gate.weight.*rows 7\.\.3"):
            _native._load_regions(f.file, [(name, (7, 3), (0, width))])
        with pytest.raises(Exception, match=r"gqa.gguf.*blk.0.attn_norm.weight.*not inside"):
            _native._load_regions(f.file, [("blk.0.attn_norm.weight", (0, 1), (0, 9999))])


@pytest.mark.parametrize("world", [2, 4])
def test_the_tp_example_checks_and_runs_a_forward_pass_with_gloo(tmp_path, world) -> None:
    """examples/tp_load.py under torchrun on the CPU (gloo): --check and --forward pass."""
    import subprocess
    import sys

    path = tmp_path / "gqa.gguf"
    write_llama(path, False)
    example = Path(__file__).resolve().parents[3] / "examples" / "tp_load.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world}",
           f"--master-port={free_port()}", str(example), str(path), "--device", "cpu", "--check", "--forward"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "check: PASS" in run.stdout and "forward: max error" in run.stdout and "PASS" in run.stdout, run.stdout
    assert run.stdout.count("read ") == world, run.stdout
