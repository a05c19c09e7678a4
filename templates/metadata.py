"""Flex Template metadata: the job's own flags as Dataflow template parameters.

``python -m templates.metadata > templates/metadata.json`` writes the file that
``gcloud dataflow flex-template build --metadata-file`` reads. Every flag of
``pipeline.options`` becomes a parameter of the same name with the flag's help as its
``helpText``; only ``manifest`` and ``output`` are required. Flags with a closed form (numbers,
enumerations, URIs, AWS identifiers) get ``regexes`` that Dataflow checks before it starts the
launcher; ``validate_options`` still has the last word. tests/test_templates.py checks that the
committed file equals what this module generates, so the two cannot drift apart.

Dataflow workers cannot read the launcher's disk, so the manifest, the output and the adapter
must be ``s3://`` or ``gs://`` URIs here, although the flags also take local paths elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable

from model.moderation_model import COMPONENT_CHOICES
from pipeline.options import moderation_parser
from transforms.manifest import SUPPORTED_SCHEMES

__all__ = ["LABELS", "REGEXES", "REQUIRED", "flag_actions", "metadata", "render"]

NAME = "beam-moderation"
REQUIRED = ("manifest", "output")

# An object: a bucket and a key.
_REMOTE_OBJECT = r"^(s3|gs)://[^/]+/.+$"
# A folder or prefix: a bucket, optionally followed by a path.
_REMOTE_FOLDER = r"^(s3|gs)://[^/]+(/.*)?$"


_PROJECT_VERSION_ARN = (
    r"^arn:[a-z\d-]+:rekognition:[a-z\d-]+:\d{12}:project/[a-zA-Z0-9_.\-]{1,255}"
    r"/version/[a-zA-Z0-9_.\-]{1,255}/[0-9]+$"
)


def _one_of(choices: Iterable[str]) -> str:
    return "^(" + "|".join(re.escape(choice) for choice in choices) + ")$"


def _list_of(choices: Iterable[str]) -> str:
    item = "(" + "|".join(re.escape(choice) for choice in choices) + ")"
    return f"^{item}(,{item})*$"


# The integer ranges are those of ``validate_options``; the tests compare the two value by value.
REGEXES: dict[str, list[str]] = {
    "manifest": [_REMOTE_OBJECT],
    "output": [_REMOTE_FOLDER],
    # botocore's Rekognition KmsKeyId pattern and its 2048-character maximum (key id, key ARN,
    # alias or alias ARN).
    "output_kms_key_id": [r"^[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,2047}$"],
    # 0 to 100.
    "min_confidence": [r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$"],
    "components": [_one_of(COMPONENT_CHOICES)],
    "adapter": [_REMOTE_FOLDER],
    "zero_shot_model": [_REMOTE_FOLDER],
    "zero_shot_prompts": [_REMOTE_OBJECT],
    # botocore's Rekognition model: the ProjectVersionArn pattern.
    "project_version": [_PROJECT_VERSION_ARN],
    # A model folder, or a ProjectVersion ARN.
    "custom_labels_model": [f"{_REMOTE_FOLDER}|{_PROJECT_VERSION_ARN}"],
    "rekognition_endpoint_url": [r"^https?://[^/\s]+(/\S*)?$"],
    "source_schemes": [_list_of(SUPPORTED_SCHEMES)],
    # 1 to 256.
    "fetch_concurrency": [r"^(25[0-6]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]?)$"],
    # 1 to 1024.
    "inference_batch_size": [r"^(102[0-4]|10[01][0-9]|[1-9][0-9]{0,2})$"],
    # 0 to 1024.
    "inference_threads": [r"^(102[0-4]|10[01][0-9]|[1-9][0-9]{0,2}|0)$"],
    # Any number; negative turns progress lines off.
    "progress_interval_secs": [r"^-?[0-9]+(\.[0-9]+)?$"],
}

LABELS: dict[str, str] = {
    "manifest": "Manifest (JSON Lines, s3:// or gs://)",
    "output": "Output folder (s3:// or gs://)",
    "output_kms_key_id": "KMS key for the outputs on S3",
    "min_confidence": "Minimum confidence (0-100)",
    "components": "Model components",
    "backbone": "TensorFlow image backbone",
    "adapter": "Adapter folder (s3:// or gs://)",
    "zero_shot_model": "Zero-shot model folder (s3:// or gs://)",
    "zero_shot_prompts": "Zero-shot prompt table (s3:// or gs://)",
    "project_version": "Adapter ProjectVersion ARN",
    "custom_labels_model": "Custom Labels model (ARN, or folder on s3:// or gs://)",
    "rekognition_endpoint_url": "Rekognition API endpoint (for a model ARN)",
    "source_schemes": "Accepted kinds of source-ref",
    "allowed_source_prefixes": "Allowed source-ref prefixes",
    "fetch_concurrency": "Images fetched at once per worker",
    "inference_batch_size": "Largest inference batch",
    "inference_threads": "CPU threads per model component",
    "progress_interval_secs": "Seconds between progress lines",
}


def flag_actions() -> list[argparse.Action]:
    """The job's own flags (``pipeline.options``), in the order ``--help`` lists them."""
    return [
        action
        for action in moderation_parser()._actions
        if not isinstance(action, argparse._HelpAction)
    ]


def _parameter(action: argparse.Action) -> dict:
    name = action.dest
    parameter = {
        "name": name,
        "label": LABELS.get(name) or name.replace("_", " ").capitalize(),
        "helpText": action.help,
        "isOptional": name not in REQUIRED,
        "paramType": "TEXT",
    }
    if name in REGEXES:
        parameter["regexes"] = REGEXES[name]
    return parameter


def metadata() -> dict:
    """The Flex Template metadata document."""
    parser = moderation_parser()
    unknown = set(REGEXES) - {action.dest for action in flag_actions()}
    if unknown:
        raise ValueError(f"regexes for flags that do not exist: {sorted(unknown)}")
    return {
        "name": NAME,
        "description": parser.description,
        "parameters": [_parameter(action) for action in flag_actions()],
    }


def render() -> str:
    """``metadata()`` as the text of templates/metadata.json."""
    return json.dumps(metadata(), indent=2) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
