"""One adapter training run: read, analyse, choose labels, fit, evaluate and write the adapter."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from model.adapter import AdapterSpec
from model.confidence import DEFAULT_MIN_CONFIDENCE
from storage.outputs import OutputStore, join
from storage.settings import S3Settings
from training.adapter_fit import compare, fit
from training.examples import TrainingProblem, analyse, auto_split, custom_labels, read_examples
from training.label_selection import MIN_TEST_IMAGES, choose_labels, label_counts
from training.metrics import expand_labels
from training.scoring import image_loader

__all__ = ["EVALUATION_SUMMARY_FILE", "TrainingRequest", "train"]

_LOGGER = logging.getLogger(__name__)

EVALUATION_SUMMARY_FILE = "evaluation-summary.json"
_SUMMARY_FORMAT = "beam-moderation-adapter-evaluation/1"


@dataclass
class TrainingRequest:
    """What to train, as the flags of ``python -m training.train_adapter`` give it."""

    training_manifests: Sequence[str]
    testing_manifests: Sequence[str] = ()
    auto_split: bool = False
    output: str = ""
    project_version_arn: str | None = None
    confidence_threshold: float = DEFAULT_MIN_CONFIDENCE
    kms_key_id: str | None = None
    components: str = "auto"
    backbone: str | None = None
    zero_shot_model: str | None = None
    zero_shot_prompts: str | None = None
    allowed_source_prefixes: Sequence[str] | None = None  # None: images may be anywhere
    s3: S3Settings = field(default_factory=S3Settings)


def train(request: TrainingRequest, model=None) -> dict[str, Any]:
    """Trains, evaluates and writes the adapter; returns the result document.

    Raises TrainingProblem for anything the caller must fix.
    """
    from model.backbone import NO_BACKBONE, Backbone
    from model.moderation_model import load_moderation_model

    started = time.monotonic()
    if request.backbone == NO_BACKBONE:
        raise TrainingProblem("Adapters need the backbone's embedding; --backbone=none has none.")
    threshold = request.confidence_threshold
    parents: dict[str, str] = {}
    training = read_examples(request.training_manifests, parents, request.s3)
    if request.auto_split:
        training, testing = auto_split(training)
    else:
        testing = read_examples(request.testing_manifests, parents, request.s3)
    custom = custom_labels(parents)
    for example in (*training, *testing):
        example.truth = frozenset(expand_labels(example.line.labels, custom))
    if len(testing) < MIN_TEST_IMAGES:
        raise TrainingProblem(
            f"The test set has {len(testing)} images; at least {MIN_TEST_IMAGES} are needed. "
            "Add lines to the testing manifest (or to the training manifest with AutoCreate)."
        )

    if model is None:
        model = load_moderation_model(
            request.components,
            backbone=request.backbone,
            zero_shot_model=request.zero_shot_model,
            zero_shot_prompts=request.zero_shot_prompts,
            s3=request.s3,
        )
    _LOGGER.info(
        "Running %s over %d training and %d test images",
        model.version,
        len(training),
        len(testing),
    )
    load = image_loader(request.s3, 16, request.allowed_source_prefixes)
    analyse([*training, *testing], model, load)

    counts = label_counts(training, threshold, custom)
    labels, skipped = choose_labels(counts, len(training), custom)
    if not labels:
        detail = "; ".join(f"{row['Name']}: {row['Reason']}" for row in skipped) or (
            "the ground truth names no label and the base model predicts none"
        )
        raise TrainingProblem(
            f"No label has enough verified examples to train on ({detail}). Verify more "
            "predictions of the labels to improve."
        )
    embedding_size = int(training[0].analysis.embedding.shape[0])
    spec = AdapterSpec(
        labels=tuple(labels),
        custom_labels={name: custom[name] for name in custom},
        embedding_size=embedding_size,
        base_model_version=model.version,
        backbone_version=Backbone.version_for(request.backbone),
        confidence_threshold=threshold,
        project_version_arn=request.project_version_arn,
        training={
            "TrainingImages": len(training),
            "TestingImages": len(testing),
            "Counts": {name: counts[name] for name in labels},
        },
    )
    adapter = fit(training, labels, custom, spec)
    evaluation = compare(testing, adapter, threshold)
    summary = {
        "Format": _SUMMARY_FORMAT,
        "ProjectVersionArn": request.project_version_arn,
        "BaseModelVersion": model.version,
        "ConfidenceThreshold": threshold,
        "TrainingImages": len(training),
        "TestingImages": len(testing),
        "TrainingCounts": {name: counts[name] for name in labels},
        "NotAdapted": skipped,
        **evaluation,
    }
    store = OutputStore(request.s3, kms_key_id=request.kms_key_id)
    summary_path = join(request.output, EVALUATION_SUMMARY_FILE)
    store.write_bytes(summary_path, json.dumps(summary, indent=2).encode())
    adapter.save(request.output, store)  # adapter.json last: its presence means complete
    f1 = evaluation["Overall"]["Adapter"]["F1Score"] or 0.0
    message = f"Adapted {len(labels)} label(s): {', '.join(labels)}."
    left = [row["Name"] for row in skipped if not row["Reason"].startswith("follows")]
    if left:
        message += f" Left to the base model (too few verified examples): {', '.join(left)}."
    result: dict[str, Any] = {
        "Status": "TRAINING_COMPLETED",
        "StatusMessage": message,
        "F1Score": round(float(f1), 6),
        "Adapter": request.output.rstrip("/") + "/",
        "BaseModelVersion": model.version,
        "BackboneVersion": spec.backbone_version,
        "Labels": list(labels),
        "TrainingSeconds": round(time.monotonic() - started, 1),
    }
    if summary_path.startswith("s3://"):
        bucket, _, key = summary_path[len("s3://") :].partition("/")
        result["Summary"] = {"Bucket": bucket, "Name": key}
    else:
        result["Summary"] = {"Path": summary_path}
    return result
