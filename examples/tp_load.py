"""Tensor-parallel loading of a GGUF model, one process per GPU (or per CPU rank with gloo):

    torchrun --nproc-per-node N examples/tp_load.py MODEL.gguf [--check] [--forward] [--device cpu]

Each rank loads only its shard of every tensor with
``quantforge.torch.load_shards(path, (rank, N), device=..., dtype=bfloat16)`` (the default plan
for llama.cpp's names) and reports the file bytes it read, its wall time and its peak host
memory.

``--check`` gathers the shards over the process group (NCCL on GPUs, gloo on the CPU) along the
plan's split dimensions, per component for fused projections, and compares them bit for bit
with the whole tensors of a one-device ``load_file``.

``--forward`` runs a small llama forward pass under tensor parallelism on the shards
(column-parallel Q/K/V and gate/up, row-parallel output and down projections, then an
all-reduce) and compares its logits with the same forward pass on the whole tensors, within
bfloat16 tolerance. It is a test of the shards, not an inference engine.

NVLink multicast stays off in every process (``NCCL_NVLS_ENABLE=0``,
``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``, ``NVSHMEM_DISABLE_NVLS=1``).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"), ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import quantforge.torch as qt  # noqa: E402
from quantforge import safe_open  # noqa: E402
from quantforge._tp import LLAMA_PLAN, _part, row_ranges, style_of  # noqa: E402


def gather(t: torch.Tensor, group_size: int) -> list:
    """``t`` of every rank, bit for bit (as bytes: gloo gathers no bfloat16)."""
    wire = t.contiguous().view(torch.uint8)
    parts = [torch.empty_like(wire) for _ in range(group_size)]
    dist.all_gather(parts, wire)
    return [p.view(t.dtype) for p in parts]


def check(path: str, shards: dict, rank: int, world: int, device: str) -> int:
    """Puts every tensor back from the ranks' shards and compares it with the whole tensor;
    returns the number of tensors that differ (on every rank)."""
    whole = qt.load_file(path, device=device, dtype=torch.bfloat16)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    bad = 0
    for name, w in whole.items():
        style = style_of(name, LLAMA_PLAN)
        got = shards[name]
        shapes = gather(torch.tensor(list(got.shape), device=device), world)
        # Shards of one tensor may differ in size across ranks (replicated KV groups): pad.
        biggest = [int(max(s[d] for s in shapes)) for d in range(got.dim())]
        padded = torch.zeros(biggest, dtype=got.dtype, device=device)
        padded[tuple(slice(0, n) for n in got.shape)] = got
        parts = [p[tuple(slice(0, int(n)) for n in s)] for p, s in zip(gather(padded, world), shapes)]
        rebuilt = torch.empty_like(w)
        for r, part in enumerate(parts):
            if style == "replicate":
                rebuilt = part
            elif style == "colwise":
                at = 0
                for a, b in row_ranges(name, w.shape[0], meta, r, world):
                    rebuilt[a:b] = part[at : at + b - a]
                    at += b - a
            else:
                a, b = _part(name, w.shape[-1], world, r, world, "columns")
                rebuilt[..., a:b] = part
        if not torch.equal(rebuilt.view(torch.int16), w.view(torch.int16)):
            bad += 1
            if rank == 0:
                print(f"DIFFERS: {name} ({style})")
    return bad


def rope(x: torch.Tensor, pos: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary embedding of ``x`` (seq, heads, d) on adjacent pairs (GGUF's Q/K row order)."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)
    ang = pos[:, None].float() * freqs[None, :]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]  # (seq, 1 head, d/2)
    x2 = x.reshape(*x.shape[:-1], d // 2, 2)
    a, b = x2[..., 0], x2[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).reshape(x.shape)


def forward(w: dict, meta: dict, tokens: torch.Tensor, world: int, rank: int, tp: bool) -> torch.Tensor:
    """Logits of a llama forward pass in float32 on bfloat16 weights; with ``tp`` the weights
    are this rank's shards and the row-parallel outputs are all-reduced."""
    w = {n: t.float() for n, t in w.items()}
    arch = meta.get("general.architecture", "llama")
    n_head, n_kv = int(meta[f"{arch}.attention.head_count"]), int(meta[f"{arch}.attention.head_count_kv"])
    eps = float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5))
    layers = int(meta[f"{arch}.block_count"])
    h = F.embedding(tokens, w["token_embd.weight"])
    pos = torch.arange(tokens.shape[0], device=tokens.device)
    reduce = (lambda t: (dist.all_reduce(t), t)[1]) if tp else (lambda t: t)
    for i in range(layers):
        p = f"blk.{i}."
        x = F.rms_norm(h, (h.shape[-1],), w[p + "attn_norm.weight"], eps)
        q, k, v = (x @ w[p + n + ".weight"].T for n in ("attn_q", "attn_k", "attn_v"))
        hd = q.shape[-1] // (n_head // world if tp else n_head)
        q = rope(q.reshape(len(pos), -1, hd), pos).transpose(0, 1)
        k = rope(k.reshape(len(pos), -1, hd), pos).transpose(0, 1)
        v = v.reshape(len(pos), -1, hd).transpose(0, 1)
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        v = v.repeat_interleave(q.shape[0] // v.shape[0], dim=0)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + reduce(att.transpose(0, 1).reshape(len(pos), -1) @ w[p + "attn_output.weight"].T)
        x = F.rms_norm(h, (h.shape[-1],), w[p + "ffn_norm.weight"], eps)
        g = F.silu(x @ w[p + "ffn_gate.weight"].T) * (x @ w[p + "ffn_up.weight"].T)
        h = h + reduce(g @ w[p + "ffn_down.weight"].T)
    h = F.rms_norm(h, (h.shape[-1],), w["output_norm.weight"], eps)
    return h @ w["output.weight"].T


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--device", default="cuda", help="cuda (one GPU per local rank) or cpu")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--forward", action="store_true")
    a = ap.parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local}" if a.device == "cuda" else "cpu"
    if a.device == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if a.device == "cuda" else "gloo")
    dist.barrier()
    t0 = time.perf_counter()
    shards, report = qt.load_shards(a.model, (rank, world), device=device, dtype=torch.bfloat16)
    if a.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"rank {rank}/{world}: read {report.bytes_read} of {report.tensor_bytes} tensor bytes "
        f"({report.bytes_read / max(report.tensor_bytes, 1):.3f}), {wall * 1e3:.1f} ms, peak host {peak:.0f} MiB",
        flush=True,
    )
    failed = 0
    if a.check:
        failed += check(a.model, shards, rank, world, device)
        if rank == 0:
            print("check:", "PASS" if failed == 0 else f"FAIL ({failed} tensors differ)", flush=True)
    if a.forward:
        with safe_open(a.model, framework="numpy") as f:
            meta = f.metadata()
        tokens = torch.arange(7, device=device) * 13 % shards["token_embd.weight"].shape[0]
        whole = qt.load_file(a.model, device=device, dtype=torch.bfloat16)
        want = forward(whole, meta, tokens, world, rank, tp=False)
        got = forward(shards, meta, tokens, world, rank, tp=True)
        err = float((got - want).abs().max() / want.abs().max())
        ok = err < 2e-2
        failed += int(not ok)
        if rank == 0:
            print(f"forward: max error {err:.2e} of the largest logit:", "PASS" if ok else "FAIL", flush=True)
    dist.destroy_process_group()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
