"""Threads, fork and signals on the CPU (the GPU halves run with ``QUANTFORGE_GPU_TESTS=1``):

- 16 Python threads share one ``safe_open`` and call ``get_tensor`` and ``load_file`` at once:
  the values are a serial load's, bit for bit, and nothing deadlocks; a pure-Python counter
  thread keeps counting while a large load runs (the GIL is released).
- A child forked after ``import quantforge``, and one forked after a CPU load that started the
  thread pool, load on the CPU without deadlock (rayon's pool does not survive a fork: CPU
  loads run on a pool that each process makes for itself).
- ``KeyboardInterrupt`` during ``load_file`` of a model that takes several seconds returns within
  a second (the load checks for signals between chunks of rows, also inside one large
  tensor), and leaves nothing behind (``quantforge.live_bytes()``).

Fork and signal tests run in a child interpreter, so that a deadlock or a stray signal cannot
take pytest with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import quantforge
import quantforge.numpy
from quantforge import safe_open

from conftest import write_raw_gguf

GPU_TESTS = os.environ.get("QUANTFORGE_GPU_TESTS") == "1"
needs_gpu = pytest.mark.skipif(
    not GPU_TESTS,
    reason="GPU tests run only with QUANTFORGE_GPU_TESTS=1 (needs torch and a CUDA device)",
)
Q4_K, Q6_K, Q8_0, F16 = 12, 14, 8, 1


def random_blocks(ty: int, dims, seed: int) -> bytes:
    """Random bytes for a tensor of `dims` (ggml order) of type `ty` (any bytes are blocks; a
    scale may be NaN or infinite, which the comparisons by bits take as they are)."""
    from conftest import BLOCKS

    elems, block = BLOCKS[ty]
    n = int(np.prod(dims)) // elems * block
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A model of several types whose largest tensors take more than one chunk of rows (and
    so run on several threads of the pool)."""
    path = tmp_path_factory.mktemp("concurrency") / "model.gguf"
    shapes = [
        ("token_embd.weight", Q4_K, (2048, 4096)),
        ("blk.0.attn_q.weight", Q6_K, (1024, 1024)),
        ("blk.0.ffn_up.weight", Q8_0, (1024, 2048)),
        ("blk.0.norm.weight", F16, (1024,)),
        ("output.weight", Q4_K, (4096, 2560)),
    ]
    write_raw_gguf(path, [(n, ty, d, random_blocks(ty, d, i)) for i, (n, ty, d) in enumerate(shapes)])
    return path


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def run_threads(work, n: int = 16, timeout: float = 120.0) -> list:
    """Runs `work(i)` on `n` daemon threads at once; returns their errors. A thread still
    running after `timeout` is a deadlock."""
    errors: list = []
    start = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as e:  # reported below, with the thread's number
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not stuck, f"threads {stuck} still running after {timeout} s: deadlock"
    return errors


# ---- threads -----------------------------------------------------------------------------------


def test_sixteen_threads_share_one_file_and_load_files_at_once(model: Path) -> None:
    with safe_open(model, framework="numpy") as f:
        names = f.keys()
        want = {n: f.get_tensor(n) for n in names}
        want16 = {n: quantforge.File(model, dtype="f16").get(n) for n in names}
        want16 = {n: np.from_dlpack(t) for n, t in want16.items()}

        def work(i: int) -> None:
            for k in range(4):
                n = names[(i + k) % len(names)]
                assert same_bits(f.get_tensor(n), want[n]), (i, n)
            helper = quantforge.numpy.load_file(model, dtype="f16" if i % 2 else None)
            ref = want16 if i % 2 else want
            assert list(helper) == names
            for n, a in helper.items():
                assert same_bits(a, ref[n]), (i, n)

        errors = run_threads(work)
    assert not errors, errors


def test_other_threads_run_during_a_load(tmp_path: Path) -> None:
    """A pure-Python counter thread advances while the main thread is inside a large load:
    the GIL is released. If it were held, the counter would stand still for the whole load."""
    path = tmp_path / "large.gguf"
    write_raw_gguf(path, [("w", Q4_K, (4096, 16384), None)])  # 64 M values, a sparse file
    count = [0]
    stop = threading.Event()

    def counter() -> None:
        while not stop.is_set():
            count[0] += 1

    th = threading.Thread(target=counter, daemon=True)
    th.start()
    try:
        time.sleep(0.2)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(0.2)
        rate = (count[0] - c0) / (time.perf_counter() - t0)  # counts per second, unhindered
        with quantforge.File(path, dtype="f16") as f:
            c0, t0 = count[0], time.perf_counter()
            t = f.get("w")
            took, during = time.perf_counter() - t0, count[0] - c0
    finally:
        stop.set()
        th.join()
    assert t.nbytes == 64 << 21
    # The load shares two cores with the counter, so the counter gets less than its rate;
    # held, the GIL would give it nothing at all.
    assert took > 0.05, f"the load took {took:.3f} s: too short to tell"
    assert during > 0.05 * rate * took, (during, rate, took)


@needs_gpu
def test_sixteen_threads_on_the_gpu(model: Path) -> None:
    torch = pytest.importorskip("torch")
    assert torch.cuda.is_available(), "QUANTFORGE_GPU_TESTS=1 but torch sees no CUDA device"
    import quantforge.torch

    with safe_open(model, framework="numpy") as cpu:
        want = {n: torch.from_numpy(cpu.get_tensor(n)) for n in cpu.keys()}
    with safe_open(model, framework="pt", device="cuda:0") as f:
        names = f.keys()

        def work(i: int) -> None:
            for k in range(4):
                n = names[(i + k) % len(names)]
                got = f.get_tensor(n).cpu()
                assert torch.equal(torch.isnan(got), torch.isnan(want[n])), (i, n)
                ok = ~torch.isnan(got)
                assert torch.equal(got[ok].view(torch.int32), want[n][ok].view(torch.int32)), (i, n)
            state = quantforge.torch.load_file(model, device="cuda:0")
            assert list(state) == names

        errors = run_threads(work)
    assert not errors, errors


# ---- fork --------------------------------------------------------------------------------------

FORK_SCRIPT = r"""
import hashlib, json, os, sys, time
import quantforge, quantforge.numpy

path = sys.argv[1]

def digest():
    arrays = quantforge.numpy.load_file(path)
    return {n: hashlib.sha256(a.tobytes()).hexdigest() for n, a in arrays.items()}

def in_child(expected):
    pid = os.fork()
    if pid == 0:
        try:
            ok = digest() == expected if expected is not None else bool(digest())
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "deadlock"

result = {"after_import": in_child(None)}
want = digest()  # starts the thread pool in this process
result["after_a_load"] = in_child(want)
result["parent_again"] = digest() == want
print(json.dumps(result))
"""


def test_a_forked_child_loads_on_the_cpu(model: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(model)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result == {"after_import": 0, "after_a_load": 0, "parent_again": True}, result


GPU_FORK_SCRIPT = r"""
import json, os, sys, time
import quantforge, quantforge.numpy

path = sys.argv[1]
gpu_file = quantforge.File(path, device="cuda:0")
gpu_tensor = gpu_file.get(gpu_file.keys()[0])
want = quantforge.numpy.load_file(path)

pid = os.fork()
if pid == 0:
    code = 0
    try:
        quantforge.File(path, device="cuda:0")
        code = 10  # opened a GPU in the child: should have been refused
    except quantforge.QuantforgeError as e:
        if "fork" not in str(e):
            code = 11
    try:
        gpu_file.get(gpu_file.keys()[0])
        code = 15  # loaded through the parent's device
    except quantforge.QuantforgeError as e:
        if "fork" not in str(e):
            code = 16
    try:
        got = quantforge.numpy.load_file(path)
        if any(got[n].tobytes() != want[n].tobytes() for n in want):
            code = 12
    except BaseException:
        code = 13
    try:
        gpu_tensor.__dlpack__()
        code = 14  # exported the parent's device memory
    except BufferError:
        pass
    del gpu_tensor  # the parent's device memory: left alone, no hang
    os._exit(code)
deadline = time.monotonic() + 60
status = None
while time.monotonic() < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    time.sleep(0.05)
if status is None:
    os.kill(pid, 9)
    status = "hang"
print(json.dumps({"child": status, "parent_gpu": gpu_tensor.device}))
"""


@needs_gpu
def test_a_child_forked_after_cuda_gets_a_clear_error(model: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", GPU_FORK_SCRIPT, str(model)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result == {"child": 0, "parent_gpu": "cuda:0"}, result


# ---- interrupts --------------------------------------------------------------------------------

INTERRUPT_SCRIPT = r"""
import gc, json, os, signal, sys, threading, time
import quantforge, quantforge.numpy

path, warm, delay, device = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

def load(p):
    if device == "cpu":
        return quantforge.numpy.load_file(p, dtype="f16")
    import torch
    from quantforge import torch as qf_torch
    return qf_torch.load_file(p, device=device, dtype=torch.float16)

def settle():
    gc.collect()
    if device != "cpu":
        import torch
        torch.cuda.synchronize()
        return quantforge.live_bytes(), torch.cuda.mem_get_info()[0]
    return quantforge.live_bytes(), 0

load(warm)  # the thread pool, the allocator, the device's kernels
before, free_before = settle()
sent = {}

def interrupt():
    sent["at"] = time.perf_counter()
    os.kill(os.getpid(), signal.SIGINT)

timer = threading.Timer(delay, interrupt)
start = time.perf_counter()
timer.start()
try:
    load(path)
    outcome, back = "finished", time.perf_counter()
except KeyboardInterrupt:
    outcome, back = "interrupted", time.perf_counter()
timer.join()
after, free_after = settle()
print(json.dumps({
    "outcome": outcome, "latency": back - sent.get("at", back), "ran": back - start,
    "before": before, "after": after, "free_lost": free_before - free_after,
}))
"""


def values_per_second(path: Path, device: str = "cpu") -> float:
    """How fast this machine loads values as f16 (measured on the calibration file)."""
    with quantforge.File(path, device=device, dtype="f16") as f:
        t = f.get("w")  # warm-up
        t0 = time.perf_counter()
        t = f.get("w")
        return (t.nbytes // 2) / (time.perf_counter() - t0)


def big_model(tmp_path: Path, device: str, cap: int):
    """A sparse Q4_K model that takes about 6 s to load as f16 here (at most `cap` values),
    whose first tensor alone holds most of it, so that only checks inside a tensor can stop
    the load in time; the delay before the interrupt; and how long the load would take."""
    calib = tmp_path / "calibration.gguf"
    write_raw_gguf(calib, [("w", Q4_K, (4096, 4096), None)])
    rate = values_per_second(calib, device)
    values = min(int(rate * 6.0), cap)
    rows = max(1024, values // 4096 // 256 * 256)
    path = tmp_path / "big.gguf"
    write_raw_gguf(
        path,
        [("token_embd.weight", Q4_K, (4096, rows), None), ("output.weight", Q4_K, (4096, 1024), None)],
    )
    expected = 4096 * (rows + 1024) / rate
    return path, calib, min(0.5, expected / 4), expected


def run_interrupt(tmp_path: Path, device: str, cap: int) -> dict:
    path, warm, delay, expected = big_model(tmp_path, device, cap)
    r = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT, str(path), str(warm), str(delay), device],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    result["expected"] = expected
    return result


def test_ctrl_c_stops_a_cpu_load_within_a_second(tmp_path: Path) -> None:
    # At most 2^31 values: 4 GiB of f16 if it ran to the end (it is stopped after 0.5 s).
    r = run_interrupt(tmp_path, "cpu", 1 << 31)
    assert r["expected"] > 1.5, r  # the whole load would have taken seconds
    assert r["outcome"] == "interrupted", r
    assert r["latency"] < 1.0, r
    assert r["after"] == r["before"], r  # no tensor storage left behind


@needs_gpu
def test_ctrl_c_stops_a_gpu_load_within_a_second(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    # A GPU loads tens of billions of values a second: the model is as large as a third of the
    # free device memory allows (as f16), and the interrupt comes a quarter of the way in.
    cap = torch.cuda.mem_get_info()[0] // 3 // 2
    r = run_interrupt(tmp_path, "cuda:0", cap)
    assert r["outcome"] == "interrupted", r
    assert r["latency"] < 1.0, r
    assert r["after"] == r["before"], r
    assert abs(r["free_lost"]) <= 8 << 20, r  # device memory back (within the driver's pages)
