"""A bring-your-own zero-shot image-text model (OpenCLIP, SigLIP) as a moderation component.

No CLIP-like weights ship in any package and nothing is downloaded at run time, so a user with
internet exports one (``python -m training.export_zero_shot``) and points the project at the
folder it writes: a local path, ``s3://`` or ``gs://`` (remote folders are copied once into
``model.backbone.cache_dir()``, under a name made from a hash of the URI).

The model folder
----------------
``zero_shot.json`` (required), for example::

    {"format": 1,
     "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k",
     "image_encoder": "image_encoder.onnx",
     "input": {"size": 224, "layout": "NCHW",
               "mean": [0.4815, 0.4578, 0.4082], "std": [0.2686, 0.2613, 0.2758],
               "resize": "shortest", "interpolation": "bicubic"},
     "logit_scale": 100.0}

- ``format``: 1. ``model``: the model's name (it goes into the version); ``pretrained``
  (optional): the weights' name, appended to it.
- ``image_encoder``: a file of the folder ending in ``.onnx`` (run by ONNX Runtime, CUDA when
  available), or a TF2 SavedModel folder of the folder (run by TensorFlow, imported only then).
  It takes one float32 batch (``(N, 3, size, size)`` for ``NCHW``, ``(N, size, size, 3)`` for
  ``NHWC``) and returns the ``(N, D)`` image embeddings (the first ONNX output; the SavedModel's
  ``serving_default`` signature, its only output or the one named ``embedding``).
- ``input``: pixels are RGB scaled to [0, 1], then ``(x - mean) / std`` per channel. ``resize``
  ``shortest`` (default) is CLIP's: the shorter side resized to ``size``, then the centre
  ``size`` x ``size`` crop, exactly as torchvision's ``Resize(size)`` + ``CenterCrop(size)``;
  ``squash`` resizes to ``size`` x ``size`` without a crop (SigLIP). ``interpolation``:
  ``bicubic`` (default) or ``bilinear``.
- ``logit_scale``: the model's learnt ``exp(logit_scale)`` (about 100 for CLIP).

``text_embeddings.npz`` (required; read with ``allow_pickle=False``, so plain arrays only):
``prompts``, a string array of P prompts, and ``embeddings``, their ``(P, D)`` float32 text
embeddings (normalised again on load). Every prompt of the prompt table must be in it.

``prompts.json`` (optional): the prompt table the embeddings were computed for. It is used
instead of the table shipped beside this module; a ``prompts`` argument overrides both.

The prompt table
----------------
::

    {"format": 1,
     "defaults": {"temperature": 1.0, "offset": 2.0, "aggregate": "max"},
     "neutral": ["a photo", "a photo of a person", "a drawing", ...],
     "labels": {"Gambling": {"prompts": ["a photo of a casino slot machine", ...]},
                "Smoking": {"prompts": [...], "offset": 3.0},
                "Weapons": ["a photo of a rifle", ...]}}

Each key of ``labels`` is a label of the moderation taxonomy, exactly spelt; its value is its
prompts, or an object with ``prompts`` and any of ``temperature``, ``offset``, ``aggregate``
(falling back to ``defaults``, then to 1.0, 2.0 and ``max``). ``neutral`` are descriptions of
ordinary images that no label should fire on.

Scores
------
With ``v`` the L2-normalised image embedding and ``e_p`` the normalised text embedding of
prompt ``p``, the score of label ``L`` is::

    a_L   = max over the label's prompts p of cos(v, e_p)   (the mean with "aggregate": "mean")
    n     = max over the neutral prompts q of cos(v, e_q)
    score = sigmoid(temperature_L * logit_scale * (a_L - n) - offset_L)

Raw image-text cosines sit in a narrow band that moves with the kind of image, so a cosine on
its own is no probability; what CLIP's training makes meaningful is which of several
descriptions fits best. The label is therefore scored against the best ordinary description of
the same image: ``logit_scale * (a_L - n)`` is the log-odds of the label's best prompt against
the best neutral prompt in a two-way CLIP softmax. ``offset_L`` is the margin (in those logits,
times ``temperature_L``) at which the label reaches 0.5, and ``temperature_L`` how fast the score
goes from 0 to 1 around it. With ``offset >= 0``, an image that some neutral prompt describes at
least as well as every prompt of a label scores at most ``sigmoid(-offset)`` (0.12 with the
default 2.0) for it. The shipped defaults are a starting point, not a calibration: measure on
your own images (``python -m training.evaluate``) and set them per label.

``predict`` returns ``{label: score}`` for every label of the prompt table; the label table
(``model.label_map.ZERO_SHOT_RULES``) maps each ``zero_shot/<label>`` output to its label, whose
parents follow as for every other component.

The version is ``zero-shot-<model>[-<pretrained>]-<hash>``, the hash (12 hex digits of a SHA-256)
covering ``text_embeddings.npz`` and the prompt table in effect: both change the scores.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from model.label_map import ZERO_SHOT_COMPONENT
from model.taxonomy import TAXONOMY

if TYPE_CHECKING:
    from storage.settings import S3Settings

__all__ = [
    "CONFIG_FILE",
    "EMBEDDINGS_FILE",
    "PROMPTS_FILE",
    "SHIPPED_PROMPTS",
    "SHIPPED_PROMPTS_PATH",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_OFFSET",
    "ImageEncoder",
    "InputSpec",
    "ModelConfig",
    "LabelPrompts",
    "PromptTable",
    "ZeroShotClassifier",
    "load_prompt_table",
    "parse_prompt_table",
    "prepare_image",
    "read_config",
    "read_text_embeddings",
    "local_model_folder",
]

FORMAT_VERSION = 1
CONFIG_FILE = "zero_shot.json"
EMBEDDINGS_FILE = "text_embeddings.npz"
PROMPTS_FILE = "prompts.json"
SHIPPED_PROMPTS = "zero_shot_prompts.json"
SHIPPED_PROMPTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), SHIPPED_PROMPTS)
EXPORT_COMMAND = "python -m training.export_zero_shot"
COMPONENT_NAME = ZERO_SHOT_COMPONENT

DEFAULT_TEMPERATURE = 1.0
DEFAULT_OFFSET = 2.0
DEFAULT_AGGREGATE = "max"
AGGREGATES = ("max", "mean")
LAYOUTS = ("NCHW", "NHWC")
RESIZES = ("shortest", "squash")
_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
_CONFIG_KEYS = {"format", "model", "pretrained", "image_encoder", "input", "logit_scale"}
_INPUT_KEYS = {"size", "layout", "mean", "std", "resize", "interpolation"}
_TABLE_KEYS = {"format", "description", "defaults", "neutral", "labels"}
_CALIBRATION_KEYS = {"temperature", "offset", "aggregate"}

# An image tower: a float32 batch in the folder's input layout -> (N, D) embeddings.
ImageEncoder = Callable[[np.ndarray], np.ndarray]


class InputSpec(NamedTuple):
    """How an image becomes the encoder's input (``zero_shot.json``'s ``input``)."""

    size: int
    layout: str = "NCHW"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "shortest"
    interpolation: str = "bicubic"


class ModelConfig(NamedTuple):
    """The contents of ``zero_shot.json``."""

    model: str
    image_encoder: str
    input: InputSpec
    logit_scale: float
    pretrained: str = ""

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"format": FORMAT_VERSION, "model": self.model}
        if self.pretrained:
            document["pretrained"] = self.pretrained
        document["image_encoder"] = self.image_encoder
        document["input"] = {
            "size": self.input.size,
            "layout": self.input.layout,
            "mean": list(self.input.mean),
            "std": list(self.input.std),
            "resize": self.input.resize,
            "interpolation": self.input.interpolation,
        }
        document["logit_scale"] = self.logit_scale
        return document


class LabelPrompts(NamedTuple):
    """One label of the prompt table, with its calibration."""

    name: str
    prompts: tuple[str, ...]
    temperature: float = DEFAULT_TEMPERATURE
    offset: float = DEFAULT_OFFSET
    aggregate: str = DEFAULT_AGGREGATE


class PromptTable(NamedTuple):
    """A parsed prompt table; ``source`` names it in error messages."""

    labels: tuple[LabelPrompts, ...]
    neutral: tuple[str, ...]
    source: str

    def prompts(self) -> list[str]:
        """Every prompt the table uses, once each: labels' first, then the neutral ones."""
        ordered = [p for entry in self.labels for p in entry.prompts] + list(self.neutral)
        return list(dict.fromkeys(ordered))

    def canonical(self) -> bytes:
        """The table's meaning as bytes (key order and spacing aside), for the version hash."""
        document = {
            "neutral": list(self.neutral),
            "labels": [list(entry) for entry in self.labels],
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


# ----------------------------------------------------------------------------- reading files


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None


def _reject_unknown_keys(document: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; the known ones are {sorted(known)}")


def _number(
    value: Any, where: str, *, positive: bool = False, minimum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{where} must be greater than 0, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where} must be at least {minimum}, not {value!r}")
    return float(value)


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise ValueError(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _triple(value: Any, where: str, *, positive: bool = False) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{where} must be a list of 3 numbers (R, G, B), not {value!r}")
    r, g, b = (_number(v, where, positive=positive) for v in value)
    return r, g, b


def _input_spec(document: Any, where: str) -> InputSpec:
    if not isinstance(document, dict):
        raise ValueError(f"{where} must be an object with size, layout, mean and std")
    _reject_unknown_keys(document, _INPUT_KEYS, where)
    size = document.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"{where}.size must be a positive integer (pixels), not {size!r}")
    return InputSpec(
        size=size,
        layout=_choice(document.get("layout", "NCHW"), LAYOUTS, f"{where}.layout"),
        mean=_triple(document.get("mean"), f"{where}.mean"),
        std=_triple(document.get("std"), f"{where}.std", positive=True),
        resize=_choice(document.get("resize", "shortest"), RESIZES, f"{where}.resize"),
        interpolation=_choice(
            document.get("interpolation", "bicubic"),
            tuple(_INTERPOLATIONS),
            f"{where}.interpolation",
        ),
    )


def _encoder_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{where} must name the encoder: an .onnx file or a SavedModel folder of the folder"
        )
    if os.path.isabs(value) or ".." in value.replace("\\", "/").split("/"):
        raise ValueError(f"{where} must be a path inside the model folder, not {value!r}")
    return value


def read_config(folder: str) -> ModelConfig:
    """``zero_shot.json`` of a local model folder; ValueError says what to fix in it."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"{path} is missing: {folder} is not a zero-shot model folder "
            f"(write one with {EXPORT_COMMAND})"
        )
    document = _read_json(path, "the zero-shot model file")
    if not isinstance(document, dict):
        raise ValueError(f"{path} must hold a JSON object")
    _reject_unknown_keys(document, _CONFIG_KEYS, path)
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format must be {FORMAT_VERSION}, not {document.get('format')!r} "
            f"(re-export the model with {EXPORT_COMMAND})"
        )
    model = document.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f'{path}: model must be the model\'s name, e.g. "ViT-B-32"')
    pretrained = document.get("pretrained", "")
    if not isinstance(pretrained, str):
        raise ValueError(f"{path}: pretrained must be a string, not {pretrained!r}")
    if "logit_scale" not in document:
        raise ValueError(f"{path}: logit_scale is missing (about 100 for CLIP models)")
    return ModelConfig(
        model=model,
        image_encoder=_encoder_name(document.get("image_encoder"), f"{path}: image_encoder"),
        input=_input_spec(document.get("input"), f"{path}: input"),
        logit_scale=_number(document["logit_scale"], f"{path}: logit_scale", positive=True),
        pretrained=pretrained,
    )


def read_text_embeddings(path: str) -> tuple[list[str], np.ndarray]:
    """The prompts and their L2-normalised ``(P, D)`` float32 embeddings from a ``.npz``."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing (write it with {EXPORT_COMMAND})")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":  # np.load would take any other file for a pickle
            raise ValueError(f"{path} is not a readable .npz file (a zip written by np.savez)")
    try:
        with np.load(path, allow_pickle=False) as saved:
            missing = [key for key in ("prompts", "embeddings") if key not in saved.files]
            if missing:
                raise ValueError(
                    f"{path} has no {' or '.join(missing)} array; it holds {saved.files}"
                )
            prompts, embeddings = saved["prompts"], saved["embeddings"]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{path} holds a pickled (object) array, which is refused: save prompts as a "
                "plain string array (np.array(prompts, dtype=str)) and embeddings as float32"
            ) from None
        raise
    except (OSError, EOFError) as exc:  # not a zip, or a truncated one
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from None
    return _checked_prompts(prompts, path), _checked_embeddings(embeddings, len(prompts), path)


def _checked_prompts(prompts: np.ndarray, path: str) -> list[str]:
    if prompts.ndim != 1 or prompts.dtype.kind not in "US":
        raise ValueError(
            f"{path}: prompts must be a 1-D string array, not {prompts.dtype} {prompts.shape}"
        )
    texts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in prompts.tolist()]
    repeated = sorted({p for p in texts if texts.count(p) > 1})
    if repeated:
        raise ValueError(f"{path}: prompts must be unique; repeated: {repeated[:5]}")
    return texts


def _checked_embeddings(embeddings: np.ndarray, count: int, path: str) -> np.ndarray:
    if embeddings.ndim != 2 or embeddings.shape[0] != count or embeddings.shape[1] == 0:
        raise ValueError(
            f"{path}: embeddings must have shape ({count}, D), one row per prompt; "
            f"it has {embeddings.shape}"
        )
    if embeddings.dtype.kind != "f":
        raise ValueError(f"{path}: embeddings must be floating point, not {embeddings.dtype}")
    embeddings = embeddings.astype(np.float32)
    if not np.isfinite(embeddings).all():
        rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        raise ValueError(f"{path}: embeddings hold NaN or infinite values (rows {rows[:5]})")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{path}: embeddings rows {np.flatnonzero(norms[:, 0] == 0)[:5]} are 0")
    return embeddings / norms


# ----------------------------------------------------------------------------- the prompt table


def _taxonomy_label(name: Any, where: str) -> str:
    if name in TAXONOMY:
        return name
    close = difflib.get_close_matches(str(name), list(TAXONOMY), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{where}: {name!r} is not a label of the moderation taxonomy{hint}")


def _prompt_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of prompts")
    for prompt in value:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: every prompt must be a non-empty string, not {prompt!r}")
    return tuple(dict.fromkeys(value))


def _calibration(
    document: Mapping[str, Any], fallback: Mapping[str, Any], where: str
) -> dict[str, Any]:
    return {
        "temperature": _number(
            document.get("temperature", fallback["temperature"]),
            f"{where}: temperature",
            minimum=0.0,
        ),
        "offset": _number(document.get("offset", fallback["offset"]), f"{where}: offset"),
        "aggregate": _choice(
            document.get("aggregate", fallback["aggregate"]), AGGREGATES, f"{where}: aggregate"
        ),
    }


def _label_entry(name: str, value: Any, defaults: Mapping[str, Any], where: str) -> LabelPrompts:
    if isinstance(value, list):
        value = {"prompts": value}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: the entry must be a list of prompts or an object")
    _reject_unknown_keys(value, {"prompts"} | _CALIBRATION_KEYS, where)
    prompts = _prompt_list(value.get("prompts"), f"{where}: prompts")
    return LabelPrompts(name, prompts, **_calibration(value, defaults, where))


def parse_prompt_table(document: Any, source: str) -> PromptTable:
    """A prompt table from its JSON document; ValueError names the label or prompt to fix."""
    if not isinstance(document, dict):
        raise ValueError(f"the prompt table {source} must hold a JSON object")
    _reject_unknown_keys(document, _TABLE_KEYS, f"the prompt table {source}")
    if document.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"the prompt table {source}: format must be {FORMAT_VERSION}")
    built_in = {
        "temperature": DEFAULT_TEMPERATURE,
        "offset": DEFAULT_OFFSET,
        "aggregate": DEFAULT_AGGREGATE,
    }
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ValueError(f"the prompt table {source}: defaults must be an object")
    _reject_unknown_keys(defaults, _CALIBRATION_KEYS, f"the prompt table {source}: defaults")
    defaults = _calibration(defaults, built_in, f"the prompt table {source}: defaults")
    neutral = _prompt_list(document.get("neutral"), f"the prompt table {source}: neutral")
    labels = document.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"the prompt table {source}: labels must map taxonomy labels to prompts")
    entries = tuple(
        _label_entry(
            _taxonomy_label(name, f"the prompt table {source}"),
            value,
            defaults,
            f"the prompt table {source}, label {name!r}",
        )
        for name, value in labels.items()
    )
    _check_neutral_is_not_a_label_prompt(entries, neutral, source)
    return PromptTable(entries, neutral, source)


def _check_neutral_is_not_a_label_prompt(
    entries: Sequence[LabelPrompts], neutral: Sequence[str], source: str
) -> None:
    # The same prompt on both sides would pin the label's margin at or below 0.
    neutral_set = set(neutral)
    for entry in entries:
        shared = [p for p in entry.prompts if p in neutral_set]
        if shared:
            raise ValueError(
                f"the prompt table {source}, label {entry.name!r}: {shared[0]!r} is also a "
                "neutral prompt; a label's prompts must differ from the neutral ones"
            )


def _read_remote_text(uri: str, s3: S3Settings | None) -> str:
    if uri.startswith("s3://"):
        from storage.outputs import OutputStore

        with OutputStore(s3).s3.open(uri, "rb") as handle:
            return handle.read().decode("utf-8")
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read().decode("utf-8")


def load_prompt_table(path: str | None = None, *, s3: S3Settings | None = None) -> PromptTable:
    """The prompt table at ``path`` (local, ``s3://``, ``gs://``); the shipped one by default."""
    if path is None:
        resource = importlib.resources.files("model").joinpath(SHIPPED_PROMPTS)
        with importlib.resources.as_file(resource) as shipped:
            return load_prompt_table(str(shipped))
    if "://" in path:
        try:
            text = _read_remote_text(path, s3)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"the prompt table {path} cannot be read: {exc}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the prompt table {path} is not valid JSON: {exc}") from None
    else:
        document = _read_json(path, "the prompt table")
    return parse_prompt_table(document, path)


# ----------------------------------------------------------------------------- remote folders


def _copy_with_filesystems(uri: str, target: str) -> None:
    """Every file under ``uri`` into ``target`` through Beam's FileSystems (gs:// and others)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    prefix = uri.rstrip("/") + "/"
    for metadata in FileSystems.match([prefix + "**"])[0].metadata_list:
        relative = metadata.path[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue
        destination = os.path.join(target, *relative.split("/"))
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        # UNCOMPRESSED: a file named *.gz is part of the model, not something to unpack.
        source = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
        with source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)


def _copy_folder(uri: str, target: str, s3: S3Settings | None) -> None:
    if uri.startswith("s3://"):
        from storage.outputs import OutputStore

        OutputStore(s3).s3.get(uri.rstrip("/") + "/", target, recursive=True)
    else:
        _copy_with_filesystems(uri, target)


def local_model_folder(uri: str, s3: S3Settings | None = None) -> str:
    """A local folder holding the model at ``uri``: the path itself, or a cached copy.

    A remote folder is copied once per machine and URI; the copy is staged beside the cache
    entry and renamed into place, so a worker starting at the same time sees all or nothing.
    Export a changed model to a new URI (or clear the cache): the copy is not refreshed.
    """
    if "://" not in uri:
        if not os.path.isdir(uri):
            raise ValueError(f"the zero-shot model folder {uri} does not exist")
        return uri
    from model.backbone import cache_dir

    digest = hashlib.sha256(uri.rstrip("/").encode("utf-8")).hexdigest()[:12]
    target = os.path.join(cache_dir(), f"zero-shot-{digest}")
    if os.path.isfile(os.path.join(target, CONFIG_FILE)):
        return target
    os.makedirs(cache_dir(), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=cache_dir())
    try:
        try:
            _copy_folder(uri, staging, s3)
        except FileNotFoundError:
            raise ValueError(f"the zero-shot model folder {uri} does not exist") from None
        if not os.path.isfile(os.path.join(staging, CONFIG_FILE)):
            raise ValueError(
                f"{uri} has no {CONFIG_FILE}: it is not a zero-shot model folder "
                f"(write one with {EXPORT_COMMAND} and upload the whole folder)"
            )
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:  # another worker renamed its copy first
            if not os.path.isfile(os.path.join(target, CONFIG_FILE)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- images


def _shortest_side_crop(picture: Image.Image, size: int, resample: int) -> Image.Image:
    """torchvision's ``Resize(size)`` then ``CenterCrop(size)``, with the same rounding."""
    width, height = picture.size
    if width <= height:
        resized = (size, int(size * height / width))
    else:
        resized = (int(size * width / height), size)
    if resized != picture.size:
        picture = picture.resize(resized, resample)
    width, height = picture.size
    if (width, height) == (size, size):
        return picture
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return picture.crop((left, top, left + size, top + size))


def prepare_image(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One RGB ``uint8`` image as the encoder's float32 input (CHW or HWC), per ``spec``."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    resample = _INTERPOLATIONS[spec.interpolation]
    if spec.resize == "squash":
        if picture.size != (spec.size, spec.size):
            picture = picture.resize((spec.size, spec.size), resample)
    else:
        picture = _shortest_side_crop(picture, spec.size, resample)
    pixels = np.asarray(picture, dtype=np.float32) * np.float32(1.0 / 255.0)
    pixels = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


# ----------------------------------------------------------------------------- encoders


class _OnnxEncoder:
    """An ``.onnx`` image tower run by ONNX Runtime: one ``session.run`` per batch."""

    def __init__(self, path: str, intra_op_threads: int | None):
        from model.components import _session

        try:
            self._session = _session(path, intra_op_threads)
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise ValueError(
                f"the image encoder {path} does not load in ONNX Runtime: {exc}"
            ) from None
        self._input = self._session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._session.run(None, {self._input: batch})
        return np.asarray(outputs[0], dtype=np.float32)


class _SavedModelEncoder:
    """A TF2 SavedModel image tower; TensorFlow is imported only for this kind of encoder."""

    def __init__(self, path: str, intra_op_threads: int | None):
        import tensorflow as tf

        from model.backbone import _configure_threads

        _configure_threads(intra_op_threads)
        try:
            self._loaded = tf.saved_model.load(path)
        except Exception as exc:  # TensorFlow raises many types for a broken SavedModel
            raise ValueError(
                f"the image encoder {path} does not load as a SavedModel: {exc}"
            ) from None
        self._tf = tf
        self._signature = self._loaded.signatures.get("serving_default")
        if self._signature is None and not callable(self._loaded):
            raise ValueError(
                f"the image encoder {path} has no serving_default signature and cannot be called"
            )
        if self._signature is not None:
            inputs = self._signature.structured_input_signature[1]
            if len(inputs) != 1:
                raise ValueError(
                    f"the image encoder {path} must take one input; its serving_default "
                    f"signature takes {sorted(inputs)}"
                )
            self._input = next(iter(inputs))
            self._output = self._output_name(path, self._signature.structured_outputs)

    @staticmethod
    def _output_name(path: str, outputs: Mapping[str, Any]) -> str:
        if len(outputs) == 1:
            return next(iter(outputs))
        if "embedding" in outputs:
            return "embedding"
        raise ValueError(
            f"the image encoder {path} returns {sorted(outputs)}; it must return one output or "
            "one named 'embedding'"
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = self._tf.constant(batch, dtype=self._tf.float32)
        if self._signature is None:
            return np.asarray(self._loaded(tensor), dtype=np.float32)
        output = self._signature(**{self._input: tensor})[self._output]
        return np.asarray(output, dtype=np.float32)


def _open_encoder(folder: str, config: ModelConfig, intra_op_threads: int | None) -> ImageEncoder:
    path = os.path.join(folder, config.image_encoder)
    where = f"{os.path.join(folder, CONFIG_FILE)}: image_encoder"
    if config.image_encoder.endswith(".onnx"):
        if not os.path.isfile(path):
            raise ValueError(f"{where} names {path}, which is not a file of the folder")
        return _OnnxEncoder(path, intra_op_threads)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(
            f"{where} names {path}, which is neither an .onnx file nor a SavedModel folder "
            "(with saved_model.pb)"
        )
    return _SavedModelEncoder(path, intra_op_threads)


def _check_encoder_width(encoder: ImageEncoder, spec: InputSpec, width: int, name: str) -> None:
    """Runs the encoder once on a blank image: it must give one ``width``-wide embedding."""
    blank = prepare_image(np.zeros((spec.size, spec.size, 3), np.uint8), spec)[None]
    try:
        output = encoder(blank)
    except Exception as exc:  # whatever the runtime raises for a wrong input
        raise ValueError(
            f"the image encoder {name} fails on a {spec.layout} batch of shape {blank.shape}: "
            f"{exc}; check input.size and input.layout in {CONFIG_FILE}"
        ) from None
    if output.shape != (1, width):
        raise ValueError(
            f"the image encoder {name} gives embeddings of shape {output.shape[1:]} per image, "
            f"but {EMBEDDINGS_FILE} holds {width}-wide text embeddings: export both from the "
            f"same model ({EXPORT_COMMAND})"
        )


# ----------------------------------------------------------------------------- scoring


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # Through exp(-|z|) on both sides: exp of a large positive number would overflow.
    decay = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def _missing_prompts(table: PromptTable, known: set[str], embeddings_path: str) -> None:
    for entry in table.labels:
        for prompt in entry.prompts:
            if prompt not in known:
                raise ValueError(
                    f"the prompt {prompt!r} of label {entry.name!r} in {table.source} has no "
                    f"embedding in {embeddings_path}: re-run {EXPORT_COMMAND} with "
                    f"--prompts {table.source}"
                )
    for prompt in table.neutral:
        if prompt not in known:
            raise ValueError(
                f"the neutral prompt {prompt!r} in {table.source} has no embedding in "
                f"{embeddings_path}: re-run {EXPORT_COMMAND} with --prompts {table.source}"
            )


class _Scorer:
    """The scores of every label of a table from image embeddings (see the module docstring)."""

    def __init__(self, table: PromptTable, texts: np.ndarray, logit_scale: float):
        self.table = table
        self.texts = texts  # (P, D): the table's prompts, labels' first, in PromptTable.prompts()
        self.logit_scale = logit_scale
        index = {prompt: i for i, prompt in enumerate(table.prompts())}
        self._label_columns = [np.array([index[p] for p in e.prompts]) for e in table.labels]
        self._neutral_columns = np.array([index[p] for p in table.neutral])
        self._temperature = np.array([e.temperature for e in table.labels])
        self._offset = np.array([e.offset for e in table.labels])

    def label_similarity(self, cosines: np.ndarray) -> np.ndarray:
        """``(N, labels)``: each label's max (or mean) cosine over its prompts."""
        columns = []
        for entry, label_columns in zip(self.table.labels, self._label_columns):
            selected = cosines[:, label_columns]
            columns.append(selected.mean(axis=1) if entry.aggregate == "mean" else selected.max(1))
        return np.stack(columns, axis=1)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, labels)`` scores in [0, 1] for ``(N, D)`` image embeddings (any norm)."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        unit = embeddings / np.maximum(norms, 1e-12)
        cosines = unit @ self.texts.astype(np.float64).T
        neutral = cosines[:, self._neutral_columns].max(axis=1, keepdims=True)
        margin = self.logit_scale * (self.label_similarity(cosines) - neutral)
        return _sigmoid(self._temperature * margin - self._offset)


# ----------------------------------------------------------------------------- the component


def _model_slug(config: ModelConfig) -> str:
    name = f"{config.model}-{config.pretrained}" if config.pretrained else config.model
    # The version is joined into ModerationModelVersion with "/" and "+": keep neither.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def _version(config: ModelConfig, embeddings_path: str, table: PromptTable) -> str:
    digest = hashlib.sha256()
    with open(embeddings_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(table.canonical())
    return f"zero-shot-{_model_slug(config)}-{digest.hexdigest()[:12]}"


def _table_for(folder: str, prompts: str | None, s3: S3Settings | None) -> PromptTable:
    if prompts is not None:
        return load_prompt_table(prompts, s3=s3)
    own = os.path.join(folder, PROMPTS_FILE)
    return load_prompt_table(own if os.path.isfile(own) else None)


class ZeroShotClassifier:
    """A CLIP-like image encoder and a table of label and neutral prompts; ``predict`` gives
    ``{label: score}`` per image for every label of the table (see the module docstring)."""

    name = COMPONENT_NAME

    def __init__(
        self,
        config: ModelConfig,
        table: PromptTable,
        text_embeddings: np.ndarray,
        encoder: ImageEncoder,
        version: str,
    ):
        self.config = config
        self.table = table
        self.labels: tuple[str, ...] = tuple(entry.name for entry in table.labels)
        self.version = version
        self._encoder = encoder
        self._scorer = _Scorer(table, text_embeddings, config.logit_scale)

    @classmethod
    def load(
        cls,
        uri: str,
        *,
        prompts: str | None = None,
        s3: S3Settings | None = None,
        intra_op_threads: int | None = None,
    ) -> ZeroShotClassifier:
        """The model folder at ``uri`` (local, ``s3://``, ``gs://``), with the prompt table at
        ``prompts`` if given, else the folder's ``prompts.json``, else the shipped table.

        Everything is checked before the first image: ValueError says which file, label or
        prompt to fix.
        """
        folder = local_model_folder(uri, s3)
        config = read_config(folder)
        table = _table_for(folder, prompts, s3)
        embeddings_path = os.path.join(folder, EMBEDDINGS_FILE)
        known, embeddings = read_text_embeddings(embeddings_path)
        _missing_prompts(table, set(known), embeddings_path)
        row = {prompt: i for i, prompt in enumerate(known)}
        texts = embeddings[[row[prompt] for prompt in table.prompts()]]
        encoder = _open_encoder(folder, config, intra_op_threads)
        encoder_name = os.path.join(folder, config.image_encoder)
        _check_encoder_width(encoder, config.input, texts.shape[1], encoder_name)
        return cls(config, table, texts, encoder, _version(config, embeddings_path, table))

    @staticmethod
    def version_for(uri: str, *, prompts: str | None = None, s3: S3Settings | None = None) -> str:
        """The version a classifier loaded with these arguments reports, without its encoder."""
        folder = local_model_folder(uri, s3)
        table = _table_for(folder, prompts, s3)
        return _version(read_config(folder), os.path.join(folder, EMBEDDINGS_FILE), table)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, D)`` L2-normalised image embeddings, the encoder run once for the batch."""
        if not images:
            return np.zeros((0, self._scorer.texts.shape[1]), np.float32)
        batch = np.stack([prepare_image(image, self.config.input) for image in images])
        embeddings = self._encoder(batch)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return embeddings / np.maximum(norms, 1e-12)

    def scores_from_embeddings(self, embeddings: np.ndarray) -> list[dict[str, float]]:
        """``{label: score}`` per row of ``(N, D)`` image embeddings."""
        return [dict(zip(self.labels, map(float, row))) for row in self._scorer.scores(embeddings)]

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not images:
            return []
        return self.scores_from_embeddings(self.embed(images))
