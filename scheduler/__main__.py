"""``python -m scheduler``: the command line's entry point."""

from __future__ import annotations

import sys

from scheduler.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
