"""Side-by-side benchmarks against peer libraries (never run as timed tests)."""
