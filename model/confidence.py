"""The confidence (0-100) under which labels are not returned: its default, flag and check."""

from __future__ import annotations

__all__ = ["DEFAULT_MIN_CONFIDENCE", "add_confidence_argument", "check_confidence"]

# Rekognition's default MinConfidence, also the threshold at which a label counts as predicted.
DEFAULT_MIN_CONFIDENCE = 50.0


def add_confidence_argument(
    parser,
    flag: str = "--min_confidence",
    help: str = "Only labels with at least this confidence (0-100) are returned.",
) -> None:
    """Adds ``flag`` (a float defaulting to ``DEFAULT_MIN_CONFIDENCE``) to an argparse parser."""
    parser.add_argument(
        flag,
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help=f"{help} Default: {DEFAULT_MIN_CONFIDENCE:g}.",
    )


def check_confidence(value: float, flag: str = "--min_confidence") -> None:
    """Raises ValueError naming ``flag`` unless ``value`` is between 0 and 100 (NaN is not)."""
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{flag} must be between 0 and 100, not {value}")
