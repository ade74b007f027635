"""Compile-and-run benchmarks: symgrad side by side with numpy's hand-written floor and torch eager."""
