"""Tests for the moderation taxonomy and the mapping from component scores to labels."""

import pytest

from model.label_map import (
    LABEL_RULES,
    UNMAPPED_OUTPUTS,
    mapped_labels,
    moderation_labels,
)
from model.taxonomy import CONTENT_TYPES, TAXONOMY, ancestors, label

# REFERENCE.md section 2, copied by hand: level 1 -> {level 2 -> [level 3]}.
REFERENCE_TREE = {
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
        "Obstructed Intimate Parts": [
            "Obstructed Female Nipple",
            "Obstructed Male Genitalia",
        ],
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
    "Alcohol": {"Alcohol Use": ["Drinking"], "Alcoholic Beverages": []},
    "Rude Gestures": {"Middle Finger": []},
    "Gambling": {},
    "Hate Symbols": {"Nazi Party": [], "White Supremacy": [], "Extremist": []},
}

# name -> (level, parent), from the reference table.
REFERENCE = {}
for _l1, _children in REFERENCE_TREE.items():
    REFERENCE[_l1] = (1, "")
    for _l2, _grandchildren in _children.items():
        REFERENCE[_l2] = (2, _l1)
        for _l3 in _grandchildren:
            REFERENCE[_l3] = (3, _l2)


def _reference_chain(name):
    chain = [name]
    while REFERENCE[chain[-1]][1]:
        chain.append(REFERENCE[chain[-1]][1])
    return chain


def _entry(name, confidence):
    level, parent = REFERENCE[name]
    return {
        "Confidence": confidence,
        "Name": name,
        "ParentName": parent,
        "TaxonomyLevel": level,
    }


def _names(labels):
    return [entry["Name"] for entry in labels]


def _by_name(labels):
    return {entry["Name"]: entry for entry in labels}


# The taxonomy


# REFERENCE.md says "23 L3", but its own table, like the AWS developer guide, lists 22.
@pytest.mark.parametrize("level, count", [(1, 10), (2, 20), (3, 22)])
def test_label_count_per_level(level, count):
    assert sum(1 for entry in TAXONOMY.values() if entry.level == level) == count


def test_taxonomy_matches_the_reference_table():
    assert {name: (entry.level, entry.parent) for name, entry in TAXONOMY.items()} == REFERENCE
    assert len(TAXONOMY) == 52


@pytest.mark.parametrize(
    "name, level, parent",
    [
        ("Non-Explicit Nudity of Intimate parts and Kissing", 1, ""),
        ("Drugs & Tobacco Paraphernalia & Use", 2, "Drugs & Tobacco"),
        ("Exposed Buttocks or Anus", 3, "Explicit Nudity"),
        ("Kissing on the Lips", 2, "Non-Explicit Nudity of Intimate parts and Kissing"),
        ("Blood & Gore", 3, "Graphic Violence"),
        ("Self-Harm", 3, "Graphic Violence"),
        ("Female Swimwear or Underwear", 2, "Swimwear or Underwear"),
        ("Gambling", 1, ""),
        ("Air Crash", 3, "Crashes"),
        ("Partially Exposed Female Breast", 3, "Non-Explicit Nudity"),
    ],
)
def test_exact_spellings(name, level, parent):
    entry = label(name)
    assert (entry.name, entry.level, entry.parent) == (name, level, parent)


def test_level_1_labels_have_no_parent():
    level_1 = [entry for entry in TAXONOMY.values() if entry.level == 1]
    assert level_1 and all(entry.parent == "" for entry in level_1)


@pytest.mark.parametrize("level", [2, 3])
def test_parents_are_one_level_up(level):
    for entry in TAXONOMY.values():
        if entry.level == level:
            assert TAXONOMY[entry.parent].level == level - 1, entry


def test_names_are_keys():
    assert all(name == entry.name for name, entry in TAXONOMY.items())


def test_unknown_label_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="Nudity "):
        label("Nudity ")


def test_ancestors_nearest_first():
    assert ancestors("Pills") == ["Pills", "Products", "Drugs & Tobacco"]
    assert ancestors("Weapons") == ["Weapons", "Violence"]
    assert ancestors("Gambling") == ["Gambling"]


def test_content_types():
    assert CONTENT_TYPES == ("Animated", "Illustrated")


# Every rule


@pytest.mark.parametrize("rule", LABEL_RULES, ids=[rule.signal for rule in LABEL_RULES])
def test_rule_yields_its_label_and_ancestors(rule):
    from model.label_map import SIGNAL_CALIBRATION, calibrated

    labels = moderation_labels({rule.signal: 0.9}, min_confidence=50)
    chain = _reference_chain(rule.label)
    expected = 100 * calibrated(0.9, SIGNAL_CALIBRATION.get(rule.signal, 0.5))
    assert labels == [_entry(name, round(expected, 4)) for name in chain]


def test_rule_labels_are_in_the_taxonomy():
    assert {rule.label for rule in LABEL_RULES} <= set(REFERENCE)


def test_mapped_labels_are_in_the_taxonomy():
    names = list(mapped_labels())
    assert names
    assert set(names) <= set(REFERENCE)
    assert names == sorted(set(names))
    expected = {name for rule in LABEL_RULES for name in _reference_chain(rule.label)}
    assert set(names) == expected


def test_no_signal_is_both_mapped_and_unmapped():
    assert not {rule.signal for rule in LABEL_RULES} & set(UNMAPPED_OUTPUTS)


# MinConfidence


def test_score_at_min_confidence_is_returned():
    labels = moderation_labels({"open_nsfw/nsfw": 0.5}, min_confidence=50)
    assert labels == [_entry("Explicit", 50.0)]


def test_score_just_under_min_confidence_is_not_returned():
    assert moderation_labels({"open_nsfw/nsfw": 0.49994}, min_confidence=50) == []


def test_min_confidence_compares_the_rounded_confidence():
    # 49.99996 is reported as 50.0, so it passes MinConfidence 50.
    labels = moderation_labels({"open_nsfw/nsfw": 0.4999996}, min_confidence=50)
    assert labels == [_entry("Explicit", 50.0)]


def test_confidence_is_rounded_to_four_decimals():
    labels = moderation_labels({"open_nsfw/nsfw": 0.123456789}, min_confidence=0)
    assert labels == [_entry("Explicit", 12.3457)]


def test_min_confidence_zero_returns_any_positive_score():
    labels = moderation_labels({"nudenet/MALE_BREAST_EXPOSED": 1e-9}, min_confidence=0)
    assert _names(labels) == [
        "Exposed Male Nipple",
        "Non-Explicit Nudity",
        "Non-Explicit Nudity of Intimate parts and Kissing",
    ]
    assert all(entry["Confidence"] == 0.0 for entry in labels)


def test_zero_score_returns_nothing_even_at_min_confidence_zero():
    signals = {rule.signal: 0.0 for rule in LABEL_RULES}
    assert moderation_labels(signals, min_confidence=0) == []


def test_negative_score_returns_nothing():
    assert moderation_labels({"open_nsfw/nsfw": -0.5}, min_confidence=0) == []


def test_min_confidence_100_keeps_only_certain_labels():
    signals = {"open_nsfw/nsfw": 1.0, "nudenet/MALE_BREAST_EXPOSED": 0.99}
    assert moderation_labels(signals, min_confidence=100) == [_entry("Explicit", 100.0)]


def test_min_confidence_can_drop_a_child_and_keep_its_parent():
    signals = {"nudenet/FEMALE_GENITALIA_EXPOSED": 0.6, "open_nsfw/nsfw": 0.95}
    assert moderation_labels(signals, min_confidence=70) == [_entry("Explicit", 95.0)]


# How confidences combine


def _both_orders(signals):
    """The labels for ``signals`` in their order and reversed; they must agree."""
    forward = moderation_labels(signals, min_confidence=50)
    backward = moderation_labels(dict(reversed(signals.items())), min_confidence=50)
    assert forward == backward
    return forward


def test_parent_confidence_is_the_max_of_its_children():
    signals = {
        "nudenet/FEMALE_GENITALIA_EXPOSED": 0.6,
        "nudenet/MALE_GENITALIA_EXPOSED": 0.8,
    }
    assert _both_orders(signals) == [
        _entry("Exposed Male Genitalia", 80.0),
        _entry("Explicit Nudity", 80.0),
        _entry("Explicit", 80.0),
        _entry("Exposed Female Genitalia", 60.0),
    ]


def test_level_1_evidence_raises_only_level_1():
    signals = {
        "nudenet/FEMALE_GENITALIA_EXPOSED": 0.6,
        "nudenet/MALE_GENITALIA_EXPOSED": 0.8,
        "open_nsfw/nsfw": 0.95,
    }
    assert _both_orders(signals) == [
        _entry("Explicit", 95.0),
        _entry("Exposed Male Genitalia", 80.0),
        _entry("Explicit Nudity", 80.0),
        _entry("Exposed Female Genitalia", 60.0),
    ]


def test_weak_level_1_evidence_does_not_lower_explicit():
    signals = {"nudenet/MALE_GENITALIA_EXPOSED": 0.8, "open_nsfw/nsfw": 0.55}
    assert _by_name(_both_orders(signals))["Explicit"]["Confidence"] == 80.0


def test_two_signals_for_one_label_take_the_max():
    signals = {"nudenet/BUTTOCKS_EXPOSED": 0.7, "nudenet/ANUS_EXPOSED": 0.85}
    confidences = {e["Name"]: e["Confidence"] for e in _both_orders(signals)}
    assert confidences == {
        "Exposed Buttocks or Anus": 85.0,
        "Explicit Nudity": 85.0,
        "Explicit": 85.0,
    }


def test_two_signals_for_a_level_2_label():
    signals = {
        "nudenet/FEMALE_GENITALIA_COVERED": 0.55,
        "nudenet/FEMALE_BREAST_COVERED": 0.75,
    }
    assert _both_orders(signals) == [
        _entry("Female Swimwear or Underwear", 75.0),
        _entry("Swimwear or Underwear", 75.0),
    ]


def test_labels_from_different_branches():
    signals = {"nudenet/MALE_BREAST_EXPOSED": 0.7, "nudenet/FEMALE_BREAST_COVERED": 0.9}
    by_name = _by_name(moderation_labels(signals, 50))
    assert set(by_name) == {
        "Exposed Male Nipple",
        "Non-Explicit Nudity",
        "Non-Explicit Nudity of Intimate parts and Kissing",
        "Female Swimwear or Underwear",
        "Swimwear or Underwear",
    }
    assert by_name["Non-Explicit Nudity"]["Confidence"] == 70.0
    assert by_name["Swimwear or Underwear"]["Confidence"] == 90.0


@pytest.mark.parametrize("signal", UNMAPPED_OUTPUTS)
def test_unmapped_outputs_give_no_labels(signal):
    assert moderation_labels({signal: 0.99}, min_confidence=0) == []


@pytest.mark.parametrize(
    "signal",
    ["unknown/thing", "nudenet/female_genitalia_exposed", "open_nsfw", "nsfw", ""],
)
def test_unknown_signals_give_no_labels(signal):
    assert moderation_labels({signal: 0.99}, min_confidence=0) == []


def test_unknown_signals_do_not_disturb_known_ones():
    signals = {"unknown/thing": 0.99, "open_nsfw/sfw": 0.99, "open_nsfw/nsfw": 0.6}
    assert moderation_labels(signals, min_confidence=50) == [_entry("Explicit", 60.0)]


def test_no_signals_give_no_labels():
    assert moderation_labels({}, min_confidence=0) == []


# Order


def test_order_is_confidence_then_level_then_name():
    signals = {
        "nudenet/FEMALE_GENITALIA_EXPOSED": 0.7,
        "nudenet/MALE_GENITALIA_EXPOSED": 0.7,
        "nudenet/MALE_BREAST_EXPOSED": 0.7,
        "nudenet/FEMALE_BREAST_COVERED": 0.9,
    }
    assert _names(moderation_labels(signals, 50)) == [
        "Female Swimwear or Underwear",
        "Swimwear or Underwear",
        "Exposed Female Genitalia",
        "Exposed Male Genitalia",
        "Exposed Male Nipple",
        "Explicit Nudity",
        "Non-Explicit Nudity",
        "Explicit",
        "Non-Explicit Nudity of Intimate parts and Kissing",
    ]


def test_order_does_not_depend_on_input_order():
    signals = {
        "open_nsfw/nsfw": 0.7,
        "nudenet/FEMALE_GENITALIA_EXPOSED": 0.7,
        "nudenet/MALE_BREAST_EXPOSED": 0.7,
        "nudenet/FEMALE_BREAST_COVERED": 0.7,
        "nudenet/BUTTOCKS_EXPOSED": 0.3,
        "nudenet/FACE_FEMALE": 0.9,
    }
    forward = moderation_labels(signals, 0)
    backward = moderation_labels(dict(reversed(list(signals.items()))), 0)
    assert forward == backward
    assert repr(forward) == repr(backward)
    assert len(forward) == 9


def test_entries_have_exactly_the_api_keys():
    labels = moderation_labels({"nudenet/ANUS_EXPOSED": 0.9}, 50)
    for entry in labels:
        assert list(entry) == ["Confidence", "Name", "ParentName", "TaxonomyLevel"]
        assert isinstance(entry["Confidence"], float)
        assert isinstance(entry["TaxonomyLevel"], int)


def test_imagenet_classes_for_one_label_add_up():
    confidences = {
        e["Name"]: e["Confidence"]
        for e in _both_orders({"imagenet/rifle": 0.3, "imagenet/revolver": 0.25})
    }
    assert confidences == {"Weapons": 55.0, "Violence": 55.0}


def test_components_take_the_max_while_imagenet_classes_add_up():
    signals = {
        "nudenet/FEMALE_BREAST_COVERED": 0.45,
        "imagenet/bikini": 0.3,
        "imagenet/bra": 0.2,
    }
    confidences = {e["Name"]: e["Confidence"] for e in _both_orders(signals)}
    assert confidences == {"Female Swimwear or Underwear": 50.0, "Swimwear or Underwear": 50.0}


def test_an_imagenet_sum_never_exceeds_100():
    signals = {"imagenet/beer bottle": 0.6, "imagenet/beer glass": 0.5}
    assert _by_name(_both_orders(signals))["Alcoholic Beverages"]["Confidence"] == 100.0


def test_rockets_are_not_weapons():
    signals = {"imagenet/missile (657)": 0.6, "imagenet/missile (744)": 0.3}
    assert moderation_labels(signals, min_confidence=0) == []


def test_adapter_only_labels_are_exactly_what_no_rule_reaches():
    from model.label_map import adapter_only_labels
    from model.taxonomy import TAXONOMY

    adapter_only = set(adapter_only_labels())
    assert adapter_only.isdisjoint(mapped_labels())
    assert adapter_only | set(mapped_labels()) == set(TAXONOMY)
    assert {"Hate Symbols", "Rude Gestures", "Kissing on the Lips", "Smoking"} <= adapter_only


def test_the_published_mapping_is_the_code():
    import pathlib

    from model.label_map import adapter_only_labels, label_card_markdown, mapping_table_markdown

    docs = (pathlib.Path(__file__).parent.parent / "docs" / "model.md").read_text("utf-8")
    assert mapping_table_markdown() in docs
    assert label_card_markdown() in docs
    card = {
        line.split("|")[1].replace("&nbsp;", "").strip(): line
        for line in label_card_markdown().splitlines()[2:]
    }
    assert set(card) == set(TAXONOMY)
    for name in TAXONOMY:
        assert card[name].endswith("| yes |") == (name not in adapter_only_labels()), name


def test_the_gore_classifier_reaches_graphic_violence_and_violence_only():
    from model.label_map import adapter_only_labels

    assert "Graphic Violence" not in adapter_only_labels()
    assert "Violence" not in adapter_only_labels()
    for name in ("Blood & Gore", "Visually Disturbing", "Corpses", "Weapon Violence"):
        assert name in adapter_only_labels()


def test_zero_shot_signals_reach_every_label_with_its_parents():
    from model.label_map import ZERO_SHOT_COMPONENT

    for name, entry in TAXONOMY.items():
        labels = moderation_labels({f"{ZERO_SHOT_COMPONENT}/{name}": 0.8}, 50)
        names = [item["Name"] for item in labels]
        assert names[0] == name if entry.level == 3 else name in names
        assert len(names) == entry.level
        assert all(item["Confidence"] == 80.0 for item in labels)
    # A signal for a name that is not a label is ignored, as any unknown signal is.
    assert moderation_labels({f"{ZERO_SHOT_COMPONENT}/Not A Label": 0.9}, 1) == []
