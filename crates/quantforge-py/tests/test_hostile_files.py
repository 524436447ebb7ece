"""Hostile files through the Python API: every file of the fuzz corpora (``fuzz/corpus/*``: the
GGUF reader's, the round trip's and the dequantizer's inputs, and any crash reproducer in
``fuzz/artifacts/*``) goes through ``safe_open``, ``keys``, ``metadata``, ``get_tensor``,
``get_native`` and ``quantforge.numpy.load_file`` on the CPU.

Each file is read in a worker process, so that a crash of the interpreter (a signal, an abort,
a Rust panic escaping as an exception other than ``QuantforgeError``) or a hang past 10 s is
seen and named rather than taking pytest with it. Every verdict must be either a
``QuantforgeError`` whose message names the file, or values; ``get_tensor`` and ``load_file``
agree. Where the ``quantforge`` CLI is found (``QUANTFORGE_CLI``, else the workspace's
``target/{release,debug}/quantforge``), every verdict is the CLI's: ``inspect`` refuses a file
with the same message as ``safe_open``, and ``dequant --device cpu`` fails with
``load_file``'s message or writes the same values, bit for bit."""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
FUZZ = REPO / "fuzz"
#: A file may take this long in all, every entry point included.
PER_FILE_S = 10.0

WORKER = r"""
import hashlib, json, sys
import numpy as np
import quantforge.numpy
from quantforge import QuantforgeError, safe_open

def digest(a):
    a = np.ascontiguousarray(a)
    return f"{hashlib.sha256(a.tobytes()).hexdigest()} {a.dtype} {a.shape}"

def attempt(fn):
    try:
        return fn()
    except QuantforgeError as e:
        return {"error": str(e)}

def tensor(f, name):
    return {
        "values": attempt(lambda: digest(f.get_tensor(name))),
        "native": attempt(lambda: (lambda a, ty: [digest(a), ty])(*f.get_native(name))),
        "type": f.get_tensor_type(name),
    }

def verdict(path):
    try:
        f = safe_open(path, framework="numpy")
    except QuantforgeError as e:
        return {"file": path, "open": str(e)}
    with f:
        names = f.keys()
        out = {"file": path, "open": None, "keys": names, "metadata": sorted(f.metadata())}
        out["tensors"] = {n: tensor(f, n) for n in names}
    loaded = attempt(lambda: {n: digest(a) for n, a in quantforge.numpy.load_file(path).items()})
    out["load_file"] = loaded
    return out

for path in open(sys.argv[1]).read().splitlines():
    print("START", flush=True)
    print("DONE " + json.dumps(verdict(path)), flush=True)
"""


def corpus_files() -> List[Path]:
    files = []
    for kind in ("corpus", "artifacts"):
        for target in sorted((FUZZ / kind).glob("*")):
            files += sorted(p for p in target.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


def run_worker(files: List[Path], failures: List[str]) -> Dict[str, dict]:
    """Verdicts of `files`, one worker process at a time; a crash or a hang is recorded in
    `failures` naming the file, and a new worker takes the rest."""
    verdicts: Dict[str, dict] = {}
    todo = [str(p) for p in files]
    while todo:
        err = tempfile.TemporaryFile(mode="w+")
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
            listing.write("".join(p + "\n" for p in todo))
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, listing.name],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
        )
        current: Optional[str] = None
        deadline = None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([proc.stdout], [], [], wait)
            if not ready:  # no verdict within PER_FILE_S
                proc.kill()
                proc.wait()
                failures.append(f"{current}: no verdict within {PER_FILE_S} s (hang)")
                break
            line = proc.stdout.readline()
            if not line:  # the worker ended
                code = proc.wait()
                if current is not None:
                    err.seek(0)
                    why = err.read()[-2000:]
                    failures.append(f"{current}: the interpreter died (exit {code}): {why}")
                break
            if line.startswith("START"):
                current, deadline = todo[0], time.monotonic() + PER_FILE_S
            elif line.startswith("DONE "):
                v = json.loads(line[5:])
                assert v["file"] == current
                verdicts[current] = v
                todo.pop(0)
                current, deadline = None, None
        os.unlink(listing.name)
        if current is not None:
            todo.pop(0)  # the file that crashed or hung: recorded, go on with the rest
    return verdicts


@pytest.fixture(scope="module")
def verdicts() -> Dict[str, dict]:
    files = corpus_files()
    assert len(files) >= 1000, f"{len(files)} corpus files under {FUZZ}"
    failures: List[str] = []
    out = run_worker(files, failures)
    assert not failures, "\n".join(failures)
    assert len(out) == len(files)
    return out


def is_error(v) -> bool:
    return isinstance(v, dict) and set(v) == {"error"}


def test_every_hostile_file_gets_an_error_naming_it_or_values(verdicts) -> None:
    opened = refused = 0
    for path, v in verdicts.items():
        if v["open"] is not None:
            refused += 1
            assert path in v["open"], (path, v["open"])
            continue
        opened += 1
        first_error = None
        for name, t in v["tensors"].items():
            for what in ("values", "native"):
                if is_error(t[what]):
                    assert path in t[what]["error"], (path, name, what, t[what])
            if is_error(t["values"]) and first_error is None:
                first_error = t["values"]["error"]
            if not is_error(t["native"]):
                assert t["native"][1] == t["type"], (path, name)
        # load_file gives what get_tensor gives, or the first tensor's error.
        if first_error is None:
            want = {n: t["values"] for n, t in v["tensors"].items()}
            assert v["load_file"] == want, path
        else:
            assert is_error(v["load_file"]) and v["load_file"]["error"] == first_error, path
    print(f"{opened} hostile files opened, {refused} refused")
    assert opened > 100 and refused > 1000


def cli_binary() -> Optional[Path]:
    env = os.environ.get("QUANTFORGE_CLI")
    if env:
        return Path(env)
    found = [REPO / "target" / p / "quantforge" for p in ("release", "debug")]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def cli(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
    )


def cli_error(r: subprocess.CompletedProcess) -> str:
    first = r.stderr.splitlines()[0] if r.stderr else ""
    return first[len("error: "):] if first.startswith("error: ") else first


def cli_values(out: Path) -> Dict[str, str]:
    """Digests of the tensors the CLI's `dequant` wrote (F32, integer tensors as they were),
    in the worker's form."""
    import hashlib

    import numpy as np

    from quantforge import safe_open

    with safe_open(out, framework="numpy") as f:
        arrays = {n: np.ascontiguousarray(f.get_tensor(n)) for n in f.keys()}
    return {
        n: f"{hashlib.sha256(a.tobytes()).hexdigest()} {a.dtype} {a.shape}" for n, a in arrays.items()
    }


def test_every_hostile_file_gets_the_cli_verdict(verdicts, tmp_path: Path) -> None:
    binary = cli_binary()
    if binary is None:
        pytest.skip(
            "no quantforge CLI to compare with: set QUANTFORGE_CLI or build it "
            "(cargo build -p quantforge)"
        )

    def compare(item) -> Optional[str]:
        i, (path, v) = item
        r = cli(binary, "inspect", path)
        if v["open"] is not None:
            if r.returncode == 0 or cli_error(r) != v["open"]:
                return f"{path}: safe_open says {v['open']!r}, inspect {r.returncode} {cli_error(r)!r}"
            return None
        if r.returncode != 0:
            return f"{path}: safe_open opens it, inspect says {cli_error(r)!r}"
        out = tmp_path / f"{i}.gguf"
        r = cli(binary, "dequant", "--device", "cpu", "-o", str(out), path)
        if is_error(v["load_file"]):
            if r.returncode == 0 or cli_error(r) != v["load_file"]["error"]:
                return f"{path}: load_file says {v['load_file']['error']!r}, dequant {cli_error(r)!r}"
            return None
        if r.returncode != 0 or not out.is_file():
            return f"{path}: load_file loads it, dequant says {cli_error(r)!r}"
        got = cli_values(out)
        out.unlink()
        if got != v["load_file"]:
            return f"{path}: values differ from the CLI's: {got} != {v['load_file']}"
        return None

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        problems = [p for p in pool.map(compare, enumerate(sorted(verdicts.items()))) if p]
    assert not problems, f"{binary}:\n" + "\n".join(problems[:20])
