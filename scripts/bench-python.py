#!/usr/bin/env python3
"""Whole-model load from Python, the benchmark of docs/performance.md (issue 11).

    python3 scripts/bench-python.py MODEL --cli DIR/quantforge [--reps N] [--gguf-py]

On a machine with an NVIDIA GPU and PyTorch, with the `quantforge-gguf` wheel installed, for a
model already in the page cache (the script reads it once first), in one run:

1. the CLI's own load (`quantforge load MODEL --device cuda:0 --dtype f16`), REPS processes,
   its reported total;
2. `quantforge.torch.load_file(MODEL, device="cuda:0", dtype=torch.float16)` REPS times in this
   process after one warm-up call (which opens the device and loads the kernels), timed from the
   call to the last tensor being ready on the device (`torch.cuda.synchronize()`), the tensors
   dropped between calls;
3. with --gguf-py, the path transformers takes: gguf-py's reader and numpy `dequantize` on the
   CPU, then `torch.from_numpy(...).to("cuda:0", torch.float16)` per tensor (once: it is slow).

Prints one line per measurement and a summary with the two ratios the issue sets bars for.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def cli_load(cli, model, reps):
    times = []
    for _ in range(reps):
        out = subprocess.run(
            [cli, "load", model, "--device", "cuda:0", "--dtype", "f16", "--quiet", "--no-progress"],
            check=True, capture_output=True, text=True,
        ).stdout
        total = [line for line in out.splitlines() if line.startswith("total")]
        m = re.search(r"([0-9.]+) (ms|s)\b", total[-1]) if total else None
        if not m:
            sys.exit(f"cannot read the CLI's total from:\n{out}")
        t = float(m.group(1)) * (1e-3 if m.group(2) == "ms" else 1.0)
        print(f"cli load --dtype f16: {t * 1e3:.1f} ms  ({total[-1].strip()})", flush=True)
        times.append(t)
    return times


def python_load(model, reps):
    import torch
    import quantforge.torch as qt

    def once():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        tensors = qt.load_file(model, device="cuda:0", dtype=torch.float16)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, tensors

    warm, tensors = once()
    n = len(tensors)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    del tensors
    print(f"load_file warm-up (opens the device, loads kernels): {warm * 1e3:.1f} ms, "
          f"{n} tensors, {nbytes / 1e9:.2f} GB of f16", flush=True)
    times = []
    for _ in range(reps):
        t, tensors = once()
        del tensors
        print(f"quantforge.torch.load_file f16: {t * 1e3:.1f} ms", flush=True)
        times.append(t)
    return times


def gguf_py_load(model):
    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    reader = GGUFReader(model)
    out = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        out[t.name] = torch.from_numpy(np.ascontiguousarray(values).reshape(shape)).to(
            "cuda:0", torch.float16)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"gguf-py dequantize + torch .to(cuda) f16: {dt:.2f} s, {len(out)} tensors", flush=True)
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--cli", required=True, help="path of the quantforge binary")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--gguf-py", action="store_true", help="also time gguf-py's path (slow)")
    args = ap.parse_args()

    with open(args.model, "rb") as f:  # into the page cache
        while f.read(64 << 20):
            pass
    import torch
    import quantforge
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"quantforge {getattr(quantforge, '__version__', '?')}; {os.cpu_count()} cores", flush=True)

    cli = statistics.median(cli_load(args.cli, args.model, args.reps))
    py = statistics.median(python_load(args.model, args.reps))
    print(f"median: CLI {cli * 1e3:.1f} ms, load_file {py * 1e3:.1f} ms: "
          f"load_file / CLI = {py / cli:.2f} (bar: <= 1.2)")
    if args.gguf_py:
        slow = gguf_py_load(args.model)
        print(f"gguf-py path / load_file = {slow / py:.0f}x (bar: >= 100x)")


if __name__ == "__main__":
    main()
