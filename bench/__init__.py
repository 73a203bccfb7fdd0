"""Benchmarks for `make bench`; results land in bench/results.json and bench/README.md."""
