"""Benchmarks: ``python -m benchmarks.<name> --json PATH``; each writes its numbers as JSON."""
