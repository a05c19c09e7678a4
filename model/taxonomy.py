"""The moderation label taxonomy (Rekognition model 7.0): names, levels and parents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "TaxonomyLabel",
    "TAXONOMY",
    "CONTENT_TYPES",
    "MAX_LEVEL",
    "label",
    "ancestors",
    "custom_label",
]

MAX_LEVEL = 3


class TaxonomyLabel(NamedTuple):
    name: str
    level: int
    parent: str  # "" for level 1, as the API spells it


# Level 1 -> {level 2 -> [level 3, ...]}. Exact spelling matters: clients match on names.
_TREE: dict[str, dict[str, list[str]]] = {
    "Explicit": {
        "Explicit Nudity": [
            "Exposed Male Genitalia",
            "Exposed Female Genitalia",
            "Exposed Buttocks or Anus",
            "Exposed Female Nipple",
        ],
        "Explicit Sexual Activity": [],
        "Sex Toys": [],
    },
    "Non-Explicit Nudity of Intimate parts and Kissing": {
        "Non-Explicit Nudity": [
            "Bare Back",
            "Exposed Male Nipple",
            "Partially Exposed Buttocks",
            "Partially Exposed Female Breast",
            "Implied Nudity",
        ],
        "Obstructed Intimate Parts": ["Obstructed Female Nipple", "Obstructed Male Genitalia"],
        "Kissing on the Lips": [],
    },
    "Swimwear or Underwear": {
        "Female Swimwear or Underwear": [],
        "Male Swimwear or Underwear": [],
    },
    "Violence": {
        "Weapons": [],
        "Graphic Violence": [
            "Weapon Violence",
            "Physical Violence",
            "Self-Harm",
            "Blood & Gore",
            "Explosions and Blasts",
        ],
    },
    "Visually Disturbing": {
        "Death and Emaciation": ["Emaciated Bodies", "Corpses"],
        "Crashes": ["Air Crash"],
    },
    "Drugs & Tobacco": {
        "Products": ["Pills"],
        "Drugs & Tobacco Paraphernalia & Use": ["Smoking"],
    },
    "Alcohol": {
        "Alcohol Use": ["Drinking"],
        "Alcoholic Beverages": [],
    },
    "Rude Gestures": {"Middle Finger": []},
    "Gambling": {},
    "Hate Symbols": {"Nazi Party": [], "White Supremacy": [], "Extremist": []},
}


def _flatten() -> dict[str, TaxonomyLabel]:
    labels: dict[str, TaxonomyLabel] = {}
    for l1, children in _TREE.items():
        labels[l1] = TaxonomyLabel(l1, 1, "")
        for l2, grandchildren in children.items():
            labels[l2] = TaxonomyLabel(l2, 2, l1)
            for l3 in grandchildren:
                labels[l3] = TaxonomyLabel(l3, 3, l2)
    return labels


TAXONOMY: dict[str, TaxonomyLabel] = _flatten()

CONTENT_TYPES = ("Animated", "Illustrated")


def label(name: str, custom: Mapping[str, TaxonomyLabel] | None = None) -> TaxonomyLabel:
    """The taxonomy entry for ``name`` (or an adapter's ``custom`` label); KeyError names an
    unknown label."""
    entry = TAXONOMY.get(name) or (custom or {}).get(name)
    if entry is None:
        raise KeyError(f"{name!r} is not a label of the moderation taxonomy")
    return entry


def ancestors(name: str, custom: Mapping[str, TaxonomyLabel] | None = None) -> list[str]:
    """``name`` followed by its parent and grandparent, nearest first."""
    chain = [name]
    parent = label(name, custom).parent
    while parent:
        chain.append(parent)
        parent = label(parent, custom).parent
    return chain


def custom_label(
    name: str, parent: str, custom: Mapping[str, TaxonomyLabel] | None = None
) -> TaxonomyLabel:
    """A label an adapter adds under ``parent`` ("" for a new level-1 label).

    ValueError says what is wrong: a name the taxonomy already has, an unknown parent, or a
    level deeper than the taxonomy's three.
    """
    if name in TAXONOMY:
        raise ValueError(f"{name!r} is already a taxonomy label; it cannot be declared again")
    if not name.strip():
        raise ValueError("a custom label needs a name")
    if not parent:
        return TaxonomyLabel(name, 1, "")
    try:
        level = label(parent, custom).level + 1
    except KeyError:
        raise ValueError(
            f"the parent {parent!r} of custom label {name!r} is not a taxonomy label"
        ) from None
    if level > MAX_LEVEL:
        raise ValueError(
            f"custom label {name!r} under {parent!r} would be at level {level}; the taxonomy has "
            f"{MAX_LEVEL} levels, so pick a level-1 or level-2 parent"
        )
    return TaxonomyLabel(name, level, parent)
