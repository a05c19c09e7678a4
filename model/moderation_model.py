"""The moderation model: components run on one batch, their scores mapped to a response.

The base model is parts run on one decoded image: the TensorFlow backbone (EfficientNet-Lite0:
ImageNet classes for the label table, an embedding for the content-types head), and the ONNX
Runtime components open_nsfw, the gore classifier and (optionally) NudeNet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model import __version__
from model.analysis import ImageAnalysis
from model.backbone import DEFAULT_BACKBONE, NO_BACKBONE, Backbone, imagenet_class_names
from model.components import (
    GoreClassifier,
    ModerationComponent,
    NudeNetDetector,
    OpenNsfwClassifier,
    nudenet_available,
)
from model.confidence import DEFAULT_MIN_CONFIDENCE
from model.content_types import ContentTypesHead, content_types
from model.label_map import LABEL_RULES, label_evidence, labels_from_evidence

if TYPE_CHECKING:
    from model.adapter import Adapter

__all__ = [
    "COMPONENT_CHOICES",
    "add_zero_shot_arguments",
    "check_zero_shot_arguments",
    "zero_shot_flags",
    "ModerationModel",
    "load_moderation_model",
    "model_version",
    "respond",
    "moderation_model_version",
]

_LOGGER = logging.getLogger(__name__)

# "auto" runs every component that is installed: open_nsfw and the gore classifier always (their
# packages are dependencies), NudeNet when its (AGPL-3.0) package is installed.
COMPONENT_CHOICES = (
    "auto",
    "open_nsfw",
    "open_nsfw+gore",
    "open_nsfw+nudenet",
    "open_nsfw+nudenet+gore",
)

_NUDENET_MISSING = (
    "NudeNet is not installed, so of the nudity labels only the level-1 'Explicit' (open_nsfw) "
    "is reachable. "
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

    def analyse(self, images: Sequence[np.ndarray]) -> list[ImageAnalysis]:
        """What the base model sees in each image, before any label threshold."""
        analyses = [ImageAnalysis({}, {}, None) for _ in images]
        for component in self.components:
            for analysis, outputs in zip(analyses, component.predict(images), strict=True):
                analysis.signals.update({f"{component.name}/{k}": v for k, v in outputs.items()})
        if self.backbone is not None and images:
            output = self.backbone.run(images)
            if output.imagenet is not None:
                for analysis, probabilities in zip(analyses, output.imagenet, strict=True):
                    analysis.signals.update(
                        {signal: float(probabilities[i]) for i, signal in _IMAGENET_SIGNALS}
                    )
            if output.embeddings is not None:
                for analysis, embedding in zip(analyses, output.embeddings, strict=True):
                    analysis.embedding = np.asarray(embedding, dtype=np.float32)
                if self.content_types_head is not None:
                    kinds = self.content_types_head.predict(output.embeddings)
                    for analysis, image_kinds in zip(analyses, kinds, strict=True):
                        analysis.content_types = image_kinds
        return analyses

    def scores(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """``{"<component>/<output>": score}`` per image."""
        return [analysis.signals for analysis in self.analyse(images)]

    def respond(
        self,
        analyses: Sequence[ImageAnalysis],
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        adapter: Adapter | None = None,
    ) -> list[dict[str, object]]:
        """One DetectModerationLabels response per analysis, through ``adapter`` if one is given
        (the caller adds ``ProjectVersion``)."""
        return respond(analyses, self.version, min_confidence, adapter)

    def predict(
        self,
        images: Sequence[np.ndarray],
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        adapter: Adapter | None = None,
    ) -> list[dict[str, object]]:
        return self.respond(self.analyse(images), min_confidence, adapter)


def respond(
    analyses: Sequence[ImageAnalysis],
    version: str,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    adapter: Adapter | None = None,
) -> list[dict[str, object]]:
    """DetectModerationLabels responses for base-model analyses, optionally adapted."""
    evidence = [label_evidence(analysis.signals) for analysis in analyses]
    custom = None
    if adapter is not None:
        evidence = adapter.adapt(analyses, evidence)
        custom = adapter.custom_labels
    return [
        {
            "ModerationLabels": labels_from_evidence(image_evidence, min_confidence, custom),
            "ModerationModelVersion": version,
            "ContentTypes": content_types(analysis.content_types, min_confidence),
        }
        for analysis, image_evidence in zip(analyses, evidence, strict=True)
    ]


def add_zero_shot_arguments(parser) -> None:
    """``--zero_shot_model`` and ``--zero_shot_prompts``, the same for every entry point."""
    parser.add_argument(
        "--zero_shot_model",
        default=None,
        help="A zero-shot image-text model of your own (local folder, s3:// or gs:// URI) as "
        "python -m training.export_zero_shot writes it: zero_shot.json, the image encoder "
        "(ONNX or SavedModel) and the text embeddings of its prompt table. It scores every "
        "label of the taxonomy, beside the other components. Default: none.",
    )
    parser.add_argument(
        "--zero_shot_prompts",
        default=None,
        help="A prompt table (JSON, local or s3:// / gs://) overriding the model folder's own "
        "prompts.json and the shipped table, e.g. to recalibrate labels; every prompt in it "
        "must have a text embedding in the model folder. Needs --zero_shot_model. Default: the "
        "folder's table, else the shipped one.",
    )


def check_zero_shot_arguments(zero_shot_model: str | None, zero_shot_prompts: str | None) -> None:
    if zero_shot_prompts and not zero_shot_model:
        raise ValueError("--zero_shot_prompts needs --zero_shot_model (the model's folder)")


def zero_shot_flags(zero_shot_model: str | None, zero_shot_prompts: str | None) -> list[str]:
    """The flags that hand a zero-shot model on to a job or training process."""
    flags = [f"--zero_shot_model={zero_shot_model}"] if zero_shot_model else []
    if zero_shot_model and zero_shot_prompts:
        flags.append(f"--zero_shot_prompts={zero_shot_prompts}")
    return flags


def model_version(part_versions) -> str:
    """The ``ModerationModelVersion`` string: this project's release and each part that ran."""
    return f"beam-moderation-{__version__}/" + "+".join(part_versions)


def resolve_components(components: str) -> list[str]:
    """Component names for a ``--components`` choice, checking that they can be loaded."""
    if components not in COMPONENT_CHOICES:
        raise ValueError(
            f"--components must be one of {', '.join(COMPONENT_CHOICES)}, not {components!r}"
        )
    if components != "auto":
        names = components.split("+")
        if "nudenet" in names and not nudenet_available():
            raise ValueError(
                f"--components={components} needs NudeNet: pip install '.[nudenet]' "
                "(AGPL-3.0 weights), or leave nudenet out of --components"
            )
        return names
    if nudenet_available():
        return ["open_nsfw", "nudenet", "gore"]
    _LOGGER.warning(_NUDENET_MISSING)
    return ["open_nsfw", "gore"]


def _uses_backbone(backbone: str | None) -> bool:
    return backbone != NO_BACKBONE


def _uses_content_types_head(backbone: str | None) -> bool:
    # The head was trained on the default backbone's embedding; another backbone's embedding
    # means something else, so a custom backbone runs without content types.
    return backbone in (None, DEFAULT_BACKBONE)


def moderation_model_version(
    components: str = "auto",
    backbone: str | None = None,
    *,
    zero_shot_model: str | None = None,
    zero_shot_prompts: str | None = None,
    s3=None,
) -> str:
    """The version a model loaded with these settings reports, without loading its weights (a
    zero-shot model's version is read from its folder's files)."""
    versions = [_COMPONENT_VERSIONS[name]() for name in resolve_components(components)]
    if zero_shot_model:
        from model.zero_shot import ZeroShotClassifier

        versions.append(
            ZeroShotClassifier.version_for(zero_shot_model, prompts=zero_shot_prompts, s3=s3)
        )
    if _uses_backbone(backbone):
        versions.append(Backbone.version_for(backbone))
    if _uses_content_types_head(backbone):
        versions.append(ContentTypesHead.load().version)
    return model_version(versions)


def load_moderation_model(
    components: str = "auto",
    *,
    backbone: str | None = None,
    zero_shot_model: str | None = None,
    zero_shot_prompts: str | None = None,
    intra_op_threads: int | None = None,
    s3=None,
) -> ModerationModel:
    """The base model: ``components`` as for ``--components``, ``backbone`` a TF Hub handle or
    SavedModel URI (None: the embedded EfficientNet-Lite0; "none": no backbone at all),
    ``zero_shot_model`` a zero-shot model folder (with ``zero_shot_prompts``, a prompt table
    overriding its own)."""
    factories = {
        "open_nsfw": OpenNsfwClassifier,
        "nudenet": NudeNetDetector,
        "gore": GoreClassifier,
    }
    parts = [
        factories[name](intra_op_threads=intra_op_threads)
        for name in resolve_components(components)
    ]
    if zero_shot_model:
        from model.zero_shot import ZeroShotClassifier

        parts.append(
            ZeroShotClassifier.load(
                zero_shot_model,
                prompts=zero_shot_prompts,
                s3=s3,
                intra_op_threads=intra_op_threads,
            )
        )
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
    "gore": GoreClassifier.package_version,
}
