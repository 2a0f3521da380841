"""Benchmarks: each prints a comparison measured in the same run (see bench/README.md)."""
