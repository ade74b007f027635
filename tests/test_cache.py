"""The disk cache of compiled object code (codegen/cache.py): later processes load what earlier ones
compiled, and a damaged entry is compiled again, never loaded."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from codegen import cache

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A small training step: its programs are compiled (or loaded) in a fresh process, which prints what it
# computed and how many programs came from disk.
STEP = """
import json, symgrad, codegen.jit as jit
symgrad.manual_seed(0)
x, w = symgrad.randn(8, 5), symgrad.randn(5, 3, requires_grad=True)
for _ in range(3):
    loss = (x.mm(w).clamp(min=0) - 1.0).pow(2).sum()
    loss.backward()
    with symgrad.no_grad():
        w -= 0.01 * w.grad
    w.grad = None
print(json.dumps({"w": w.detach().numpy().tolist(), "made": jit.compile_count(), "loaded": jit.disk_load_count()}))
"""


def run_step(cache_dir, **env):
    environment = {**os.environ, "SYMGRAD_CACHE_DIR": str(cache_dir), **env,
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", STEP], capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def entries(cache_dir):
    return sorted(pathlib.Path(cache_dir).glob("*/*.o"))


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    first = run_step(tmp_path)
    assert first["loaded"] == 0 and first["made"] > 0
    assert len(entries(tmp_path)) == first["made"]
    second = run_step(tmp_path)
    assert second["loaded"] == second["made"] == first["made"]
    assert second["w"] == first["w"]


def test_a_corrupt_entry_is_compiled_again_and_replaced(tmp_path):
    first = run_step(tmp_path)
    damaged = entries(tmp_path)[0]
    good = damaged.read_bytes()
    damaged.write_bytes(good[:len(good) // 2])  # truncated, as by a crash mid-write
    second = run_step(tmp_path)
    assert second["loaded"] == first["made"] - 1
    assert second["w"] == first["w"]
    assert damaged.read_bytes() == good  # rewritten whole


def test_flipped_bits_fail_the_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    key = cache.entry_key("ir", "cpu", "+f", "O3")
    cache.store(key, b"\x7fELF machine code")
    path = entries(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert cache.load(key) is None


def test_cache_off_writes_nothing(tmp_path):
    result = run_step(tmp_path, SYMGRAD_CACHE="0")
    assert result["loaded"] == 0 and not entries(tmp_path)


def test_concurrent_processes_share_a_cache_safely(tmp_path, monkeypatch):
    environment = {**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path),
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen([sys.executable, "-c", STEP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=environment) for _ in range(3)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["w"] == results[0]["w"] for r in results)
    assert not list(pathlib.Path(tmp_path).glob("*/.partial-*")), "a temporary file was left behind"
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    assert entries(tmp_path) and all(cache.load(path.stem) is not None for path in entries(tmp_path))


@pytest.mark.parametrize("change", ["ir", "cpu", "features", "flags"])
def test_everything_that_changes_code_changes_the_key(change):
    parts = {"ir_text": "ir", "cpu": "cascadelake", "features": "+avx512f", "flags": "O3"}
    base = cache.entry_key(**parts)
    parts[{"ir": "ir_text"}.get(change, change)] += "x"
    assert cache.entry_key(**parts) != base
