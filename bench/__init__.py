"""Benchmarks of the bulk moderation pipeline (scripts, not tests)."""
