"""Benchmarks for keras-vae: figures, never assertions.

Run everything with `python -m benchmarks.run_all` (add `--quick` for a smoke run). Each module
(`throughput`, `latency`, `quality`, `memory`) also runs on its own with `python -m
benchmarks.<module>`. Results go to `benchmarks/results/`.
"""

import os

# Set before any module of the package imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
