"""Run every benchmark: `python -m benchmarks` (or `python benchmarks/run.py`)."""
from benchmarks.run import main

main()
