"""The hand-written two-layer network's training step (64x1000 -> 100 -> 10), forward + backward + SGD.

Contenders: symgrad (the whole step is one cached native program calling OpenBLAS), numpy written by
hand (the floor: the same four GEMMs and the elementwise work, no autograd), torch eager (1 thread).

Run: python benchmarks/mlp_step.py
"""
from __future__ import annotations

import os

import numpy as np

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LR = 1e-6


def data():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in ((N, D_IN), (N, D_OUT), (D_IN, H), (H, D_OUT))]


def framework_step(torch, x, y, w1, w2):
    """The seed's training step, the same code for `torch` = symgrad or torch."""
    x, y = torch.tensor(x), torch.tensor(y)
    w1, w2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)

    def step():
        nonlocal w1, w2
        loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            w1 -= LR * w1.grad
            w2 -= LR * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
        return loss

    return step, (w1, w2)


def symgrad_step(x, y, w1, w2):
    import symgrad

    return framework_step(symgrad, x, y, w1, w2)


def numpy_step(x, y, w1, w2):
    def step():
        nonlocal w1, w2
        h = x @ w1
        h_relu = np.maximum(h, 0)
        y_pred = h_relu @ w2
        loss = np.square(y_pred - y).sum()
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T @ grad_y_pred
        grad_h = grad_y_pred @ w2.T
        grad_h[h < 0] = 0
        grad_w1 = x.T @ grad_h
        w1 -= LR * grad_w1
        w2 -= LR * grad_w2
        return loss

    return step, (w1, w2)


def gemm_floor(x, y, w1, w2):
    """Only the step's four matrix products, in numpy (one OpenBLAS call each): no step that computes
    them can be faster, so this is the floor the step's targets are measured against."""
    h_relu = np.maximum(x @ w1, 0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)

    def step():
        h_relu @ w2
        h_relu.T @ grad_y_pred
        grad_h = grad_y_pred @ w2.T
        x @ w1
        return x.T @ grad_h

    return step, ()


def torch_step(x, y, w1, w2):
    import torch

    return framework_step(torch, x, y, w1, w2)


def main(argv=None) -> list[str]:
    from benchmarks.timing import floor_lines, interleaved_medians, report, step_benchmark

    args, contenders, baseline = step_benchmark(argv, __doc__, data, symgrad_step, numpy_step, torch_step)
    contenders["GEMMs alone (numpy)"] = gemm_floor(*data())[0]

    # correctness first: ten steps from the same weights agree with numpy
    ours, theirs = symgrad_step(*data()), numpy_step(*data())
    for _ in range(10):
        ours[0]()
        theirs[0]()
    error = max(np.abs(a.detach().numpy() - b).max() / np.abs(b).max() for a, b in zip(ours[1], theirs[1]))
    assert error < 1e-4, f"symgrad weights differ from numpy after 10 steps by {error:.2e}"

    medians = interleaved_medians(contenders, rounds=args.rounds, calls_per_round=5)
    extra = [*floor_lines(medians, contenders),
             f"max relative weight difference vs numpy after 10 steps: {error:.1e}"]
    return report(f"two-layer network step {N}x{D_IN}->{H}->{D_OUT}, 1 thread (median per step; pid {os.getpid()})",
                  medians, baseline, extra)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from benchmarks.timing import run_as_script

    run_as_script(main)
