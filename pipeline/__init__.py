"""The bulk moderation pipeline: options, graph construction and the ``run`` entry point."""
