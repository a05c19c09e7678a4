"""The moderation model: components run on one batch, their scores mapped to a response.

The base model is three parts on one decoded image: the TensorFlow backbone (EfficientNet-Lite0:
ImageNet classes for the label table, an embedding for the content-types head), and the ONNX
Runtime components open_nsfw and (optionally) NudeNet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from model import __version__
from model.backbone import DEFAULT_BACKBONE, NO_BACKBONE, Backbone, imagenet_class_names
from model.components import (
    ModerationComponent,
    NudeNetDetector,
    OpenNsfwClassifier,
    nudenet_available,
)
from model.content_types import ContentTypesHead, content_types
from model.label_map import LABEL_RULES, moderation_labels

__all__ = [
    "COMPONENT_CHOICES",
    "ModerationModel",
    "load_moderation_model",
    "model_version",
    "moderation_model_version",
]

_LOGGER = logging.getLogger(__name__)

# "auto" runs NudeNet when its (AGPL-3.0) package is installed and open_nsfw alone otherwise.
COMPONENT_CHOICES = ("auto", "open_nsfw", "open_nsfw+nudenet")

_NUDENET_MISSING = (
    "NudeNet is not installed, so only open_nsfw runs (level-1 'Explicit' only). "
    "Install the optional extra for body-part labels: pip install '.[nudenet]' "
    "(NudeNet's weights are AGPL-3.0)."
)


# The ImageNet classes the label table reads: only these become signals.
_IMAGENET_SIGNALS = tuple(
    (index, f"imagenet/{name}")
    for index, name in enumerate(imagenet_class_names())
    if any(rule.signal == f"imagenet/{name}" for rule in LABEL_RULES)
)


class ModerationModel:
    """Runs every component on a batch and builds one DetectModerationLabels response per image."""

    def __init__(
        self,
        components: Sequence[ModerationComponent],
        backbone: Backbone | None = None,
        content_types_head: ContentTypesHead | None = None,
    ):
        if not components and backbone is None:
            raise ValueError("a moderation model needs at least one component")
        self.components = list(components)
        self.backbone = backbone
        self.content_types_head = content_types_head
        versions = [c.version for c in self.components]
        if backbone is not None:
            versions.append(backbone.version)
        if content_types_head is not None:
            versions.append(content_types_head.version)
        self.version = model_version(versions)

    def analyse(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """Per image: ``{"<component>/<output>": score}`` and ``{content type: probability}``."""
        signals: list[dict[str, float]] = [{} for _ in images]
        kinds: list[dict[str, float]] = [{} for _ in images]
        for component in self.components:
            for per_image, outputs in zip(signals, component.predict(images), strict=True):
                per_image.update({f"{component.name}/{k}": v for k, v in outputs.items()})
        if self.backbone is not None and images:
            output = self.backbone.run(images)
            if output.imagenet is not None:
                for per_image, probabilities in zip(signals, output.imagenet, strict=True):
                    per_image.update(
                        {signal: float(probabilities[i]) for i, signal in _IMAGENET_SIGNALS}
                    )
            if self.content_types_head is not None and output.embeddings is not None:
                kinds = self.content_types_head.predict(output.embeddings)
        return signals, kinds

    def scores(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """``{"<component>/<output>": score}`` per image."""
        return self.analyse(images)[0]

    def predict(
        self, images: Sequence[np.ndarray], min_confidence: float = 50.0
    ) -> list[dict[str, object]]:
        signals, kinds = self.analyse(images)
        return [
            {
                "ModerationLabels": moderation_labels(image_signals, min_confidence),
                "ModerationModelVersion": self.version,
                "ContentTypes": content_types(image_kinds, min_confidence),
            }
            for image_signals, image_kinds in zip(signals, kinds, strict=True)
        ]


def model_version(part_versions) -> str:
    """The ``ModerationModelVersion`` string: this project's release and each part that ran."""
    return f"beam-moderation-{__version__}/" + "+".join(part_versions)


def resolve_components(components: str) -> list[str]:
    """Component names for a ``--components`` choice, checking that they can be loaded."""
    if components not in COMPONENT_CHOICES:
        raise ValueError(
            f"--components must be one of {', '.join(COMPONENT_CHOICES)}, not {components!r}"
        )
    if components == "open_nsfw":
        return ["open_nsfw"]
    if nudenet_available():
        return ["open_nsfw", "nudenet"]
    if components == "auto":
        _LOGGER.warning(_NUDENET_MISSING)
        return ["open_nsfw"]
    raise ValueError(
        "--components=open_nsfw+nudenet needs NudeNet: pip install '.[nudenet]' "
        "(AGPL-3.0 weights), or use --components=open_nsfw"
    )


def _uses_backbone(backbone: str | None) -> bool:
    return backbone != NO_BACKBONE


def _uses_content_types_head(backbone: str | None) -> bool:
    # The head was trained on the default backbone's embedding; another backbone's embedding
    # means something else, so a custom backbone runs without content types.
    return backbone in (None, DEFAULT_BACKBONE)


def moderation_model_version(components: str = "auto", backbone: str | None = None) -> str:
    """The version a model loaded with these settings reports, without loading it."""
    versions = [_COMPONENT_VERSIONS[name]() for name in resolve_components(components)]
    if _uses_backbone(backbone):
        versions.append(Backbone.version_for(backbone))
    if _uses_content_types_head(backbone):
        versions.append(ContentTypesHead.load().version)
    return model_version(versions)


def load_moderation_model(
    components: str = "auto",
    *,
    backbone: str | None = None,
    intra_op_threads: int | None = None,
    s3=None,
) -> ModerationModel:
    """The base model: ``components`` as for ``--components``, ``backbone`` a TF Hub handle or
    SavedModel URI (None: the embedded EfficientNet-Lite0; "none": no backbone at all)."""
    factories = {"open_nsfw": OpenNsfwClassifier, "nudenet": NudeNetDetector}
    parts = [
        factories[name](intra_op_threads=intra_op_threads)
        for name in resolve_components(components)
    ]
    return ModerationModel(
        parts,
        backbone=(
            Backbone(backbone, intra_op_threads=intra_op_threads, s3=s3)
            if _uses_backbone(backbone)
            else None
        ),
        content_types_head=ContentTypesHead.load() if _uses_content_types_head(backbone) else None,
    )


_COMPONENT_VERSIONS = {
    "open_nsfw": OpenNsfwClassifier.package_version,
    "nudenet": NudeNetDetector.package_version,
}
