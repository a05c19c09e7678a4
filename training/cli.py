"""What the training commands share on their command lines: --format, argparse's exit, output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["add_components_argument", "add_format_argument", "exit_status", "print_report"]


def add_components_argument(parser: argparse.ArgumentParser) -> None:
    """``--components``, as the pipeline's."""
    from model.moderation_model import COMPONENT_CHOICES

    parser.add_argument(
        "--components",
        choices=COMPONENT_CHOICES,
        default="auto",
        help="Model components to run (as the pipeline's --components). Default: auto.",
    )


def add_format_argument(parser: argparse.ArgumentParser, text: str) -> None:
    """``--format text|json``; ``text`` says what the text report looks like."""
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help=f"text: {text}; json: one JSON document. Default: text.",
    )


def exit_status(exit_: SystemExit) -> int:
    """The exit status of argparse's exit: 0 for ``--help``, 2 for a bad flag."""
    return exit_.code if isinstance(exit_.code, int) else 2


def print_report(
    report: Mapping[str, Any],
    output_format: str,
    format_text: Callable[[Mapping[str, Any]], str],
    *,
    ensure_ascii: bool = True,
) -> None:
    """``report`` on standard output, as ``--format`` asks: indented JSON or ``format_text``."""
    if output_format == "json":
        print(json.dumps(report, indent=2, ensure_ascii=ensure_ascii))
    else:
        print(format_text(report), end="")
