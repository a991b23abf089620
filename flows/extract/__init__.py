"""Extraction from the bank's systems into raw: one module per kind of source."""
