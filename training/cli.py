"""What the training commands share on their command lines: --format, argparse's exit, output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "add_components_argument",
    "add_format_argument",
    "exit_status",
    "print_report",
    "run_training_command",
]


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


def run_training_command(
    parser: argparse.ArgumentParser,
    argv: Iterable[str] | None,
    request_of: Callable[[argparse.Namespace], Any],
    train: Callable[[Any], dict[str, Any]],
) -> int:
    """What ``python -m training.train_adapter`` and ``training.train_custom_labels`` do: parse
    the flags and build the request (a bad one exits 2, saying why), train, and print the result
    JSON (also to ``--result_file``). A training that cannot go on is a result too,
    ``TRAINING_FAILED`` with what to fix (and the data results a ``TrainingProblem`` carries);
    the exit status is 0 whenever a result was written."""
    from pipeline.logs import configure_logging
    from training.examples import TrainingProblem

    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        request = request_of(args)
    except SystemExit as exit_:
        return exit_status(exit_)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        result = train(request)
    except TrainingProblem as exc:
        result = {
            "Status": "TRAINING_FAILED",
            "StatusMessage": str(exc),
            **getattr(exc, "data_results", {}),
        }
    except ValueError as exc:  # the model could not load, e.g. a bad --backbone
        result = {"Status": "TRAINING_FAILED", "StatusMessage": str(exc)}
    if result["Status"] == "TRAINING_FAILED":
        logging.getLogger(parser.prog).warning("Training failed: %s", result["StatusMessage"])
    document = json.dumps(result, indent=2)
    if args.result_file:
        with open(args.result_file, "w", encoding="utf-8") as stream:
            stream.write(document)
    print(document)
    return 0
