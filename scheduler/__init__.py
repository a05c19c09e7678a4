"""Scheduled batch runs: one job per new manifest version."""
