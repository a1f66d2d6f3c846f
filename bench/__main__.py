"""`python -m bench`: run the benchmark suite (filled in by the performance work)."""

print("no benchmarks yet")
