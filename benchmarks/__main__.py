"""Run every benchmark: `python -m benchmarks [--markdown docs/benchmarks.md]`."""
import sys

from benchmarks.run import main

main(sys.argv[1:])
