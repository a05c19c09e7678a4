"""Custom labels declared with --custom_label NAME=PARENT, and what to say of an unknown label."""

from __future__ import annotations

from collections.abc import Mapping

from model.taxonomy import TaxonomyLabel, custom_label

__all__ = ["declare_custom_labels", "parse_custom_label", "unknown_label"]


def parse_custom_label(spec: str) -> tuple[str, str]:
    """``"NAME=PARENT"`` -> ``(NAME, PARENT)``; ``"NAME="`` declares a level-1 label."""
    name, equals, parent = spec.partition("=")
    if not equals:
        raise ValueError(
            f"--custom_label {spec!r} must be NAME=PARENT (NAME= for a custom level-1 label)"
        )
    return name.strip(), parent.strip()


def declare_custom_labels(
    custom_labels: Mapping[str, str | TaxonomyLabel],
) -> dict[str, TaxonomyLabel]:
    """``{name: parent}`` -> ``{name: TaxonomyLabel}``; ValueError names a bad declaration.

    A parent is a taxonomy label of level 1 or 2 (the custom label's level is the parent's plus
    one, at most 3), or "" for a custom level-1 label. A custom label is not a parent: the
    ground truth names a custom label with its ``ParentName``, and a manifest must say where
    each of its labels belongs without a label that no line names.
    """
    declared: dict[str, TaxonomyLabel] = {}
    for name, value in custom_labels.items():
        parent = value.parent if isinstance(value, TaxonomyLabel) else value
        try:
            declared[name] = custom_label(name, parent)
        except ValueError as exc:
            raise ValueError(f"--custom_label {name}={parent}: {exc}") from None
    return declared


def unknown_label(name: str) -> str:
    """What to do about ``name``, a label neither of the taxonomy nor declared."""
    return (
        f"unknown label {name!r}: use a name of the moderation taxonomy (model/taxonomy.py) or "
        f'declare a custom label with --custom_label "{name}=PARENT" (PARENT a taxonomy label, '
        f'or empty for a custom level-1 label: --custom_label "{name}=")'
    )
