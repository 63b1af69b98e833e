"""Benchmarks: a seeded fleet generator, baselines, and scaling runs (``python -m bench.run``)."""
