"""``--allowed_source_prefixes`` of the training commands: images elsewhere are never read."""

from __future__ import annotations

import pytest
from PIL import Image

from storage.settings import S3Settings
from training.scoring import image_loader
from training.sources import allowed_prefixes, check_source_allowed
from transforms.records import ErrorCode, ImageProblem


def test_the_flag_is_a_comma_separated_list_or_anything():
    assert allowed_prefixes(None) is None
    assert allowed_prefixes("s3://a/, s3://b/x") == ("s3://a/", "s3://b/x")
    assert allowed_prefixes("") == ()  # nothing at all


@pytest.mark.parametrize("prefixes", [("s3://in-bucket/",), ()])
def test_a_source_outside_the_prefixes_is_access_denied(prefixes):
    for ref in ("/etc/passwd", "s3://other/x.jpg", "gs://in-bucket/x.jpg"):
        with pytest.raises(ImageProblem) as refused:
            check_source_allowed(ref, prefixes)
        assert refused.value.code == ErrorCode.ACCESS_DENIED
    check_source_allowed("/anywhere.jpg", None)


def test_an_adapter_training_reads_only_allowed_images(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (96, 96), (1, 2, 3)).save(path)
    assert image_loader(S3Settings(), 1)(str(path)).shape == (96, 96, 3)
    with pytest.raises(ImageProblem) as refused:
        image_loader(S3Settings(), 1, ("s3://in-bucket/",))(str(path))
    assert refused.value.code == ErrorCode.ACCESS_DENIED
