"""Run every benchmark script in turn and print their tables.

Run: python -m benchmarks   or   python benchmarks/run.py
"""
from __future__ import annotations

import os
import sys


def main(argv=None) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from benchmarks import elementwise, mlp_step

    for module in (elementwise, mlp_step):
        module.main([])
        print()


if __name__ == "__main__":
    main()
