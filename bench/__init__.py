"""Benchmarks: tools beside the product (not part of the pipeline), each a command that prints
numbers side by side with its baseline.

- extraction.py: our extraction into raw against a bare COPY pipe and a pandas script;
- incremental.py: the same one-day increment on 1x and 10x the history, per step.
"""
