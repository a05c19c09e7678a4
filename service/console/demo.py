"""The console with no AWS account: ``python -m service.console.demo [--port 8642]``.

One command gives a newcomer a working console. It starts an embedded S3-protocol server (moto,
in memory, on 127.0.0.1), uses fake AWS credentials for itself and the job processes it starts
(nothing can reach AWS), creates the bucket ``moderation-demo`` holding benign sample images and
``samples/manifest.jsonl`` that lists them, makes a fresh access key pair to sign in with, and
serves the API and the console (``service.server``) over that S3 until Ctrl-C. It prints the
console's URL, the key pair, the manifest to start a job from, and how to point boto3 and the
AWS CLI at both servers.

The embedded S3 lives in memory, so every start begins afresh: the job registry
(``WORKDIR/jobs.sqlite``) and the thumbnail cache of the previous start are removed.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import secrets
import sys
from collections.abc import Sequence

from pipeline.logs import configure_logging

__all__ = [
    "BUCKET",
    "FAKE_CREDENTIALS",
    "MANIFEST_KEY",
    "main",
    "sample_images",
    "upload_samples",
]

_LOGGER = logging.getLogger(__name__)

BUCKET = "moderation-demo"
SAMPLES_PREFIX = "samples"
MANIFEST_KEY = f"{SAMPLES_PREFIX}/manifest.jsonl"
ACCESS_KEY_ID = "AKIDCONSOLEDEMO0001"
REGION = "us-east-1"

# What the demo and its child processes sign S3 and KMS requests with (moto accepts any).
# No profile, config file or instance metadata may supply real credentials.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSET = ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")

# Besides pipeline.demo's sample photos: another benign photo from scikit-image's wheel.
_MORE_PHOTOS = ("camera.png",)
# OpenMoji drawings (CC-BY-SA-4.0), when the test or train extra installed them.
_EMOJI = {
    "emoji-grinning-face": "1F600.svg",
    "emoji-cat-face": "1F431.svg",
    "emoji-pizza": "1F355.svg",
    "emoji-tree": "1F333.svg",
}
# The thumbnail cache's entries (service.console.images); nothing else there is removed.
_THUMBNAIL_ENTRY = re.compile(r"[0-9a-f]{64}\.jpg")


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def sample_images() -> dict[str, bytes]:
    """``{"astronaut.jpg": JPEG bytes, ...}``: scikit-image's benign photos (those of
    ``pipeline.demo``), and a few emoji drawings where OpenMoji and resvg are installed."""
    from PIL import Image

    from pipeline.demo import sample_image_paths

    paths = sample_image_paths()
    folder = os.path.dirname(paths[0])
    paths += [os.path.join(folder, name) for name in _MORE_PHOTOS]
    images = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        with Image.open(path) as image:
            images[f"{name}.jpg"] = _jpeg(image)
    try:
        from training.content_types_drawing import emoji_scene

        for seed, (name, filename) in enumerate(_EMOJI.items()):
            images[f"{name}.jpg"] = _jpeg(Image.fromarray(emoji_scene(filename, seed)))
    except ImportError as exc:
        _LOGGER.info("No emoji drawings among the samples (%s); photos only", exc)
    return images


def upload_samples(s3, bucket: str = BUCKET) -> str:
    """Creates ``bucket`` with the sample images under ``samples/`` and the manifest listing
    them; returns the manifest's ``s3://`` URI."""
    import json

    s3.create_bucket(Bucket=bucket)
    lines = []
    for name, data in sample_images().items():
        key = f"{SAMPLES_PREFIX}/{name}"
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
        lines.append(json.dumps({"source-ref": f"s3://{bucket}/{key}"}))
    manifest = "".join(f"{line}\n" for line in lines).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=MANIFEST_KEY, Body=manifest, ContentType="application/jsonl")
    return f"s3://{bucket}/{MANIFEST_KEY}"


def _use_fake_credentials() -> None:
    os.environ.update(FAKE_CREDENTIALS)
    for name in _UNSET:
        os.environ.pop(name, None)


def _start_afresh(workdir: str) -> str:
    """Creates ``workdir``; removes the previous start's registry and thumbnails. Returns the
    registry's path."""
    os.makedirs(workdir, exist_ok=True)
    registry = os.path.join(workdir, "jobs.sqlite")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(registry + suffix):
            os.remove(registry + suffix)
    thumbnails = os.path.join(workdir, "thumbnails")
    if os.path.isdir(thumbnails):
        for name in os.listdir(thumbnails):
            if _THUMBNAIL_ENTRY.fullmatch(name):
                os.remove(os.path.join(thumbnails, name))
    return registry


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _banner(console: str, s3: str, manifest: str, key_id: str, secret: str) -> str:
    bucket, _, key = manifest.removeprefix("s3://").partition("/")
    return f"""
The moderation console is ready (embedded S3, fake credentials, nothing reaches AWS).

  Console:            {console}/console/
  Access key id:      {key_id}
  Secret access key:  {secret}
  Sample manifest:    {manifest}
  S3 endpoint:        {s3}

Sign in with the key pair, then start a job from the sample manifest; outputs may go anywhere
in s3://{bucket}/.

The API server answers boto3 and the AWS CLI too (the embedded S3 accepts the same keys):

  export AWS_ACCESS_KEY_ID={key_id} AWS_SECRET_ACCESS_KEY={secret}
  export AWS_DEFAULT_REGION={REGION}
  aws s3 ls --endpoint-url {s3} s3://{bucket}/{SAMPLES_PREFIX}/
  aws rekognition start-media-analysis-job --endpoint-url {console} \\
    --operations-config "DetectModerationLabels={{MinConfidence=50}}" \\
    --input "S3Object={{Bucket={bucket},Name={key}}}" \\
    --output-config "S3Bucket={bucket},S3KeyPrefix=results"
  aws rekognition list-media-analysis-jobs --endpoint-url {console}

  boto3.client("rekognition", endpoint_url="{console}", region_name="{REGION}")
  boto3.client("s3", endpoint_url="{s3}", region_name="{REGION}")

Press Ctrl-C to stop (the embedded S3's contents go with it).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.console.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address the console listens on. Default: 127.0.0.1."
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8642,
        help="Port of the console and API; 0 picks a free one (printed). Default: 8642.",
    )
    parser.add_argument(
        "--workdir",
        default="console-demo",
        help="Folder of the job registry and thumbnail cache, both fresh at every start. "
        "Default: console-demo (in the current directory).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    _use_fake_credentials()
    try:
        return _run(args.host, args.port, args.workdir)
    except KeyboardInterrupt:  # before serving began
        return 130


def _run(host: str, port: int, workdir: str) -> int:
    """Serves until Ctrl-C; 0 then, 2 where the server could not be built."""
    import boto3
    from moto.server import ThreadedMotoServer

    from service.auth import ACCESS_KEYS_ENV_VAR
    from service.server import build_server

    registry = _start_afresh(os.path.abspath(workdir))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        s3_endpoint = _url(*moto.get_host_and_port())
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
        manifest = upload_samples(s3)
        secret = secrets.token_urlsafe(30)
        os.environ[ACCESS_KEYS_ENV_VAR] = f"{ACCESS_KEY_ID}:{secret}"
        try:
            server = build_server(
                [
                    f"--host={host}",
                    f"--port={port}",
                    f"--registry={registry}",
                    f"--allowed_locations={BUCKET}",
                    f"--console_storage={BUCKET}/console",
                    f"--s3_endpoint_url={s3_endpoint}",
                    f"--s3_region_name={REGION}",
                    f"--kms_endpoint_url={s3_endpoint}",
                ]
            )
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            # Read once by build_server; the job processes need not inherit the secret.
            os.environ.pop(ACCESS_KEYS_ENV_VAR, None)
        url = _url(*server.server_address[:2])
        print(_banner(url, s3_endpoint, manifest, ACCESS_KEY_ID, secret), flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
    finally:
        moto.stop()
    return 0


if __name__ == "__main__":
    # As in service.server: main() runs from service.console.demo, so its log lines are the
    # service package's (INFO) rather than __main__'s.
    from service.console.demo import main as _main

    sys.exit(_main())
