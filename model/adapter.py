"""Adapters (Custom Moderation): a small Keras model that corrects the base model for a team.

An adapter reads what the base model saw in an image (the backbone's embedding and the base
model's confidence for each label the adapter covers) and gives its own confidence for those
labels. At inference its confidence replaces the base model's own evidence for each covered
label; labels it does not cover are the base model's, and parents still inherit the confidence
of their most confident child. An adapter may add labels the base model lacks, each with its
parent in the taxonomy (``custom_labels``).

The artifact is a folder (local, ``s3://`` or ``gs://``) of two files:
``adapter.json`` (format, labels, the base model and backbone it was trained on, the ARN) and
``adapter.weights.h5`` (the Keras weights; the architecture is rebuilt from ``adapter.json``, so
loading runs no code from the artifact).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from model.confidence import DEFAULT_MIN_CONFIDENCE
from model.label_map import label_confidences
from model.taxonomy import TAXONOMY, TaxonomyLabel, label

if TYPE_CHECKING:
    from model.analysis import ImageAnalysis
    from storage.outputs import OutputStore
    from storage.settings import S3Settings

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_FORMAT",
    "WEIGHTS_FILE",
    "Adapter",
    "AdapterSpec",
    "build_adapter_model",
    "features",
]

ADAPTER_FORMAT = "beam-moderation-adapter/1"
ADAPTER_FILE = "adapter.json"
WEIGHTS_FILE = "adapter.weights.h5"


@dataclass(frozen=True)
class AdapterSpec:
    """What ``adapter.json`` holds: enough to rebuild the model and to know where it applies."""

    labels: tuple[str, ...]
    custom_labels: Mapping[str, TaxonomyLabel]
    embedding_size: int
    base_model_version: str
    backbone_version: str
    confidence_threshold: float = DEFAULT_MIN_CONFIDENCE
    project_version_arn: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)

    @property
    def feature_size(self) -> int:
        return self.embedding_size + len(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "Format": ADAPTER_FORMAT,
            "ProjectVersionArn": self.project_version_arn,
            "Labels": [
                {
                    "Name": name,
                    "ParentName": label(name, self.custom_labels).parent,
                    "TaxonomyLevel": label(name, self.custom_labels).level,
                    "Custom": name not in TAXONOMY,
                }
                for name in self.labels
            ],
            "EmbeddingSize": self.embedding_size,
            "BaseModelVersion": self.base_model_version,
            "BackboneVersion": self.backbone_version,
            "ConfidenceThreshold": self.confidence_threshold,
            "Weights": WEIGHTS_FILE,
            "Training": dict(self.training),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> AdapterSpec:
        if document.get("Format") != ADAPTER_FORMAT:
            raise ValueError(
                f"not an adapter of format {ADAPTER_FORMAT} (found {document.get('Format')!r})"
            )
        custom = {
            entry["Name"]: TaxonomyLabel(entry["Name"], entry["TaxonomyLevel"], entry["ParentName"])
            for entry in document["Labels"]
            if entry.get("Custom")
        }
        return cls(
            labels=tuple(entry["Name"] for entry in document["Labels"]),
            custom_labels=custom,
            embedding_size=int(document["EmbeddingSize"]),
            base_model_version=document["BaseModelVersion"],
            backbone_version=document["BackboneVersion"],
            confidence_threshold=float(document.get("ConfidenceThreshold", DEFAULT_MIN_CONFIDENCE)),
            project_version_arn=document.get("ProjectVersionArn"),
            training=document.get("Training", {}),
        )


def build_adapter_model(feature_size: int, label_count: int, l2: float = 1e-3):
    """Standardised features -> one sigmoid per label (a logistic regression per label).

    The standardisation is a Keras ``Normalization`` layer: ``adapt`` it on the training
    features; its mean and variance are saved with the weights.
    """
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(feature_size,), name="features")
    standardised = tf.keras.layers.Normalization(axis=-1, name="standardise")(inputs)
    outputs = tf.keras.layers.Dense(
        label_count,
        activation="sigmoid",
        kernel_regularizer=tf.keras.regularizers.l2(l2),
        name="labels",
    )(standardised)
    return tf.keras.Model(inputs, outputs, name="adapter")


def features(
    analyses: Sequence[ImageAnalysis],
    labels: Sequence[str],
    evidence: Sequence[Mapping[str, float]],
    custom_labels: Mapping[str, TaxonomyLabel] | None = None,
) -> np.ndarray:
    """(N, embedding + labels) float32: each image's embedding, then the base model's confidence
    (0-1) for each of ``labels``."""
    if not analyses:
        return np.zeros((0, 0), dtype=np.float32)
    rows = []
    for analysis, image_evidence in zip(analyses, evidence, strict=True):
        if analysis.embedding is None:
            raise ValueError("adapters need the backbone's embedding; the base model gave none")
        confidence = label_confidences(image_evidence, custom_labels)
        base = [confidence.get(name, 0.0) / 100.0 for name in labels]
        rows.append(np.concatenate([analysis.embedding.astype(np.float32), base]))
    return np.stack(rows).astype(np.float32)


class Adapter:
    """A loaded adapter: ``adapt`` turns base-model evidence into adapted evidence."""

    def __init__(self, spec: AdapterSpec, keras_model):
        self.spec = spec
        self.model = keras_model
        self._fingerprint: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def custom_labels(self) -> Mapping[str, TaxonomyLabel]:
        return self.spec.custom_labels

    @property
    def project_version_arn(self) -> str | None:
        return self.spec.project_version_arn

    def confidences(
        self, analyses: Sequence[ImageAnalysis], evidence: Sequence[Mapping[str, float]]
    ) -> np.ndarray:
        """(N, labels) adapter confidences, 0-100."""
        if not analyses:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        x = features(analyses, self.labels, evidence, self.custom_labels)
        if x.shape[1] != self.spec.feature_size:
            raise ValueError(
                f"this adapter expects a {self.spec.embedding_size}-value embedding "
                f"({self.spec.backbone_version}); the base model gives "
                f"{x.shape[1] - len(self.labels)}"
            )
        return 100.0 * np.asarray(self.model(x, training=False), dtype=np.float64)

    def adapt(
        self, analyses: Sequence[ImageAnalysis], evidence: Sequence[Mapping[str, float]]
    ) -> list[dict[str, float]]:
        """Per image: the base evidence with each covered label's evidence the adapter's."""
        adapted = []
        for image_evidence, row in zip(evidence, self.confidences(analyses, evidence), strict=True):
            merged = dict(image_evidence)
            merged.update({name: float(value) for name, value in zip(self.labels, row)})
            adapted.append(merged)
        return adapted

    # The artifact.

    def save(self, folder: str, store: OutputStore) -> None:
        """Writes ``adapter.weights.h5`` then ``adapter.json`` into ``folder``."""
        from storage.outputs import join

        with tempfile.TemporaryDirectory(prefix="adapter-") as scratch:
            weights = os.path.join(scratch, WEIGHTS_FILE)
            self.model.save_weights(weights)
            with open(weights, "rb") as stream:
                store.write_bytes(join(folder, WEIGHTS_FILE), stream.read())
        document = json.dumps(self.spec.to_json(), indent=2, sort_keys=True).encode()
        store.write_bytes(join(folder, ADAPTER_FILE), document)

    @classmethod
    def load(cls, uri: str, s3: S3Settings | None = None) -> Adapter:
        """The adapter in folder ``uri`` (local, ``s3://`` or ``gs://``)."""
        from storage.outputs import join

        try:
            spec = AdapterSpec.from_json(json.loads(_read(join(uri, ADAPTER_FILE), s3)))
            weights = _read(join(uri, WEIGHTS_FILE), s3)
        except Exception as exc:  # missing object, bad JSON, wrong format, no access
            raise ValueError(f"{uri} does not hold a readable adapter: {exc}") from exc
        model = build_adapter_model(spec.feature_size, len(spec.labels))
        with tempfile.TemporaryDirectory(prefix="adapter-") as scratch:
            path = os.path.join(scratch, WEIGHTS_FILE)
            with open(path, "wb") as stream:
                stream.write(weights)
            model.load_weights(path)
        return cls(spec, model)

    def fingerprint(self) -> str:
        """A short digest of the adapter's weights (for logs and caches)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for weight in self.model.get_weights():
                digest.update(np.ascontiguousarray(weight).tobytes())
            self._fingerprint = digest.hexdigest()[:12]
        return self._fingerprint


def _read(path: str, s3: S3Settings | None) -> bytes:
    if path.startswith("s3://"):
        from storage.settings import S3Settings

        bucket, _, key = path[len("s3://") :].partition("/")
        client = (s3 or S3Settings()).client()
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        return stream.read()
