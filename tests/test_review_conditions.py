"""Activation conditions of human review: parsing (A2I's schema for DetectModerationLabels) and
evaluation against DetectModerationLabels answers, including deterministic sampling."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.human_review import (
    ACTIVATION_REASON,
    Activation,
    InvalidConditions,
    evaluate,
    parse_activation_conditions,
)

SUGGESTIVE = {"Confidence": 96.7122802734375, "Name": "Suggestive", "ParentName": ""}
SWIMWEAR = {
    "Confidence": 80.0,
    "Name": "Female Swimwear Or Underwear",
    "ParentName": "Suggestive",
}
RESPONSE = {"ModerationLabels": [SUGGESTIVE, SWIMWEAR], "ModerationModelVersion": "7.0"}


def _check(name: str = "Suggestive", **comparisons) -> dict:
    return {
        "ConditionType": "ModerationLabelConfidenceCheck",
        "ConditionParameters": {"ModerationLabelName": name, **comparisons},
    }


def _sampling(percentage: float) -> dict:
    return {
        "ConditionType": "Sampling",
        "ConditionParameters": {"RandomSamplingPercentage": percentage},
    }


def _parse(*conditions: dict) -> dict:
    return parse_activation_conditions(json.dumps({"Conditions": list(conditions)}))


def _activated(*conditions: dict, response: dict = RESPONSE, key: bytes = b"image") -> bool:
    return evaluate(_parse(*conditions), response, sampling_key=key).activated


# The guide's own examples parse, and evaluate as it describes them.


def test_the_output_data_example_of_the_guide_is_reproduced():
    # "Amazon A2I Output Data", the Amazon Rekognition task type: the conditions, the inference,
    # and the humanTaskActivationConditionResults and selectedAiServiceResponse A2I wrote.
    conditions = _parse(
        {
            "Or": [
                _check("Suggestive", ConfidenceLessThan=98),
                _check("Female Swimwear Or Underwear", ConfidenceGreaterThan=98),
            ]
        }
    )
    activation = evaluate(conditions, {"ModerationLabels": [SUGGESTIVE]}, sampling_key=b"k")
    assert activation == Activation(
        activated=True,
        reasons=[ACTIVATION_REASON],
        evaluation_results={
            "Conditions": [
                {
                    "EvaluationResult": True,
                    "Or": [
                        {
                            "ConditionParameters": {
                                "ConfidenceLessThan": 98,
                                "ModerationLabelName": "Suggestive",
                            },
                            "ConditionType": "ModerationLabelConfidenceCheck",
                            "EvaluationResult": True,
                        },
                        {
                            "ConditionParameters": {
                                "ConfidenceGreaterThan": 98,
                                "ModerationLabelName": "Female Swimwear Or Underwear",
                            },
                            "ConditionType": "ModerationLabelConfidenceCheck",
                            "EvaluationResult": False,
                        },
                    ],
                }
            ]
        },
        selected_labels=[SUGGESTIVE],
    )
    # The API sends the results as a JSON string, key order as A2I writes it.
    text = json.dumps(activation.evaluation_results)
    assert text.index('"ConfidenceLessThan"') < text.index('"ModerationLabelName"')


def test_example_1_ranges_with_and_inside_or_and_the_or_equal_spellings():
    text = json.dumps(
        {
            "Conditions": [
                {
                    "Or": [
                        {
                            "And": [
                                _check("Graphic Male Nudity", ConfidenceLessThanOrEqual=99),
                                _check("Graphic Male Nudity", ConfidenceGreaterThanOrEqual=90),
                            ]
                        },
                        {
                            "And": [
                                _check("Graphic Female Nudity", ConfidenceLessThanOrEqual=99),
                                _check("Graphic Female Nudity", ConfidenceGreaterThanOrEqual=80),
                            ]
                        },
                    ]
                }
            ]
        }
    )
    conditions = parse_activation_conditions(text)

    def label(name, confidence):
        return {"ModerationLabels": [{"Name": name, "Confidence": confidence, "ParentName": ""}]}

    def activated(response):
        return evaluate(conditions, response, sampling_key=b"k").activated

    assert activated(label("Graphic Male Nudity", 95))
    assert activated(label("Graphic Male Nudity", 90))
    assert activated(label("Graphic Male Nudity", 99))
    assert not activated(label("Graphic Male Nudity", 89.9))
    assert not activated(label("Graphic Male Nudity", 99.5))
    assert activated(label("Graphic Female Nudity", 85))
    assert not activated(label("Graphic Female Nudity", 79))
    assert not activated({"ModerationLabels": []})


def test_example_2_the_catch_all_label_selects_every_label_over_the_threshold():
    conditions = _parse(_check("*", ConfidenceGreaterThanEquals=75))
    activation = evaluate(conditions, RESPONSE, sampling_key=b"k")
    assert activation.activated
    assert activation.selected_labels == [SUGGESTIVE, SWIMWEAR]
    activation = evaluate(_parse(_check("*", ConfidenceGreaterThan=90)), RESPONSE, sampling_key=b"")
    assert activation.selected_labels == [SUGGESTIVE]
    assert not _activated(_check("*", ConfidenceGreaterThan=97))


def test_example_4_sampling_and_a_check_selects_only_the_checked_label():
    conditions = _parse({"And": [_sampling(100), _check("Suggestive", ConfidenceGreaterThan=50)]})
    activation = evaluate(conditions, RESPONSE, sampling_key=b"k")
    assert activation.activated and activation.selected_labels == [SUGGESTIVE]
    (combined,) = activation.evaluation_results["Conditions"]
    assert combined["EvaluationResult"] is True
    assert [member["EvaluationResult"] for member in combined["And"]] == [True, True]


def test_sampling_alone_selects_every_label():
    activation = evaluate(_parse(_sampling(100)), RESPONSE, sampling_key=b"k")
    assert activation.activated and activation.selected_labels == [SUGGESTIVE, SWIMWEAR]
    activation = evaluate(
        _parse({"Or": [_sampling(100), _check("Suggestive", ConfidenceGreaterThan=50)]}),
        RESPONSE,
        sampling_key=b"k",
    )
    assert activation.selected_labels == [SUGGESTIVE, SWIMWEAR]


# Each comparison.


@pytest.mark.parametrize(
    ("comparison", "bound", "expected"),
    [
        ("ConfidenceEquals", 80.0, True),
        ("ConfidenceEquals", 80.5, False),
        ("ConfidenceLessThan", 80.0, False),
        ("ConfidenceLessThan", 80.1, True),
        ("ConfidenceLessThanEquals", 80.0, True),
        ("ConfidenceLessThanEquals", 79.9, False),
        ("ConfidenceLessThanOrEqual", 80.0, True),
        ("ConfidenceGreaterThan", 80.0, False),
        ("ConfidenceGreaterThan", 79.9, True),
        ("ConfidenceGreaterThanEquals", 80.0, True),
        ("ConfidenceGreaterThanEquals", 80.1, False),
        ("ConfidenceGreaterThanOrEqual", 80.0, True),
    ],
)
def test_each_comparison(comparison, bound, expected):
    condition = _check("Female Swimwear Or Underwear", **{comparison: bound})
    assert _activated(condition) is expected


def test_several_comparisons_in_one_condition_must_all_hold_on_the_same_label():
    between = _check("*", ConfidenceGreaterThan=70, ConfidenceLessThan=90)
    activation = evaluate(_parse(between), RESPONSE, sampling_key=b"k")
    assert activation.activated and activation.selected_labels == [SWIMWEAR]
    assert not _activated(_check("*", ConfidenceGreaterThan=81, ConfidenceLessThan=96))


def test_names_are_exact_and_case_sensitive_and_missing_labels_are_false():
    assert not _activated(_check("suggestive", ConfidenceGreaterThan=0))
    assert not _activated(_check("Suggestiv", ConfidenceGreaterThan=0))
    assert not _activated(_check("Violence", ConfidenceLessThan=100))
    assert _activated(_check("Suggestive", ConfidenceGreaterThanEquals=0))


# And, Or, and several top-level conditions.


def test_and_needs_every_member_or_any_and_every_condition_is_evaluated():
    yes, no = (
        _check("Suggestive", ConfidenceGreaterThan=90),
        _check("Violence", ConfidenceLessThan=100),
    )
    assert not _activated({"And": [yes, no]})
    assert _activated({"And": [yes, yes]})
    assert _activated({"Or": [no, yes]})
    assert not _activated({"Or": [no, no]})
    activation = evaluate(_parse({"Or": [yes, no]}, no), RESPONSE, sampling_key=b"k")
    # No short circuit: the false member after a true one still has its result.
    (first, second) = activation.evaluation_results["Conditions"]
    assert [member["EvaluationResult"] for member in first["Or"]] == [True, False]
    assert second["EvaluationResult"] is False


def test_top_level_conditions_are_independent_any_true_one_activates():
    yes, no = (
        _check("Suggestive", ConfidenceGreaterThan=90),
        _check("Violence", ConfidenceLessThan=100),
    )
    assert _activated(no, yes)
    assert not _activated(no, no)
    activation = evaluate(_parse(no, no), RESPONSE, sampling_key=b"k")
    assert activation.activated is False and activation.reasons == []
    assert activation.selected_labels == []
    assert [c["EvaluationResult"] for c in activation.evaluation_results["Conditions"]] == [
        False,
        False,
    ]


def test_two_levels_of_nesting_are_evaluated():
    yes, no = (
        _check("Suggestive", ConfidenceGreaterThan=90),
        _check("Violence", ConfidenceLessThan=100),
    )
    assert _activated({"Or": [{"And": [yes, no]}, {"And": [yes, yes]}]})
    assert not _activated({"And": [{"Or": [no, no]}, yes]})


def test_no_conditions_activates_every_request():
    assert parse_activation_conditions(None) is None
    activation = evaluate(None, RESPONSE, sampling_key=b"k")
    assert activation.activated and activation.reasons == [ACTIVATION_REASON]
    assert activation.selected_labels == [SUGGESTIVE, SWIMWEAR]
    assert evaluate(None, {"ModerationLabels": []}, sampling_key=b"k").activated


def test_the_response_and_the_conditions_are_not_changed():
    conditions = _parse(_check("*", ConfidenceGreaterThan=0))
    before = json.dumps([conditions, RESPONSE], sort_keys=True)
    activation = evaluate(conditions, RESPONSE, sampling_key=b"k")
    activation.selected_labels[0]["Name"] = "changed"
    activation.evaluation_results["Conditions"][0]["ConditionParameters"]["x"] = 1
    assert json.dumps([conditions, RESPONSE], sort_keys=True) == before


# Sampling: deterministic per key, at the rate asked for.


def _key(index: int) -> bytes:
    return hashlib.sha256(b"image-%d" % index).digest()


@settings(max_examples=50, deadline=None)
@given(key=st.binary(max_size=64), percentage=st.floats(min_value=0.01, max_value=100))
def test_sampling_is_the_same_for_the_same_key(key, percentage):
    conditions = _parse(_sampling(percentage))
    first = evaluate(conditions, RESPONSE, sampling_key=key)
    again = evaluate(_parse(_sampling(percentage)), {"ModerationLabels": []}, sampling_key=key)
    assert first.activated == again.activated


@settings(max_examples=50, deadline=None)
@given(key=st.binary(max_size=64), low=st.floats(0.01, 100), high=st.floats(0.01, 100))
def test_a_key_sampled_at_a_rate_is_sampled_at_every_higher_rate(key, low, high):
    low, high = min(low, high), max(low, high)
    if evaluate(_parse(_sampling(low)), RESPONSE, sampling_key=key).activated:
        assert evaluate(_parse(_sampling(high)), RESPONSE, sampling_key=key).activated


@pytest.mark.parametrize("percentage", [1, 5, 25, 50, 90])
def test_sampling_rate_over_many_keys(percentage):
    conditions = _parse(_sampling(percentage))
    count = 20_000
    sampled = sum(
        evaluate(conditions, RESPONSE, sampling_key=_key(index)).activated for index in range(count)
    )
    expected = count * percentage / 100
    # Well within five standard deviations of a binomial draw.
    spread = 5 * (count * percentage / 100 * (1 - percentage / 100)) ** 0.5
    assert abs(sampled - expected) < spread


def test_sampling_100_always_and_001_almost_never():
    always = _parse(_sampling(100))
    rare = _parse(_sampling(0.01))
    keys = [_key(index) for index in range(2000)]
    assert all(evaluate(always, RESPONSE, sampling_key=key).activated for key in keys)
    assert sum(evaluate(rare, RESPONSE, sampling_key=key).activated for key in keys) <= 3


def test_two_sampling_conditions_draw_apart():
    # Or of two 50% samplings samples about 75%, not 50%: each condition has its own draw.
    conditions = _parse({"Or": [_sampling(50), _sampling(50)]})
    count = 4000
    sampled = sum(
        evaluate(conditions, RESPONSE, sampling_key=_key(index)).activated for index in range(count)
    )
    assert 0.70 * count < sampled < 0.80 * count


# Parse errors name the part at fault.


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("{", "not valid JSON"),
        ('{"Conditions": [NaN]}', "NaN"),
        ("[]", "JSON object"),
        ("{}", '"Conditions"'),
        ('{"Conditions": {}}', '"Conditions"'),
        ('{"Conditions": []}', "Conditions is empty"),
        ('{"Conditions": [], "Extra": 1}', '"Extra"'),
        ('{"Conditions": [1]}', "Conditions[0]"),
        ('{"Conditions": [{"ConditionType": "Other"}]}', "Conditions[0].ConditionType"),
        ('{"Conditions": [{"ConditionType": "Sampling"}]}', "Conditions[0].ConditionParameters"),
        (
            '{"Conditions": [{"ConditionType": "ImportantFormKeyConfidenceCheck", '
            '"ConditionParameters": {}}]}',
            "ConditionType",
        ),
        (
            '{"Conditions": [{"ConditionType": "Sampling", "ConditionParameters": {}, "X": 1}]}',
            '"X"',
        ),
    ],
)
def test_malformed_documents_are_refused(text, named):
    with pytest.raises(InvalidConditions) as refused:
        parse_activation_conditions(text)
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        (_sampling(0), "RandomSamplingPercentage"),
        (_sampling(0.001), "RandomSamplingPercentage"),
        (_sampling(100.5), "RandomSamplingPercentage"),
        (_sampling("5"), "RandomSamplingPercentage"),
        (_sampling(True), "RandomSamplingPercentage"),
        (
            {
                "ConditionType": "Sampling",
                "ConditionParameters": {"RandomSamplingPercentage": 5, "Seed": 1},
            },
            '"Seed"',
        ),
        (_check("Suggestive"), "needs at least one of"),
        (_check("Suggestive", ConfidenceLessThan=-1), "ConfidenceLessThan"),
        (_check("Suggestive", ConfidenceLessThan=101), "ConfidenceLessThan"),
        (_check("Suggestive", ConfidenceGreaterThan="98"), "ConfidenceGreaterThan"),
        (_check("Suggestive", ConfidenceEquals=None), "ConfidenceEquals"),
        (_check("Suggestive", ConfidenceAbove=5), '"ConfidenceAbove"'),
        (_check("", ConfidenceLessThan=5), "ModerationLabelName"),
        (_check(7, ConfidenceLessThan=5), "ModerationLabelName"),
        ({"ConditionType": "ModerationLabelConfidenceCheck", "ConditionParameters": [1]}, "object"),
        ({"Or": [_sampling(5)]}, "at least 2"),
        ({"And": "no"}, "Conditions[0].And"),
        ({"And": [_sampling(5), _sampling(5)], "Or": [_sampling(5), _sampling(5)]}, "only one"),
        ({"And": [_sampling(5), _sampling(5)], "ConditionType": "Sampling"}, "only one"),
        (
            {"Or": [{"And": [{"Or": [_sampling(5), _sampling(5)]}, _sampling(5)]}, _sampling(5)]},
            "Conditions[0].Or[0].And[0].Or",
        ),
        (
            {"Or": [_sampling(5), _check("Suggestive", ConfidenceLessThan=500)]},
            "Conditions[0].Or[1]",
        ),
    ],
)
def test_bad_conditions_are_refused_naming_the_part(condition, named):
    with pytest.raises(InvalidConditions) as refused:
        _parse(condition)
    assert named in str(refused.value)


def test_parsing_returns_the_document_as_given():
    document = {"Conditions": [{"Or": [_sampling(5), _check("*", ConfidenceLessThanEquals=50)]}]}
    assert parse_activation_conditions(json.dumps(document)) == document


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_is_parsed_or_refused_with_invalid_conditions(text):
    try:
        parse_activation_conditions(text)
    except InvalidConditions:
        pass
