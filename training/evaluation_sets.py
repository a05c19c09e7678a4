"""Writes the labelled sets that can be built offline as ground-truth manifests to evaluate.

``python -m training.evaluation_sets --output eval-sets`` writes, with their images:

- ``photos.jsonl``: every whole sample photo of the content-types recipe (scikit-image,
  scikit-learn, matplotlib): benign, no label, no content type. The head was trained on crops
  of most of them, so this set measures false positives, not generalisation.
- ``heldout.jsonl``: the content-types recipe's held-out split (game art, emoji, icons, drawn
  cartoons, clip art, sketches, charts and diagrams, redrawn and cropped held-out photos): no
  moderation label, and ``Animated`` / ``Illustrated`` / neither as the recipe says. (The
  recipe's unseen-sources set is measured by ``python -m training.train_content_types``.)

Every image is benign: positive examples for moderation labels cannot be had here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from PIL import Image

from training import content_types_data as recipe
from training.content_types_sources import photo, photo_sources

__all__ = ["write_sets", "main"]

_CONTENT_TYPE = {recipe.ANIMATED: "Animated", recipe.ILLUSTRATED: "Illustrated"}


def _line(path: str, content_type: str | None) -> str:
    truth: dict = {"ModerationLabels": [], "ContentTypes": []}
    if content_type:
        truth["ContentTypes"] = [{"Name": content_type}]
    return json.dumps({"source-ref": path, "content-moderation-groundtruth": truth})


def write_sets(output: str, seed: int = 0) -> dict[str, int]:
    """Writes the manifests and images under ``output``; returns lines per manifest."""
    images = os.path.join(output, "images")
    os.makedirs(images, exist_ok=True)
    written = {}
    with open(os.path.join(output, "photos.jsonl"), "w", encoding="utf-8") as manifest:
        count = 0
        for _source, names in photo_sources():
            for name in names:
                path = os.path.join(images, f"photo-{count:03d}.png")
                Image.fromarray(photo(name)).save(path)
                manifest.write(_line(os.path.relpath(path, output), None) + "\n")
                count += 1
        written["photos.jsonl"] = count
    with open(os.path.join(output, "heldout.jsonl"), "w", encoding="utf-8") as manifest:
        count = 0
        for example in recipe.iter_examples(recipe.HELD_OUT, seed):
            path = os.path.join(images, f"heldout-{count:04d}.png")
            Image.fromarray(example.image).save(path)
            manifest.write(
                _line(os.path.relpath(path, output), _CONTENT_TYPE.get(example.label)) + "\n"
            )
            count += 1
        written["heldout.jsonl"] = count
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation_sets", description=__doc__)
    parser.add_argument("--output", default="eval-sets", help="Folder. Default: eval-sets.")
    parser.add_argument("--seed", type=int, default=0, help="Recipe seed. Default: 0.")
    args = parser.parse_args(argv)
    for name, lines in write_sets(args.output, args.seed).items():
        print(f"{os.path.join(args.output, name)}: {lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
