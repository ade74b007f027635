"""The seed's training step: Sequential(Linear(1000, 100), ReLU(), Linear(100, 10)), MSELoss(sum), Adam.

Contenders: symgrad (nn + optim; the update is pending until the next step's program computes it),
torch eager (1 thread), and numpy by hand (the floor: the same GEMMs, the elementwise work and the Adam
update written out, no autograd, no framework).

Run: python benchmarks/adam_step.py
"""
from __future__ import annotations

import os

import numpy as np

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LR = 1e-4
BETAS, EPS = (0.9, 0.999), 1e-8


def data():
    """x, y and the four parameters (weights as nn.Linear stores them: out x in)."""
    rng = np.random.default_rng(0)
    bound1, bound2 = 1 / np.sqrt(D_IN), 1 / np.sqrt(H)
    return [rng.standard_normal((N, D_IN)).astype(np.float32), rng.standard_normal((N, D_OUT)).astype(np.float32),
            rng.uniform(-bound1, bound1, (H, D_IN)).astype(np.float32),
            rng.uniform(-bound1, bound1, H).astype(np.float32),
            rng.uniform(-bound2, bound2, (D_OUT, H)).astype(np.float32),
            rng.uniform(-bound2, bound2, D_OUT).astype(np.float32)]


def framework_step(torch, x, y, *weights):
    """The seed's loop body, the same code for `torch` = symgrad or torch."""
    model = torch.nn.Sequential(torch.nn.Linear(D_IN, H), torch.nn.ReLU(), torch.nn.Linear(H, D_OUT))
    model.load_state_dict(dict(zip(["0.weight", "0.bias", "2.weight", "2.bias"],
                                   (torch.tensor(w) for w in weights))))
    loss_fn = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.tensor(x), torch.tensor(y)

    def step():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step, lambda: [p.detach().numpy() for p in model.parameters()]


def symgrad_step(*arrays):
    import symgrad

    return framework_step(symgrad, *arrays)


def torch_step(*arrays):
    import torch

    return framework_step(torch, *arrays)


def numpy_step(x, y, w1, b1, w2, b2):
    params = [w1, b1, w2, b2]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    count = 0

    def step():
        nonlocal count
        h = x @ w1.T + b1
        h_relu = np.maximum(h, 0)
        y_pred = h_relu @ w2.T + b2
        diff = y_pred - y
        loss = np.square(diff).sum()
        grad_y = 2.0 * diff
        grad_w2 = grad_y.T @ h_relu
        grad_b2 = grad_y.sum(0)
        grad_h = grad_y @ w2
        grad_h[h <= 0] = 0
        grad_w1 = grad_h.T @ x
        grad_b1 = grad_h.sum(0)
        count += 1
        step_size = LR / (1 - BETAS[0] ** count)
        root_correction = (1 - BETAS[1] ** count) ** 0.5
        for p, g, m, v in zip(params, (grad_w1, grad_b1, grad_w2, grad_b2), moments, squares):
            m *= BETAS[0]
            m += (1 - BETAS[0]) * g
            v *= BETAS[1]
            v += (1 - BETAS[1]) * g * g
            p -= step_size * m / (np.sqrt(v) / root_correction + EPS)
        return loss

    return step, lambda: params


def gemm_floor(x, y, w1, b1, w2, b2):
    """Only the step's four matrix products, in numpy with nn.Linear's layouts (one OpenBLAS call each):
    the floor of any step that computes them."""
    h_relu = np.maximum(x @ w1.T + b1, 0)
    grad_y = 2.0 * (h_relu @ w2.T + b2 - y)

    def step():
        h_relu @ w2.T
        grad_y.T @ h_relu
        grad_h = grad_y @ w2
        x @ w1.T
        return grad_h.T @ x

    return step, ()


def main(argv=None) -> list[str]:
    from benchmarks.timing import floor_lines, interleaved_medians, report, step_benchmark

    args, contenders, baseline = step_benchmark(argv, __doc__, data, symgrad_step, numpy_step, torch_step)
    contenders["GEMMs alone (numpy)"] = gemm_floor(*data())[0]

    # correctness first: ten steps from the same weights agree with numpy
    (ours, our_params), (theirs, their_params) = symgrad_step(*data()), numpy_step(*data())
    for _ in range(10):
        ours()
        theirs()
    error = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(our_params(), their_params()))
    assert error < 1e-4, f"symgrad parameters differ from numpy after 10 Adam steps by {error:.2e}"

    medians = interleaved_medians(contenders, rounds=args.rounds, calls_per_round=5)
    extra = [*floor_lines(medians, contenders),
             f"max relative parameter difference vs numpy after 10 steps: {error:.1e}"]
    return report(f"Sequential + MSELoss + Adam step {N}x{D_IN}->{H}->{D_OUT}, 1 thread "
                  f"(median per step; pid {os.getpid()})", medians, baseline, extra)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from benchmarks.timing import run_as_script

    run_as_script(main)
