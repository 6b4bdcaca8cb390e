"""Benchmarks: `python -m benchmarks.run NAME|all`; each is benchmarks/bench_<name>.py with run() -> dict."""
