"""Exports an OpenCLIP (or SigLIP) model as a zero-shot model folder the project can read.

    python -m training.export_zero_shot --model ViT-B-32 --pretrained laion2b_s34b_b79k \\
        --output DIR [--prompts FILE]

Run it where ``open_clip_torch``, ``torch``, ``onnx`` and ``onnxruntime`` are installed and the
internet can be reached: it downloads the weights. None of that is needed where the folder is
used. It writes to ``DIR``:

- ``image_encoder.onnx``: the visual tower (``torch.onnx.export``, dynamic batch axis), taking
  ``(N, 3, size, size)`` normalised pixels and returning unnormalised image embeddings;
- ``text_embeddings.npz``: the L2-normalised text embedding of every prompt of the table,
  label prompts and neutral prompts;
- ``prompts.json``: the prompt table used (the shipped ``model/zero_shot_prompts.json`` unless
  ``--prompts`` names another);
- ``zero_shot.json``: the model's name, the encoder's file, its input (size, layout, mean, std,
  resize mode, interpolation, read from the model's preprocessing) and its ``logit_scale``.

The folder is then loaded with ``ZeroShotClassifier.load`` and the ONNX encoder compared with
the torch one on two images, so a folder that does not load is never left behind silently.
Upload the whole folder (``aws s3 cp --recursive DIR s3://bucket/models/clip/``) and pass its
URI as the zero-shot model. The format is in ``model.zero_shot``'s docstring.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model.zero_shot import (
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    PROMPTS_FILE,
    SHIPPED_PROMPTS,
    SHIPPED_PROMPTS_PATH,
    InputSpec,
    ModelConfig,
    PromptTable,
    ZeroShotClassifier,
    load_prompt_table,
    prepare_image,
)
from pipeline.logs import configure_logging

__all__ = ["ENCODER_FILE", "build_parser", "input_spec_from", "write_model_folder", "main"]

# Named, not __name__: run with -m, the module is __main__, whose lines logging would hide.
_LOGGER = logging.getLogger("training.export_zero_shot")

ENCODER_FILE = "image_encoder.onnx"
# OpenAI CLIP's normalisation: open_clip's default when a model names none.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# The cosine between the ONNX and the torch embedding of the same image below which the export
# is taken as broken (float32 round-off alone stays far above it).
_MIN_AGREEMENT = 0.999


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.export_zero_shot",
        description="Exports an OpenCLIP/SigLIP model (its visual tower as ONNX and the text "
        "embeddings of a prompt table) as a zero-shot model folder for the moderation model.",
        epilog="Needs open_clip_torch, torch, onnx, onnxruntime and internet access (the weights "
        "are downloaded); "
        "the folder it writes needs none of them. Examples: --model ViT-B-32 --pretrained "
        "laion2b_s34b_b79k; --model ViT-B-16-SigLIP --pretrained webli; "
        "--model hf-hub:timm/ViT-B-16-SigLIP (no --pretrained). "
        "open_clip.list_pretrained() lists the names.",
    )
    parser.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-32")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="open_clip pretrained weights tag, e.g. laion2b_s34b_b79k (omit for hf-hub: models)",
    )
    parser.add_argument(
        "--output", required=True, help="the local folder to write (created if missing)"
    )
    parser.add_argument(
        "--prompts",
        default=None,
        help="the prompt table to embed, a local JSON file (default: the shipped "
        f"model/{SHIPPED_PROMPTS}); it is copied into the folder as {PROMPTS_FILE}",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=17,
        help="the ONNX opset of the exported image encoder (default 17)",
    )
    parser.add_argument(
        "--text_batch_size",
        type=int,
        default=64,
        help="prompts embedded per forward pass (default 64)",
    )
    parser.add_argument(
        "--cache_dir",
        default=None,
        help="where open_clip keeps downloaded weights (default: its own cache)",
    )
    return parser


def input_spec_from(preprocess: Mapping[str, Any]) -> InputSpec:
    """The folder's input spec from open_clip's preprocessing config of a model.

    ValueError for what the project's preprocessing cannot reproduce: a non-square input, or
    open_clip's ``longest`` resize mode (letterbox padding).
    """
    size = preprocess.get("size", 224)
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"the model takes {size} images; only square inputs are supported")
        size = size[0]
    resize_mode = preprocess.get("resize_mode", "shortest")
    if resize_mode not in ("shortest", "squash"):
        raise ValueError(
            f"the model's resize mode {resize_mode!r} is not supported (shortest or squash)"
        )
    interpolation = preprocess.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear"):
        _LOGGER.warning("interpolation %r is read as bicubic", interpolation)
        interpolation = "bicubic"
    mean = tuple(float(v) for v in preprocess.get("mean") or _OPENAI_MEAN)
    std = tuple(float(v) for v in preprocess.get("std") or _OPENAI_STD)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"the model normalises with mean {mean} and std {std}; RGB needs 3 each")
    return InputSpec(int(size), "NCHW", mean, std, resize_mode, interpolation)


def write_model_folder(
    output: str,
    *,
    config: ModelConfig,
    table_path: str,
    prompts: Sequence[str],
    embeddings: np.ndarray,
) -> None:
    """Writes ``zero_shot.json``, ``text_embeddings.npz`` and ``prompts.json`` into ``output``;
    the encoder named by ``config`` is put there by the caller."""
    import json

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape[0] != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {embeddings.shape[0]} embeddings")
    os.makedirs(output, exist_ok=True)
    np.savez(
        os.path.join(output, EMBEDDINGS_FILE),
        prompts=np.array(list(prompts), dtype=str),
        embeddings=embeddings,
    )
    target = os.path.join(output, PROMPTS_FILE)
    if os.path.abspath(table_path) != os.path.abspath(target):
        shutil.copyfile(table_path, target)
    with open(os.path.join(output, CONFIG_FILE), "w", encoding="utf-8") as handle:
        json.dump(config.as_json(), handle, indent=2)
        handle.write("\n")


def _preprocess_config(open_clip, model) -> dict[str, Any]:
    getter = getattr(open_clip, "get_model_preprocess_cfg", None)
    if getter is not None:
        return dict(getter(model))
    visual = model.visual
    return {
        "size": getattr(visual, "image_size", 224),
        "mean": getattr(visual, "image_mean", None),
        "std": getattr(visual, "image_std", None),
    }


def _export_visual(torch, model, spec: InputSpec, path: str, opset: int) -> None:
    import inspect

    class Visual(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, pixels):
            return self.clip.encode_image(pixels)

    dummy = torch.zeros(2, 3, spec.size, spec.size)
    options: dict[str, Any] = {}
    # The TorchScript exporter takes dynamic_axes as given; newer torch defaults to dynamo.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False
    # nn.MultiheadAttention's inference fast path is one fused operator that ONNX lacks.
    fastpath = getattr(getattr(torch.backends, "mha", None), "set_fastpath_enabled", None)
    if fastpath is not None:
        fastpath(False)
    with torch.no_grad():
        torch.onnx.export(
            Visual(model).eval(),
            (dummy,),
            path,
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            **options,
        )


def _text_embeddings(torch, model, tokenizer, prompts: Sequence[str], batch_size: int):
    rows = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(list(prompts[start : start + batch_size]))
            features = model.encode_text(tokens).float()
            rows.append(torch.nn.functional.normalize(features, dim=-1).cpu().numpy())
    return np.concatenate(rows).astype(np.float32)


def _check_export(torch, model, classifier: ZeroShotClassifier, spec: InputSpec) -> None:
    """The ONNX encoder must embed two images as the torch model does."""
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 320 * 240 * 3).reshape(240, 320, 3).astype(np.uint8)
    images = [gradient, rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)]
    exported = classifier.embed(images)
    batch = torch.from_numpy(np.stack([prepare_image(image, spec) for image in images]))
    with torch.no_grad():
        reference = torch.nn.functional.normalize(model.encode_image(batch).float(), dim=-1)
    agreement = (exported * reference.numpy()).sum(axis=1)
    if agreement.min() < _MIN_AGREEMENT:
        raise RuntimeError(
            f"the ONNX image encoder disagrees with torch (cosine {agreement.min():.4f}); try "
            "another --opset"
        )
    _LOGGER.info("ONNX and torch image embeddings agree (cosine >= %.5f)", agreement.min())


def _describe(classifier: ZeroShotClassifier) -> None:
    gray = np.full((224, 224, 3), 128, np.uint8)
    scores = classifier.predict([gray])[0]
    top = sorted(scores.items(), key=lambda item: -item[1])[:3]
    _LOGGER.info(
        "Loaded %s (%d labels); a plain gray image scores highest on %s",
        classifier.version,
        len(classifier.labels),
        ", ".join(f"{name} {score:.3f}" for name, score in top),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    table_path = args.prompts or SHIPPED_PROMPTS_PATH
    table: PromptTable = load_prompt_table(table_path)  # checked before any download
    import open_clip
    import torch

    _LOGGER.info("Loading %s (%s)", args.model, args.pretrained or "no pretrained tag")
    model, _, _ = open_clip.create_model_and_transforms(
        args.model, pretrained=args.pretrained, cache_dir=args.cache_dir
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    spec = input_spec_from(_preprocess_config(open_clip, model))
    os.makedirs(args.output, exist_ok=True)
    _LOGGER.info("Exporting the image encoder (%d px) to ONNX", spec.size)
    _export_visual(torch, model, spec, os.path.join(args.output, ENCODER_FILE), args.opset)
    prompts = table.prompts()
    _LOGGER.info("Embedding %d prompts of %s", len(prompts), table_path)
    embeddings = _text_embeddings(torch, model, tokenizer, prompts, args.text_batch_size)
    config = ModelConfig(
        model=args.model,
        image_encoder=ENCODER_FILE,
        input=spec,
        logit_scale=float(model.logit_scale.exp().item()),
        pretrained=args.pretrained or "",
    )
    write_model_folder(
        args.output, config=config, table_path=table_path, prompts=prompts, embeddings=embeddings
    )
    classifier = ZeroShotClassifier.load(args.output)
    _check_export(torch, model, classifier, spec)
    _describe(classifier)
    print(f"Wrote {args.output} ({classifier.version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
