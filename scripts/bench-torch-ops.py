"""The torch op's benchmark of docs/performance.md, for a machine with an NVIDIA GPU and torch.

    python3 scripts/bench-torch-ops.py [--formats q4_k,q6_k] [--quick]

Prints, with the card, the torch version and the date:

- op throughput: ``quantforge.torch.dequantize`` into a preallocated ``out`` on a 14336 x 4096
  weight of every quantized type, f16 and bf16, as bytes read plus written per second (the
  metric of ``quantforge bench``), timed with CUDA events over many calls after a warm-up,
  median of runs; beside it a device copy of the same bytes measured the same way;
- per-call overhead: host time of one call on a 256-element tensor, against an empty
  ``torch.library`` custom op in the same run;
- diffusers' own ``dequantize_gguf_tensor`` on CUDA against ours on the same Q4_K, Q6_K and
  Q8_0 weights (when diffusers is importable);
- ``GGUFLinear`` forward (14336 x 4096 Q4_K, bf16, 1, 16 and 4096 tokens) against ``nn.Linear``
  with the bf16 weight already expanded.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

import quantforge.torch as qt
from quantforge import _native

ROWS, COLS = 14336, 4096


def cuda_time(fn, calls: int, runs: int) -> float:
    """Median over ``runs`` of the milliseconds per call of ``calls`` calls between two events."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(calls):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / calls)
    return statistics.median(times)


def blocks_of(name: str, rows: int, cols: int, seed: int = 1, scale=None) -> torch.Tensor:
    tid, _, be, bb = qt.type_info(name)
    raw = _native._random_blocks(tid, rows * cols // be, seed, scale)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(rows, cols // be * bb).cuda()


def quantized_types() -> list:
    out = []
    for tid in range(64):
        try:
            info = _native.ggml_type_info(tid)
        except ValueError:
            continue
        if info[4] == "quantized":
            out.append(info[1])
    return out


def throughput(formats, rows: int, calls: int, runs: int) -> None:
    print(f"op throughput on {rows} x {COLS} weights (GB/s of bytes read + written; copy: the same "
          "bytes copied on the device)")
    print(f"{'type':<8} {'dtype':<5} {'op GB/s':>9} {'copy GB/s':>10} {'% of copy':>9}")
    for name in formats:
        blocks = blocks_of(name, rows, COLS)
        for dt in (torch.float16, torch.bfloat16):
            out = torch.empty(rows, COLS, dtype=dt, device="cuda")
            moved = blocks.numel() + out.numel() * out.element_size()
            ms = cuda_time(lambda: qt.dequantize(blocks, name, out=out), calls, runs)
            src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
            dst = torch.empty_like(src)
            cms = cuda_time(lambda: dst.copy_(src), calls, runs)
            op, copy = moved / ms / 1e6, moved / cms / 1e6
            print(f"{name:<8} {str(dt)[6:]:<5} {op:>9.0f} {copy:>10.0f} {100 * op / copy:>8.1f}%")


@torch.library.custom_op("qfbench::empty", mutates_args=("out",))
def _empty(blocks: torch.Tensor, ggml_type: int, out: torch.Tensor) -> None:
    """An empty custom op with ``dequantize_out``'s signature: the bar's baseline."""
    return None


def overhead(reps: int = 20000) -> None:
    blocks = blocks_of("Q4_0", 1, 256)
    out = torch.empty(1, 256, dtype=torch.float16, device="cuda")

    def host(fn) -> float:
        fn()
        torch.cuda.synchronize()
        best = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best.append((time.perf_counter() - t) / reps * 1e6)
            torch.cuda.synchronize()
        return statistics.median(best)

    ours = host(lambda: qt.dequantize(blocks, "Q4_0", out=out))
    new = host(lambda: qt.dequantize(blocks, "Q4_0", dtype=torch.float16))
    empty = host(lambda: torch.ops.qfbench.empty(blocks, 2, out))
    print(f"per-call host time, 256 elements: dequantize(out=) {ours:.2f} us, new tensor {new:.2f} us, "
          f"empty custom op {empty:.2f} us -> {ours / empty:.2f}x / {new / empty:.2f}x")


def against_diffusers(calls: int, runs: int) -> None:
    try:
        from diffusers.quantizers.gguf import utils as du
        import gguf
    except ImportError as e:
        print(f"diffusers: not importable ({e}); skipped")
        return
    print("diffusers' dequantize_gguf_tensor (torch ops, f16 out) against quantforge (f16 out), 14336 x 4096")
    for name in ("Q4_K", "Q6_K", "Q8_0"):
        blocks = blocks_of(name, ROWS, COLS, scale=2.0**-9)
        p = du.GGUFParameter(blocks, quant_type=gguf.GGMLQuantizationType[name])
        theirs = cuda_time(lambda: du.dequantize_gguf_tensor(p), max(calls // 10, 3), runs)
        ours = cuda_time(lambda: qt.dequantize(blocks, name, dtype=torch.float16), calls, runs)
        print(f"{name}: diffusers {theirs:.3f} ms, quantforge {ours:.3f} ms -> {theirs / ours:.1f}x")


def linear(calls: int, runs: int) -> None:
    blocks = blocks_of("Q4_K", ROWS, COLS, scale=2.0**-9)
    layer = qt.GGUFLinear(blocks, "Q4_K", (ROWS, COLS)).cuda()
    dense = torch.nn.Linear(COLS, ROWS, bias=False, dtype=torch.bfloat16, device="cuda")
    with torch.no_grad():
        dense.weight.copy_(layer.dequantized(torch.bfloat16))
    print("GGUFLinear forward (14336 x 4096 Q4_K, bf16) against nn.Linear with the bf16 weight expanded")
    for tokens in (1, 16, 4096):
        x = torch.randn(tokens, COLS, dtype=torch.bfloat16, device="cuda")
        with torch.inference_mode():
            g = cuda_time(lambda: layer(x), calls, runs)
            d = cuda_time(lambda: dense(x), calls, runs)
        print(f"{tokens:>5} tokens: GGUFLinear {g:.3f} ms, nn.Linear {d:.3f} ms -> {g / d:.2f}x")


def training_memory(layers: int = 8, dim: int = 4096, tokens: int = 512) -> None:
    """Peak device memory of one LoRA training step over ``layers`` frozen layers: GGUFLinear
    (Q4_K blocks, expanded again in backward) against nn.Linear holding the bf16 weights."""

    def step(make) -> float:
        torch.cuda.empty_cache()
        mods = [make(i) for i in range(layers)]
        loras = [(torch.randn(16, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True),
                  torch.zeros(dim, 16, device="cuda", dtype=torch.bfloat16, requires_grad=True)) for _ in mods]
        x = torch.randn(tokens, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        h = x
        for m, (a, b) in zip(mods, loras):
            h = torch.nn.functional.gelu(m(h) + h @ a.T @ b.T)
        h.float().square().mean().backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        weights = sum(m.weight.numel() * m.weight.element_size() for m in mods)
        del mods, loras, x, h
        return peak / 2**20, weights / 2**20

    def gguf_layer(i):
        return qt.GGUFLinear(blocks_of("Q4_K", dim, dim, 100 + i, 2.0**-9), "Q4_K", (dim, dim))

    def dense_layer(i):
        layer = gguf_layer(i)
        d = torch.nn.Linear(dim, dim, bias=False, dtype=torch.bfloat16, device="cuda")
        with torch.no_grad():
            d.weight.copy_(layer.dequantized(torch.bfloat16))
        d.weight.requires_grad_(False)
        return d

    g, gw = step(gguf_layer)
    d, dw = step(dense_layer)
    print(f"LoRA step over {layers} layers of {dim} x {dim}, {tokens} tokens: peak above the inputs "
          f"GGUFLinear {g:.0f} MiB (weights {gw:.0f} MiB), nn.Linear bf16 {d:.0f} MiB (weights {dw:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=ROWS, help="rows of the throughput weights (at least 14336)")
    a = ap.parse_args()
    calls, runs = (10, 5) if a.quick else (50, 11)
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, datetime.date.today())
    formats = [f.upper() for f in a.formats.split(",") if f] or quantized_types()
    throughput(formats, max(a.rows, ROWS), calls, runs)
    overhead(2000 if a.quick else 20000)
    against_diffusers(calls, runs)
    linear(calls, runs)
    training_memory()


if __name__ == "__main__":
    main()
