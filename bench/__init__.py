"""Benchmarks against peers: run with `make bench`, never part of the tests."""
