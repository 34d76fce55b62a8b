"""Throughput benchmarks of the training paths (``python -m benchmarks.throughput``)."""
