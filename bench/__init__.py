"""Benchmarks: one script per figure, each a ratio against a baseline run side by side."""
