"""ResNet-18 forward + backward on a batch of 8 images of 3x64x64 (issue 7's benchmark).

Contenders: symgrad (convolutions as im2col + OpenBLAS GEMMs, batch norm and ReLU fused into the
kernels around them), torch eager with 1 and with 2 threads, and symgrad with 2 threads. Both models
hold the same weights; the loss is the seed's `(prediction - labels).sum()`, gradients are cleared
between steps. The first symgrad step (which compiles) is timed separately and its kernels counted.

Run: python benchmarks/resnet_step.py [--rounds 5]
"""
from __future__ import annotations

import os
import time

import numpy as np

BATCH, SIZE = 8, 64


def data():
    rng = np.random.default_rng(0)
    return rng.random((BATCH, 3, SIZE, SIZE), dtype=np.float32), rng.random((BATCH, 1000), dtype=np.float32)


def _train_step(model, x, labels, compile=None):
    """Forward + backward of `(model(x) - labels).sum()`, the same code for symgrad and torch; the step
    returns the loss as a float (reading it makes a lazy framework compute the step). `compile`: a
    function that compiles the step (symgrad.compile), which then returns its loss tensor."""

    def step():
        model.zero_grad()
        loss = (model(x) - labels).sum()
        loss.backward()
        return loss

    if compile is not None:
        step = compile(step)
    return (lambda: step().item()), model


def symgrad_step(x, labels, compiled=False):
    import symgrad

    symgrad.manual_seed(0)
    return _train_step(symgrad.models.resnet18(), symgrad.tensor(x), symgrad.tensor(labels),
                       compile=symgrad.compile if compiled else None)


def torch_step(x, labels, state):
    import torch

    from tests.test_resnet import ResNet

    model = ResNet()
    model.load_state_dict({k: torch.tensor(v.numpy().copy()) for k, v in state.items()})
    return _train_step(model, torch.tensor(x), torch.tensor(labels))


def main(argv=None) -> list[str]:
    import argparse

    import codegen

    from benchmarks.timing import interleaved_medians, report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    codegen.set_num_threads(1)  # our kernels and OpenBLAS alike (torch gets 1 thread too)
    ours, model = symgrad_step(*data())
    compiles = codegen.compile_count() if callable(getattr(codegen, "compile_count", None)) else None
    start = time.perf_counter()
    loss = ours()
    first = time.perf_counter() - start
    compiled = (codegen.compile_count() - compiles) if compiles is not None else None
    lines = [f"first symgrad step (compiles included): {first:.2f} s"
             + (f", {compiled} programs compiled" if compiled is not None else "")]
    # the same step under symgrad.compile: its first call runs eagerly, the next two trace
    compiled_step, _ = symgrad_step(*data(), compiled=True)
    start = time.perf_counter()
    for _ in range(3):
        compiled_step()
    lines.append(f"symgrad.compile: first three steps (eager, two traces) {time.perf_counter() - start:.2f} s")
    contenders = {"symgrad (1 thread)": ours, "symgrad.compile (1 thread)": compiled_step}
    baseline = "symgrad"
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        theirs, _ = torch_step(*data(), model.state_dict())
        torch_loss = theirs()
        lines.append(f"loss symgrad {loss:.6g}, torch {torch_loss:.6g}")
        assert abs(loss - torch_loss) <= 1e-3 * abs(torch_loss), (loss, torch_loss)
        torch.set_num_threads(1)
        contenders["torch eager (1 thread)"] = theirs
        baseline = "torch eager (1 thread)"
    medians = interleaved_medians(contenders, rounds=args.rounds, calls_per_round=1, warmup=1)
    if torch is not None:
        torch.set_num_threads(2)
        codegen.set_num_threads(2)
        two = interleaved_medians({"symgrad (2 threads)": ours, "symgrad.compile (2 threads)": compiled_step,
                                   "torch eager (2 threads)": theirs},
                                  rounds=args.rounds, calls_per_round=1, warmup=1)
        codegen.set_num_threads(1)
        torch.set_num_threads(1)
        medians.update(two)
        for name in ("symgrad", "symgrad.compile"):
            lines.append(f"2 threads: {name} / torch eager = "
                         f"{two[f'{name} (2 threads)'] / two['torch eager (2 threads)']:.2f}x")
    medians = {"symgrad": medians.pop("symgrad (1 thread)"), "symgrad.compile": medians.pop("symgrad.compile (1 thread)"),
               **medians}
    return report(f"ResNet-18 forward+backward, batch {BATCH}x3x{SIZE}x{SIZE} (median per step; pid {os.getpid()})",
                  medians, baseline, lines)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from benchmarks.timing import run_as_script

    run_as_script(main)
