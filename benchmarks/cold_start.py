"""Cold start: the first training step of the seed's two-layer network in a fresh process, compile included,
with an empty disk cache and with a warm one (the programs the first process compiled).

Run: python benchmarks/cold_start.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

FIRST_STEP = """
import time
start = time.perf_counter()
import symgrad
imported = time.perf_counter()
N, D_in, H, D_out = 64, 1000, 100, 10
x, y = symgrad.randn(N, D_in), symgrad.randn(N, D_out)
w1 = symgrad.randn(D_in, H, requires_grad=True)
w2 = symgrad.randn(H, D_out, requires_grad=True)
begin = time.perf_counter()
loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
loss.backward()
with symgrad.no_grad():
    w1 -= 1e-6 * w1.grad
    w2 -= 1e-6 * w2.grad
    w1.grad.zero_()
    w2.grad.zero_()
loss.item()
w1.sum().item()
done = time.perf_counter()
import json, codegen.jit as jit
print(json.dumps({"import": imported - start, "first_step": done - begin, "loaded": jit.disk_load_count(),
                  "made": jit.compile_count()}))
"""


def first_step(cache_dir: str) -> dict:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env = {**os.environ, "SYMGRAD_CACHE_DIR": cache_dir,
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", FIRST_STEP], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[str]:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    empty, warm = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache_dir:
            empty.append(first_step(cache_dir))
            warm.append(first_step(cache_dir))
    lines = ["cold start: first two-layer network step in a fresh process, compile included "
             f"(median of {args.rounds} processes each)"]
    for label, runs, target in (("empty cache", empty, 0.2), ("warm cache", warm, 0.05)):
        step = statistics.median(r["first_step"] for r in runs)
        imported = statistics.median(r["import"] for r in runs)
        lines.append(f"  {label:<12s} first step {step * 1e3:8.1f} ms (target {target * 1e3:.0f} ms)   "
                     f"import symgrad {imported * 1e3:6.1f} ms   programs {runs[0]['made']}, "
                     f"loaded from disk {runs[0]['loaded']}")
    print("\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    main()
