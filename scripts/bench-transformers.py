#!/usr/bin/env python3
"""quantforge.transformers against transformers' own GGUF loading, on a synthetic llama model.

    python3 scripts/bench-transformers.py [--model FILE | --params 7b --mix q4_k_m --cli QUANTFORGE]
        [--device cuda:0] [--dtype bfloat16] [--skip-hf] [--hf-timeout S] [--tp 4] [--runs LIST]
        [--cold | --warmup-model FILE]
        [--json OUT]

The model is FILE, or one `quantforge synth --params P --mix M` writes into --workdir (kept
and reused). synth writes the metadata transformers needs for the model (llama's
context_length, embedding_length, block_count, feed_forward_length, head counts, rope, RMS
epsilon, vocab_size); it writes no tokenizer, which no measurement here needs. The file is
read once first, so every run finds it in the page cache.

Each measurement runs alone in a fresh Python process (imports, CUDA context and peak memory
are its own):

- `qf`: `quantforge.transformers.from_pretrained(FILE, device=DEVICE, dtype=DTYPE)`;
- `hf`: `AutoModelForCausalLM.from_pretrained(DIR, gguf_file=NAME, dtype=DTYPE).to(DEVICE)`
  (unless --skip-hf; killed after --hf-timeout seconds: gguf-py dequantizes on the CPU);
- `qf-state`: `quantforge.transformers.load_state_dict(FILE, device=DEVICE, dtype=DTYPE)`, the
  whole load the tensor-parallel ranks are compared with;
- `qf-file`: `quantforge.torch.load_file(FILE, device=DEVICE, dtype=DTYPE)` (GGUF names, the
  pipelined loader, no transformers);
- `tp r/N` for r in 0..N-1 (--tp N, 0 to skip): `quantforge.transformers.load_shards(FILE,
  (r, N), ...)`, each rank alone in its process on the one device: bytes read (the load
  report) against the bound a rank should keep to (a split tensor's 1/N plus two blocks per
  row, 1/n_kv for K and V replicated over groups of ranks, a replicated tensor whole).

Each process first makes the same call on a tiny model (--warmup-model, or `synth --params
test-tiny` written into --workdir), timed apart as `warmup_s`: a first load in a process imports what
transformers imports lazily (the model's modules, torch's compiler front end; 3 to 4 s of CPU
time for either library's load), which a process pays once whatever the model. --cold skips
it, and the timed call then includes those imports. `stages` gives the seconds quantforge
spent in transformers' metadata steps: its parse of the file, the config, and the meta model
with its name map.

Each process times the call from start to the last tensor on the device
(`torch.cuda.synchronize()`), and measures peak host memory over a baseline taken after
`import torch` and creating the CUDA context: VmHWM after the call minus VmRSS at the
baseline, with VmHWM reset to the baseline by `echo 5 > /proc/self/clear_refs` (where the
kernel refuses that, the peak may predate the baseline: `hwm_reset` says which); on CUDA also
the peak of `torch.cuda.max_memory_allocated()` (PyTorch's allocations only) and the device
memory in use after the call over before it, as the driver counts it (quantforge's own
allocations too, and what PyTorch's cache keeps reserved). The libraries are imported after the
baseline (counted in memory, timed apart as `import_s`). `qf` and `hf` then run one forward
pass on the same tokens and save the logits; the summary says whether they are equal bit for
bit.

Prints one line per run, then a JSON summary and a markdown table (--json also writes the
JSON to a file). --runs picks some of the runs, to split them over commands of limited time;
the logits of qf and hf are kept in --workdir between such commands, so a later one still
compares them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOKENS = [[1, 306, 4658, 278, 6593, 310, 2834, 338]]
MARK = "BENCH-RESULT "


# ---- the child: one measurement --------------------------------------------------------------


def proc_status() -> dict:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_hwm() -> bool:
    """Resets VmHWM to the current RSS (Linux's clear_refs 5); False where it is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tensors_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def call(mode: str, path: Path, device: str, dtype) -> tuple:
    """The measured call of ``mode`` on ``path``: (model or None, state or None, report or None)."""
    import quantforge.torch as qt
    import quantforge.transformers as qtf
    import transformers

    if mode == "qf":
        return qtf.from_pretrained(path, device=device, dtype=dtype), None, None
    if mode == "hf":
        auto = transformers.AutoModelForCausalLM
        return auto.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).to(device), None, None
    if mode == "qf-state":
        return None, qtf.load_state_dict(path, device=device, dtype=dtype), None
    if mode == "qf-file":
        return None, qt.load_file(path, device=device, dtype=dtype), None
    _, rank, world = mode.split(":")
    state, report = qtf.load_shards(path, (int(rank), int(world)), device=device, dtype=dtype)
    return None, state, report


def timed_stages(stages: dict) -> None:
    """Wraps quantforge.transformers' metadata steps (transformers' parse of the file, its
    config, the meta model and name map) so that their seconds add up in ``stages``."""
    import quantforge.transformers as qtf

    for name in ("_parse", "_config", "_processor"):
        inner = getattr(qtf, name)

        def timed(*a, _inner=inner, _name=name, **k):
            t = time.perf_counter()
            try:
                return _inner(*a, **k)
            finally:
                stages[_name.strip("_")] = stages.get(_name.strip("_"), 0.0) + time.perf_counter() - t

        setattr(qtf, name, timed)


def run_one(mode: str, args) -> dict:
    """One measurement, in this process: ``mode`` is qf, hf, qf-state, qf-file or tp:R:N. With
    --warmup FILE, the same call on FILE (a tiny model) runs first, untimed in ``seconds``: the
    modules transformers imports lazily on a first load (the model's class, torch's compiler
    front end; seconds of CPU time) are then imported, as in any process that has loaded a
    model before, and ``seconds`` is the load itself."""
    import torch

    device, dtype = args.device, getattr(torch, args.dtype)
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # the CUDA context
        torch.cuda.synchronize()
    result = {"mode": mode}
    if args.warmup:
        t0 = time.perf_counter()
        call(mode, Path(args.warmup), device, dtype)
        sync(torch, device)
        result["warmup_s"] = time.perf_counter() - t0
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    base = proc_status()["VmRSS"]
    hwm_reset = reset_hwm()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    import quantforge
    import quantforge.torch  # noqa: F401
    import quantforge.transformers  # noqa: F401
    import transformers

    result.update(import_s=time.perf_counter() - t0, hwm_reset=hwm_reset, stages={})
    result["versions"] = {"quantforge": quantforge.__version__,
                          "transformers": transformers.__version__, "torch": torch.__version__}
    timed_stages(result["stages"])
    path = Path(args.model)
    sync(torch, device)
    free0 = torch.cuda.mem_get_info(device)[0] if device.startswith("cuda") else 0
    t0 = time.perf_counter()
    model, state, report = call(mode, path, device, dtype)
    sync(torch, device)
    result["seconds"] = time.perf_counter() - t0
    status = proc_status()
    result["peak_host_bytes"] = status["VmHWM"] - base
    result["rss_after_bytes"] = status["VmRSS"] - base
    if device.startswith("cuda"):
        result["peak_device_bytes"] = torch.cuda.max_memory_allocated(device)
        # The driver's count, which also sees quantforge's own allocations (PyTorch's peak
        # does not) and what PyTorch's cache keeps reserved.
        result["device_grown_bytes"] = free0 - torch.cuda.mem_get_info(device)[0]
    if model is not None:
        params = list(model.parameters())
        result["bytes"] = tensors_bytes(params)
        result["param_dtypes"] = sorted({str(p.dtype) for p in params})
        with torch.no_grad():
            tokens = [[t % model.config.vocab_size for t in TOKENS[0]]]
            logits = model(torch.tensor(tokens, device=device)).logits.float().cpu()
        torch.save(logits, Path(args.workdir) / f"logits-{mode}.pt")
    else:
        result["bytes"] = tensors_bytes(state.values())
        result["tensors"] = len(state)
    if mode.startswith("tp:"):
        result.update(tp_bound(path, report))
    return result


def tp_bound(path: Path, report) -> dict:
    """What rank ``report.rank`` read against the most it should: per tensor, a replicated one
    whole; K or V replicated over groups of ranks (world > KV heads) 1/n_kv plus two blocks per
    row; any other split one 1/world plus two blocks per row."""
    from quantforge import _native, safe_open

    bound = 0.0
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        arch = meta.get("general.architecture", "llama")
        n_kv = int(meta.get(f"{arch}.attention.head_count_kv") or meta.get(f"{arch}.attention.head_count") or 1)
        for name, (style, _) in report.per_tensor.items():
            src = report.source[name]
            shape = f.get_tensor_shape(src)
            rows = shape[0] if len(shape) > 1 else 1
            whole = f.get_slice(src).bytes_read((0, rows), (0, shape[-1]))
            block = _native.ggml_type_info(f.get_tensor_type(src))[3]
            if style == "replicate":
                bound += whole
            else:
                kv = src.endswith(("attn_k.weight", "attn_v.weight")) and report.world > n_kv
                bound += whole / (n_kv if kv else report.world) + 2 * block * rows
    return {
        "bytes_read": report.bytes_read,
        "tensor_bytes": report.tensor_bytes,
        "bound_bytes": int(bound),
        "within_bound": report.bytes_read <= bound,
    }


# ---- the parent: model, runs, summary ----------------------------------------------------------


def find_cli(given: str | None) -> str:
    for c in [given, ".device/quantforge", "target/release/quantforge", shutil.which("quantforge")]:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    sys.exit("no quantforge binary: pass --cli PATH or --model FILE")


def prepare_model(args) -> Path:
    """The model file: --model, or a synth file in --workdir (written once, then reused)."""
    if args.model:
        return Path(args.model).resolve()
    out = Path(args.workdir) / f"llama-{args.params}-{args.mix}" / "model.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cli = find_cli(args.cli)
        cmd = [cli, "synth", "--params", args.params, "--mix", args.mix, "-o", str(out), "--quiet"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return out.resolve()


def prepare_warmup(args) -> str | None:
    """The tiny model the children load first (unless --cold): --warmup-model, else a synth
    test-tiny file in --workdir, written once."""
    if args.cold:
        return None
    if args.warmup_model:
        return str(Path(args.warmup_model).resolve())
    out = Path(args.workdir) / "llama-test-tiny" / "model.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [find_cli(args.cli), "synth", "--params", "test-tiny", "--mix", args.mix, "-o", str(out), "--quiet"]
        subprocess.run(cmd, check=True)
    return str(out.resolve())


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def run_child(mode: str, args, timeout: float) -> dict:
    """``mode`` in a fresh process of this script; its result, or an error."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--model", args.model,
           "--device", args.device, "--dtype", args.dtype, "--workdir", args.workdir]
    cmd += ["--warmup", args.warmup] if args.warmup else []
    log = Path(args.workdir) / f"log-{mode.replace(':', '-')}.txt"
    t0 = time.perf_counter()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        log.write_text(out.decode(errors="replace") if isinstance(out, bytes) else out)
        return {"mode": mode, "error": f"timed out after {timeout:.0f} s"}
    log.write_text(run.stdout + run.stderr)
    lines = [line for line in run.stdout.splitlines() if line.startswith(MARK)]
    if run.returncode != 0 or not lines:
        last = (run.stdout + run.stderr).strip().splitlines()[-1:] or [""]
        return {"mode": mode, "error": f"exit {run.returncode}: {last[0]} (log: {log})"}
    result = json.loads(lines[-1][len(MARK):])
    result["process_s"] = time.perf_counter() - t0
    return result


def logits_equal(workdir: str) -> object:
    """Whether qf's and hf's logits are equal bit for bit (None without both)."""
    a, b = Path(workdir) / "logits-qf.pt", Path(workdir) / "logits-hf.pt"
    if not (a.exists() and b.exists()):
        return None
    import torch

    x, y = torch.load(a), torch.load(b)
    return bool(torch.equal(x.view(torch.int32), y.view(torch.int32)))


def size(n) -> str:
    """Bytes as MiB below a GiB, else GiB."""
    if n is None:
        return ""
    return f"{n / 2**20:.1f} MiB" if abs(n) < 2**30 else f"{n / 2**30:.2f} GiB"


def table(results: list) -> str:
    head = ("| run | seconds | metadata s (parse, config, model) | peak host | peak device (torch) | device grown "
            "| tensors | bytes read / bound | note |")
    rows = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['mode']} | | | | | | | | {r['error'][:200]} |")
            continue
        read = ""
        if "bytes_read" in r:
            read = f"{size(r['bytes_read'])} / {size(r['bound_bytes'])} ({'ok' if r['within_bound'] else 'OVER'})"
        note = "" if r.get("hwm_reset", True) else "VmHWM not reset"
        st = r.get("stages") or {}
        meta = ", ".join(f"{st[k]:.2f}" for k in ("parse", "config", "processor") if k in st)
        rows.append(
            f"| {r['mode']} | {r['seconds']:.2f} | {meta} | {size(r['peak_host_bytes'])} | {size(r.get('peak_device_bytes'))} "
            f"| {size(r.get('device_grown_bytes'))} | {size(r['bytes'])} | {read} | {note} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a GGUF file (default: a synth file in --workdir)")
    p.add_argument("--params", default="7b", help="synth preset (default 7b; test-tiny for a check)")
    p.add_argument("--mix", default="q4_k_m", help="synth mix (default q4_k_m)")
    p.add_argument("--cli", help="the quantforge binary for synth (default .device/quantforge, target/release)")
    p.add_argument("--workdir", default="/tmp/qf-bench-hf", help="synth files, logs, logits")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--skip-hf", action="store_true", help="do not run transformers' own load")
    p.add_argument("--hf-timeout", type=float, default=1800, help="seconds before the hf run is killed")
    p.add_argument("--timeout", type=float, default=900, help="seconds before any other run is killed")
    p.add_argument("--tp", type=int, default=4, help="ranks of the tensor-parallel runs (0: none)")
    p.add_argument("--runs", help="comma-separated subset of qf,hf,qf-state,qf-file,tp (default: all), to split "
                   "the runs over several commands (the model is kept in --workdir)")
    p.add_argument("--cold", action="store_true", help="no warm-up load of a tiny model first: the "
                   "measured call also imports what transformers imports lazily on a first load")
    p.add_argument("--warmup-model", help="the tiny model of the warm-up load (default: synth test-tiny)")
    p.add_argument("--warmup", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the JSON summary here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(MARK + json.dumps(run_one(args.child, args)), flush=True)
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    model = prepare_model(args)
    args.model = str(model)
    args.warmup = prepare_warmup(args)
    warm_page_cache(model)
    wanted = set(args.runs.split(",")) if args.runs else {"qf", "hf", "qf-state", "qf-file", "tp"}
    modes = [m for m in ("qf", "hf", "qf-state", "qf-file") if m in wanted and not (m == "hf" and args.skip_hf)]
    modes += [f"tp:{r}:{args.tp}" for r in range(args.tp)] if "tp" in wanted else []
    for mode in modes:  # logits of an earlier run of qf or hf are kept for the comparison
        Path(args.workdir, f"logits-{mode}.pt").unlink(missing_ok=True)
    results = []
    for mode in modes:
        r = run_child(mode, args, args.hf_timeout if mode == "hf" else args.timeout)
        results.append(r)
        print(f"{mode}: " + (r["error"] if "error" in r else f"{r['seconds']:.2f} s, peak host {size(r['peak_host_bytes'])}"), flush=True)
    import torch

    summary = {
        "model": args.model,
        "model_bytes": model.stat().st_size,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "warmup_model": args.warmup,
        "versions": next((r["versions"] for r in results if "versions" in r), None),
        "logits_equal": logits_equal(args.workdir),
        "runs": results,
    }
    whole = next((r for r in results if r["mode"] == "qf-state" and "seconds" in r), None)
    ranks = [r for r in results if r["mode"].startswith("tp:") and "seconds" in r]
    if whole and ranks:
        summary["tp_slowest_rank_over_whole"] = max(r["seconds"] for r in ranks) / whole["seconds"]
        summary["tp_all_within_bound"] = all(r["within_bound"] for r in ranks)
    text = json.dumps(summary, indent=2)
    print(text)
    print(table(results))
    if args.json:
        Path(args.json).write_text(text + "\n")
    # transformers' own load running past --hf-timeout is a result, not a failure.
    if any("error" in r and not (r["mode"] == "hf" and "timed out" in r["error"]) for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
