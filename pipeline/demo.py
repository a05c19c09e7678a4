"""A demo run: sample photos that ship with scikit-image, a few bad lines, the real model.

``python -m pipeline.demo [--workdir demo]`` writes the images and ``manifest.jsonl`` under the
work folder, runs the job on them and prints where the outputs are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline.logs import configure_logging
from pipeline.run import report, run

__all__ = ["write_demo_manifest", "main"]

# Benign photos bundled in scikit-image's wheel (public domain / CC0, see its docstrings).
SAMPLE_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def sample_image_paths() -> list[str]:
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    return [os.path.join(folder, name) for name in SAMPLE_IMAGES]


def write_demo_manifest(workdir: str) -> str:
    """Writes ``workdir/manifest.jsonl``: sample images, a JPEG copy, and four bad lines."""
    from PIL import Image

    images = os.path.join(os.path.abspath(workdir), "images")
    os.makedirs(images, exist_ok=True)
    refs = sample_image_paths()
    jpeg = os.path.join(images, "chelsea.jpg")
    Image.open(refs[1]).convert("RGB").save(jpeg, quality=90)
    refs.append(jpeg)
    lines = [json.dumps({"source-ref": ref}) for ref in refs]
    lines += [
        '{"source-ref": "' + os.path.join(images, "missing.jpg") + '"}',  # no such file
        "this line is not JSON",
        '{"image": "s3://bucket/key.jpg"}',  # no source-ref
        '{"source-ref": "https://example.com/cat.jpg"}',  # unsupported scheme
    ]
    manifest = os.path.join(os.path.abspath(workdir), "manifest.jsonl")
    with open(manifest, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--workdir", default="demo", help="Folder for images, manifest and outputs. Default: demo."
    )
    args, beam_args = parser.parse_known_args(argv)
    configure_logging()
    manifest = write_demo_manifest(args.workdir)
    output = os.path.join(os.path.abspath(args.workdir), "output")
    outcome = run([f"--manifest={manifest}", f"--output={output}", *beam_args])
    print(f"Manifest: {manifest}")
    print(report(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
