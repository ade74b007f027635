"""Timing helpers shared by the benchmarks: interleaved rounds, medians, ratios.

This machine is shared and noisy, so contenders are timed in interleaved rounds (A, B, C, A, B, C, ...)
and compared by the median of their per-call times; a single absolute time means little here.
"""
from __future__ import annotations

import statistics
import time


def interleaved_medians(contenders: dict, rounds: int = 15, calls_per_round: int = 3, warmup: int = 2) -> dict:
    """{name: median seconds per call} for zero-argument callables timed in interleaved rounds."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(calls_per_round):
                fn()
            samples[name].append((time.perf_counter() - start) / calls_per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def step_benchmark(argv, doc, data, symgrad_step, numpy_step, torch_step):
    """Command-line options (--rounds) and the one-thread contenders of a training-step benchmark: the
    step of symgrad (the eager loop, and the same step under `symgrad.compile`), numpy by hand and,
    when installed, torch eager, each from `data()`; returns (options, {name: step}, the name to
    compare against: torch when present, else numpy)."""
    import argparse

    import codegen
    import symgrad

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    codegen.set_num_threads(1)  # our kernels and OpenBLAS alike
    contenders = {"symgrad": symgrad_step(*data())[0], "symgrad.compile": symgrad.compile(symgrad_step(*data())[0]),
                  "numpy (by hand)": numpy_step(*data())[0]}
    try:
        import torch
    except ImportError:
        return args, contenders, "numpy (by hand)"
    torch.set_num_threads(1)
    contenders["torch eager (1 thread)"] = torch_step(*data())[0]
    return args, contenders, "torch eager (1 thread)"


def floor_lines(medians: dict, contenders: dict) -> list[str]:
    """The step benchmarks' closing lines: symgrad (eager and compiled) against the numpy floor, and
    what `symgrad.compile` made of the step."""
    floor = medians["numpy (by hand)"]
    lines = [f"{name} / numpy floor: {medians[name] / floor:.2f}x" for name in ("symgrad", "symgrad.compile")
             if name in medians]
    compiled = contenders.get("symgrad.compile")
    if compiled is not None:
        lines.append(f"symgrad.compile: {compiled.explain()}")
    return lines


class Table(list):
    """The printed lines of one benchmark, with the medians behind them (for the summary and chart)."""

    def __init__(self, lines, title="", medians=None, baseline=""):
        super().__init__(lines)
        self.title, self.medians, self.baseline = title, dict(medians or {}), baseline


def report(title: str, medians: dict, baseline: str, lines: list[str] | None = None) -> Table:
    """Lines with each median and its ratio to `baseline` (printed and returned)."""
    out = [title]
    base = medians.get(baseline)
    for name, seconds in medians.items():
        ratio = f"{seconds / base:6.3f}x {baseline}" if base else ""
        out.append(f"  {name:<28s} {seconds * 1e3:9.3f} ms   {ratio}")
    for line in lines or []:
        out.append("  " + line)
    print("\n".join(out), flush=True)
    return Table(out, title, medians, baseline)


def summary(tables) -> list[str]:
    """One row per timed workload (and one more where it was also timed under `symgrad.compile`):
    symgrad's median and its ratios to torch eager and to numpy."""
    rows = ["| workload | symgrad | / torch eager | / numpy by hand |", "|---|---|---|---|"]
    for table in tables:
        medians = getattr(table, "medians", {})
        workload = table.title.split(',')[0].split(' (')[0] if medians else ""
        for contender, label in (("symgrad", workload), ("symgrad.compile", f"{workload}, symgrad.compile")):
            if contender not in medians:
                continue
            ours = medians[contender]
            others = {name: value for name, value in medians.items() if value and not name.startswith("symgrad")}
            torch_ratio = next((f"{ours / v:.2f}x" for name, v in others.items() if name.startswith("torch")), "-")
            numpy_ratio = next((f"{ours / v:.2f}x" for name, v in others.items() if name.startswith("numpy")), "-")
            rows.append(f"| {label} | {ours * 1e3:.3f} ms | {torch_ratio} | {numpy_ratio} |")
    return rows


def run_as_script(main) -> None:
    """Let `python benchmarks/x.py` import the `benchmarks` package from the repository root."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()


def copy_bandwidth(nbytes: int = 200_000_000) -> float:
    """Measured memory bandwidth of a plain copy, bytes per second (read + write counted)."""
    import numpy as np

    src = np.ones(nbytes // 8, np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * src.nbytes / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
