"""Offline tools that make and judge models: evaluation, verification, adapter and head training."""
