"""Where data lives: S3 settings and flags, worker environments, output files written whole."""
