"""The moderation model: components run on one batch, their scores mapped to a response."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from model import __version__
from model.components import (
    ModerationComponent,
    NudeNetDetector,
    OpenNsfwClassifier,
    nudenet_available,
)
from model.label_map import moderation_labels

__all__ = ["COMPONENT_CHOICES", "ModerationModel", "load_moderation_model", "model_version"]

_LOGGER = logging.getLogger(__name__)

# "auto" runs NudeNet when its (AGPL-3.0) package is installed and open_nsfw alone otherwise.
COMPONENT_CHOICES = ("auto", "open_nsfw", "open_nsfw+nudenet")

_NUDENET_MISSING = (
    "NudeNet is not installed, so only open_nsfw runs (level-1 'Explicit' only). "
    "Install the optional extra for body-part labels: pip install '.[nudenet]' "
    "(NudeNet's weights are AGPL-3.0)."
)


class ModerationModel:
    """Runs every component on a batch and builds one DetectModerationLabels response per image."""

    def __init__(self, components: Sequence[ModerationComponent]):
        if not components:
            raise ValueError("a moderation model needs at least one component")
        self.components = list(components)
        self.version = model_version(c.version for c in self.components)

    def scores(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """``{"<component>/<output>": score}`` per image."""
        merged: list[dict[str, float]] = [{} for _ in images]
        for component in self.components:
            for per_image, outputs in zip(merged, component.predict(images), strict=True):
                per_image.update({f"{component.name}/{k}": v for k, v in outputs.items()})
        return merged

    def predict(
        self, images: Sequence[np.ndarray], min_confidence: float = 50.0
    ) -> list[dict[str, object]]:
        return [
            {
                "ModerationLabels": moderation_labels(signals, min_confidence),
                "ModerationModelVersion": self.version,
                "ContentTypes": [],
            }
            for signals in self.scores(images)
        ]


def model_version(component_versions) -> str:
    """The ``ModerationModelVersion`` string: this project's release and each component run."""
    return f"beam-moderation-{__version__}/" + "+".join(component_versions)


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


def load_moderation_model(
    components: str = "auto", *, intra_op_threads: int | None = None
) -> ModerationModel:
    factories = {"open_nsfw": OpenNsfwClassifier, "nudenet": NudeNetDetector}
    return ModerationModel(
        [
            factories[name](intra_op_threads=intra_op_threads)
            for name in resolve_components(components)
        ]
    )
