"""Seed 4's linear-regression epoch (120 points, y = 2x + 3): a tiny step where per-op overhead is all.

Contenders: symgrad (eager loop, replayed after its first steps), numpy written by hand (the floor),
torch eager (1 thread).

Run: python benchmarks/linreg_epoch.py
"""
from __future__ import annotations

import numpy as np

LR = 0.1


def data():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((120, 1)).astype(np.float32)
    return x, rng.standard_normal(1).astype(np.float32), rng.standard_normal(1).astype(np.float32)


def framework_step(torch, x, b, w):
    """Seed 4's epoch, the same code for `torch` = symgrad or torch."""
    x = torch.tensor(x)
    y = 2 * x + 3
    b, w = torch.tensor(b, requires_grad=True), torch.tensor(w, requires_grad=True)

    def step():
        nonlocal b, w
        loss = ((y - (b + w * x)) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            b -= LR * b.grad
            w -= LR * w.grad
        b.grad.zero_()
        w.grad.zero_()
        return loss

    return step, (b, w)


def symgrad_step(x, b, w):
    import symgrad

    return framework_step(symgrad, x, b, w)


def torch_step(x, b, w):
    import torch

    return framework_step(torch, x, b, w)


def numpy_step(x, b, w):
    y = 2 * x + 3

    def step():
        residual = y - (b + w * x)
        loss = np.mean(residual ** 2)
        grad = -2 * residual / residual.size
        b[...] -= LR * grad.sum()
        w[...] -= LR * (grad * x).sum()
        return loss

    return step, (b, w)


def main(argv=None) -> list[str]:
    from benchmarks.timing import floor_lines, interleaved_medians, report, step_benchmark

    args, contenders, baseline = step_benchmark(argv, __doc__, data, symgrad_step, numpy_step, torch_step)
    ours, theirs = symgrad_step(*data()), numpy_step(*data())
    for _ in range(20):
        ours[0]()
        theirs[0]()
    error = max(abs(float(a.item()) - float(t[0])) for a, t in zip(ours[1], theirs[1]))
    assert error < 1e-4, f"symgrad parameters differ from numpy after 20 epochs by {error:.2e}"
    medians = interleaved_medians(contenders, rounds=args.rounds, calls_per_round=50)
    extra = [*floor_lines(medians, contenders),
             f"max parameter difference vs numpy after 20 epochs: {error:.1e}"]
    return report("linear-regression epoch, 120 points, 1 thread (median per epoch)", medians, baseline, extra)


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from benchmarks.timing import run_as_script

    run_as_script(main)
