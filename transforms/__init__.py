"""Composite transforms and DoFns of the bulk moderation pipeline."""
