"""Human loop activation conditions for DetectModerationLabels, as A2I defines them, and what a
human loop keeps of the request and answer that started it (``input_content``). Pure functions
of a DetectModerationLabels answer: the server's DetectModerationLabels and a bulk job's results
lines (``pipeline.human_review``) both use them.

A flow definition's ``HumanLoopActivationConditions`` is a JSON string (SageMaker developer guide,
"JSON Schema for Human Loop Activation Conditions in Amazon Augmented AI" and "Use Human Loop
Activation Conditions JSON Schema with Amazon Rekognition")::

    {"Conditions": [CONDITION, ...]}

Each member of ``Conditions`` is an independent condition: a human loop starts when any of them
is true. A condition is either simple, ``{"ConditionType": ..., "ConditionParameters": {...}}``,
or ``{"And": [...]}`` / ``{"Or": [...]}`` of at least two conditions, nested at most two levels
deep. The request source ``AWS/Rekognition/DetectModerationLabels/Image/V3`` has two types:

- ``ModerationLabelConfidenceCheck``: ``ModerationLabelName`` (exact and case-sensitive, or ``*``
  for any label) and one or more of ``ConfidenceEquals``, ``ConfidenceLessThan``,
  ``ConfidenceLessThanEquals``, ``ConfidenceGreaterThan``, ``ConfidenceGreaterThanEquals``
  (0 to 100). True when a label of that name has a confidence satisfying every comparison
  given. The guide's own examples also spell ``ConfidenceLessThanOrEqual`` and
  ``ConfidenceGreaterThanOrEqual``; both are accepted with the same meaning.
- ``Sampling``: ``RandomSamplingPercentage``, a real number from 0.01 to 100. The guide says the
  same request is always sampled the same way; here the draw is a hash of the caller's
  ``sampling_key`` (and the condition's place, so that two Sampling conditions draw apart), a
  number in [0, 100) that is sampled when below the percentage.

Every condition is evaluated, none short-circuited (the guide: "Amazon Augmented AI evaluates all
conditions"); the results have the shape of A2I's ``humanTaskActivationConditionResults``
("Amazon A2I Output Data"): the conditions as given, each with its ``EvaluationResult``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVATION_REASON",
    "CONFIDENCE_CHECK",
    "SAMPLING",
    "Activation",
    "InvalidConditions",
    "evaluate",
    "input_content",
    "parse_activation_conditions",
    "sampling_key",
]

CONFIDENCE_CHECK = "ModerationLabelConfidenceCheck"
SAMPLING = "Sampling"
# The HumanLoopActivationReasons of a human loop the conditions started. The API references say
# only "Shows if and why human review was needed" (an array of at least one string); this is the
# value AWS's answers carry, not a documented enum.
ACTIVATION_REASON = "ConditionsEvaluation"

ANY_LABEL = "*"
MAX_NESTING = 2
MIN_SAMPLING_PERCENTAGE = 0.01

_SOURCE = "HumanLoopActivationConditions"
_OPERATORS = ("And", "Or")
_COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    "ConfidenceEquals": operator.eq,
    "ConfidenceLessThan": operator.lt,
    "ConfidenceLessThanEquals": operator.le,
    "ConfidenceGreaterThan": operator.gt,
    "ConfidenceGreaterThanEquals": operator.ge,
    # As the guide's examples 1 and 2 spell them.
    "ConfidenceLessThanOrEqual": operator.le,
    "ConfidenceGreaterThanOrEqual": operator.ge,
}
_DOCUMENTED_COMPARISONS = tuple(_COMPARISONS)[:5]


class InvalidConditions(ValueError):
    """The activation conditions are not JSON, or not conditions this server can evaluate; the
    message names the part at fault and what it should be."""


@dataclass(frozen=True)
class Activation:
    """What the conditions decided for one DetectModerationLabels answer.

    ``reasons`` is the answer's ``HumanLoopActivationReasons`` (empty when not activated);
    ``evaluation_results`` its ``HumanLoopActivationConditionsEvaluationResults`` (the API sends
    it as a JSON string: ``json.dumps(activation.evaluation_results)``); ``selected_labels`` the
    labels of the answer to show reviewers, A2I's ``selectedAiServiceResponse``: those the
    confidence checks that started the loop matched, or every label when a loop was started by
    sampling alone or by a flow without conditions.
    """

    activated: bool
    reasons: list[str]
    evaluation_results: dict
    selected_labels: list[dict] = field(default_factory=list)


def parse_activation_conditions(text: str | None) -> dict | None:
    """The activation conditions of a ``HumanLoopActivationConditions`` string, checked; None
    for None (no conditions: every request starts a human loop).

    Raises InvalidConditions for text that is not JSON, for a structure that is not the schema's,
    for unknown condition types or parameters, and for numbers out of range.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidConditions(f"{_SOURCE} must be a JSON string, not {type(text).__name__}.")
    if not text.strip():
        raise InvalidConditions(
            f'{_SOURCE} is empty: pass {{"Conditions": [...]}}, or leave out '
            "HumanLoopActivationConfig to review every request."
        )
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidConditions(
            f"{_SOURCE} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidConditions(f"{_SOURCE} is not valid JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise InvalidConditions(
            f'{_SOURCE} must be a JSON object, {{"Conditions": [...]}}, not {_kind(document)}.'
        )
    _check_keys(document, {"Conditions"}, "the top level")
    conditions = document.get("Conditions")
    if not isinstance(conditions, list):
        raise InvalidConditions(
            f'{_SOURCE} needs "Conditions", a list of conditions, not {_kind(conditions)}.'
        )
    if not conditions:
        raise InvalidConditions(
            f"{_SOURCE}: Conditions is empty, so no request would ever be reviewed: list at least "
            "one condition, or leave out HumanLoopActivationConfig to review every request."
        )
    for index, condition in enumerate(conditions):
        _check_condition(condition, f"Conditions[{index}]", depth=0)
    return copy.deepcopy(document)


def evaluate(
    conditions: dict | None, response: Mapping[str, Any], *, sampling_key: bytes
) -> Activation:
    """The activation decision for ``response`` (a DetectModerationLabels answer, with
    ``ModerationLabels`` of ``Name``, ``Confidence`` and ``ParentName``) under ``conditions``
    (``parse_activation_conditions``'s result; None: always activated).

    ``sampling_key`` identifies the request (e.g. the SHA-256 of the image bytes, or its S3
    object and version, with the flow definition's ARN): the same key is always sampled the same.
    """
    labels = list(response.get("ModerationLabels") or [])
    if conditions is None:
        return Activation(True, [ACTIVATION_REASON], {"Conditions": []}, copy.deepcopy(labels))
    evaluator = _Evaluator(labels, bytes(sampling_key))
    results, selected = [], set()
    for index, condition in enumerate(conditions["Conditions"]):
        result, chosen = evaluator.node(condition, str(index))
        results.append(result)
        if result["EvaluationResult"]:
            selected |= chosen
    activated = any(result["EvaluationResult"] for result in results)
    return Activation(
        activated=activated,
        reasons=[ACTIVATION_REASON] if activated else [],
        evaluation_results={"Conditions": results},
        selected_labels=[copy.deepcopy(labels[i]) for i in sorted(selected)] if activated else [],
    )


# Parsing.


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)[:80]}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _check_keys(node: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        listed = ", ".join(sorted(allowed))
        raise InvalidConditions(
            f"{_SOURCE}: {where} has unknown key(s) {', '.join(map(json.dumps, unknown))} "
            f"(allowed: {listed})."
        )


def _check_condition(node: Any, path: str, *, depth: int) -> None:
    if not isinstance(node, dict):
        raise InvalidConditions(
            f"{_SOURCE}: {path} must be a condition object "
            f'({{"ConditionType": ..., "ConditionParameters": {{...}}}}, {{"And": [...]}} or '
            f'{{"Or": [...]}}), not {_kind(node)}.'
        )
    operators = [name for name in _OPERATORS if name in node]
    if operators:
        if len(node) != 1:
            raise InvalidConditions(
                f"{_SOURCE}: {path} must hold only one of And or Or, on its own (found "
                f"{', '.join(map(json.dumps, sorted(node)))}); nest them to combine."
            )
        (name,) = operators
        if depth >= MAX_NESTING:
            raise InvalidConditions(
                f"{_SOURCE}: {path}.{name} nests And/Or more than {MAX_NESTING} levels deep; A2I "
                f"supports up to {MAX_NESTING}."
            )
        members = node[name]
        if not isinstance(members, list) or len(members) < 2:
            found = f"{len(members)} condition(s)" if isinstance(members, list) else _kind(members)
            raise InvalidConditions(
                f"{_SOURCE}: {path}.{name} must be a list of at least 2 conditions, not {found}."
            )
        for index, member in enumerate(members):
            _check_condition(member, f"{path}.{name}[{index}]", depth=depth + 1)
        return
    _check_keys(node, {"ConditionType", "ConditionParameters"}, path)
    kind = node.get("ConditionType")
    if kind not in (CONFIDENCE_CHECK, SAMPLING):
        raise InvalidConditions(
            f"{_SOURCE}: {path}.ConditionType must be {CONFIDENCE_CHECK} or {SAMPLING} (the types "
            f"of DetectModerationLabels), not {_kind(kind)}."
        )
    parameters = node.get("ConditionParameters")
    where = f"{path}.ConditionParameters"
    if not isinstance(parameters, dict):
        raise InvalidConditions(
            f"{_SOURCE}: {where} must be an object of the {kind} parameters, not "
            f"{_kind(parameters)}."
        )
    if kind == SAMPLING:
        _check_keys(parameters, {"RandomSamplingPercentage"}, where)
        _check_number(parameters, "RandomSamplingPercentage", where, low=MIN_SAMPLING_PERCENTAGE)
        return
    _check_keys(parameters, {"ModerationLabelName", *_COMPARISONS}, where)
    label = parameters.get("ModerationLabelName")
    if not isinstance(label, str) or not label:
        raise InvalidConditions(
            f"{_SOURCE}: {where}.ModerationLabelName must be a moderation label's exact name "
            f'(case-sensitive), or "{ANY_LABEL}" for any label, not {_kind(label)}.'
        )
    comparisons = [name for name in _COMPARISONS if name in parameters]
    if not comparisons:
        raise InvalidConditions(
            f"{_SOURCE}: {where} needs at least one of {', '.join(_DOCUMENTED_COMPARISONS)} "
            "(a confidence from 0 to 100)."
        )
    for name in comparisons:
        _check_number(parameters, name, where, low=0)


def _check_number(parameters: Mapping[str, Any], name: str, where: str, *, low: float) -> None:
    value = parameters.get(name)
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= 100
    )
    if not valid:
        raise InvalidConditions(
            f"{_SOURCE}: {where}.{name} must be a number from {low:g} to 100, not {_kind(value)}."
        )


# Evaluation.


class _Evaluator:
    """One response's evaluation: each condition's result, and the labels it selects (indices
    into the response's labels)."""

    def __init__(self, labels: list[Mapping[str, Any]], sampling_key: bytes):
        self.labels = labels
        self.sampling_key = sampling_key
        self.every_label = frozenset(range(len(labels)))

    def node(self, node: Mapping[str, Any], place: str) -> tuple[dict, frozenset[int]]:
        for name in _OPERATORS:
            if name in node:
                return self._combined(name, node[name], place)
        kind, parameters = node["ConditionType"], node["ConditionParameters"]
        if kind == SAMPLING:
            value = _sampling_point(self.sampling_key, place)
            passed = value < float(parameters["RandomSamplingPercentage"])
            # Sampling selects every label, unless a confidence check beside it narrows them.
            chosen = _Everything(self.every_label) if passed else frozenset()
        else:
            chosen = frozenset(self._matching(parameters))
            passed = bool(chosen)
        result = {
            # Keys in order, as A2I writes them.
            "ConditionParameters": copy.deepcopy(dict(sorted(parameters.items()))),
            "ConditionType": kind,
            "EvaluationResult": passed,
        }
        return result, chosen

    def _combined(
        self, name: str, members: list[Mapping[str, Any]], place: str
    ) -> tuple[dict, frozenset[int]]:
        evaluated = [self.node(member, f"{place}.{index}") for index, member in enumerate(members)]
        outcomes = [result["EvaluationResult"] for result, _ in evaluated]
        passed = all(outcomes) if name == "And" else any(outcomes)
        chosen: frozenset[int] = frozenset()
        if passed:
            picks = [picked for (result, picked) in evaluated if result["EvaluationResult"]]
            if name == "And":
                narrowed = [picked for picked in picks if not isinstance(picked, _Everything)]
                chosen = frozenset().union(*narrowed) if narrowed else _Everything(self.every_label)
            elif any(isinstance(picked, _Everything) for picked in picks):
                chosen = _Everything(self.every_label)
            else:
                chosen = frozenset().union(*picks)
        return {"EvaluationResult": passed, name: [result for result, _ in evaluated]}, chosen

    def _matching(self, parameters: Mapping[str, Any]) -> list[int]:
        wanted = parameters["ModerationLabelName"]
        checks = [
            (_COMPARISONS[name], float(parameters[name]))
            for name in _COMPARISONS
            if name in parameters
        ]
        matches = []
        for index, label in enumerate(self.labels):
            if wanted != ANY_LABEL and label.get("Name") != wanted:
                continue
            confidence = label.get("Confidence")
            if not isinstance(confidence, int | float) or isinstance(confidence, bool):
                continue
            if all(compare(float(confidence), bound) for compare, bound in checks):
                matches.append(index)
        return matches


class _Everything(frozenset):
    """Every label, chosen by sampling rather than by a confidence check."""


def _sampling_point(sampling_key: bytes, place: str) -> float:
    """A number in [0, 100), the same for the same key and condition."""
    digest = hashlib.sha256(
        len(sampling_key).to_bytes(8, "big") + sampling_key + place.encode()
    ).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


# What a human loop keeps, for DetectModerationLabels and for a bulk job's results lines alike.


def sampling_key(flow_arn: str, image: bytes) -> bytes:
    """What decides a Sampling condition for this request: the image's SHA-256 and the flow
    definition's ARN (the same image through the same flow is always sampled the same way)."""
    return hashlib.sha256(
        flow_arn.encode("utf-8") + b"\n" + hashlib.sha256(image).digest()
    ).digest()


def input_content(
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    evaluation_results: Mapping[str, Any],
    selected_labels: list[Mapping[str, Any]],
) -> dict[str, Any]:
    """A Rekognition loop's ``inputContent``, as A2I's output data shows it."""
    request = {key: value for key, value in params.items() if value is not None}
    image = dict(request.get("Image") or {})
    if isinstance(image.get("Bytes"), bytes | bytearray):
        image["Bytes"] = base64.b64encode(image["Bytes"]).decode("ascii")
    request["Image"] = image
    answer = {key: value for key, value in response.items() if key != "HumanLoopActivationOutput"}
    selected: dict[str, Any] = {"ModerationLabels": list(selected_labels)}
    if "ModerationModelVersion" in response:
        selected["ModerationModelVersion"] = response["ModerationModelVersion"]
    return {
        "aiServiceRequest": _camel(request),
        "aiServiceResponse": _camel(answer),
        "humanTaskActivationConditionResults": dict(evaluation_results),
        "selectedAiServiceResponse": _camel(selected),
    }


def _camel(value: Any) -> Any:
    """Keys in A2I's camelCase (``ModerationLabels`` -> ``moderationLabels``), all the way down."""
    if isinstance(value, Mapping):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(item) for item in value]
    return value
