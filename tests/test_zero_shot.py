"""The zero-shot component on a tiny CLIP-like model that the tests build with planted answers.

The encoder averages the image's brightness over an 8 x 8 grid of cells and projects the cells
with a matrix whose row ``i`` is the text direction of label ``i`` (plus a share of the neutral
direction and random noise): a bright patch in cell ``i`` on a black image embeds along label
``i``, and an evenly lit image along the neutral prompts. So the expected answer is known.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from model.label_map import ZERO_SHOT_RULES, label_evidence, labels_from_evidence
from model.taxonomy import TAXONOMY, ancestors
from model.zero_shot import (
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    PROMPTS_FILE,
    SHIPPED_PROMPTS_PATH,
    InputSpec,
    ModelConfig,
    ZeroShotClassifier,
    _copy_with_filesystems,
    load_prompt_table,
    prepare_image,
)
from training.export_zero_shot import ENCODER_FILE, input_spec_from, write_model_folder

SIZE = 64  # 8 x 8 cells of 8 x 8 pixels
GRID = 8
CELL = SIZE // GRID
WIDTH = 128  # embedding width
NEUTRAL_AXIS = WIDTH - 1
NOISE_AXES = slice(60, 120)
NEUTRAL_SHARE = 0.5  # of each label cell's row
LOGIT_SCALE = 20.0
# Pixels in [0, 1] minus 0.2, over 0.5: black is negative, so the encoder's ReLU drops it.
SPEC = InputSpec(SIZE, "NCHW", (0.2, 0.2, 0.2), (0.5, 0.5, 0.5), "shortest", "bicubic")
LABELS = list(TAXONOMY)


# ----------------------------------------------------------------------------- the tiny model


def _directions() -> np.ndarray:
    """``WIDTH`` orthonormal directions (columns), random but fixed."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(WIDTH, WIDTH)))
    return q.astype(np.float32)


def _noisy(direction: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    noise = _directions()[:, NOISE_AXES] @ rng.normal(size=60)
    vector = direction + amount * noise / np.linalg.norm(noise)
    return vector / np.linalg.norm(vector)


def _text_embeddings(table) -> tuple[list[str], np.ndarray]:
    """Every prompt of ``table``: a label's prompts near its own direction (label ``i`` of the
    taxonomy takes direction ``i``), the neutral prompts near the neutral direction."""
    q, rng = _directions(), np.random.default_rng(11)
    prompts, rows = [], []
    for entry in table.labels:
        for prompt in entry.prompts:
            prompts.append(prompt)
            rows.append(_noisy(q[:, LABELS.index(entry.name)], rng, 0.3))
    for prompt in table.neutral:
        prompts.append(prompt)
        rows.append(_noisy(q[:, NEUTRAL_AXIS], rng, 0.3))
    return prompts, np.stack(rows).astype(np.float32)


def _projection(width: int = WIDTH) -> np.ndarray:
    """``(cells, width)``: cell ``i`` projects onto label ``i``'s direction; spare cells onto the
    neutral one; a little random noise everywhere."""
    q, rng = _directions(), np.random.default_rng(3)
    rows = []
    for cell in range(GRID * GRID):
        if cell < len(LABELS):
            rows.append(q[:, cell] + NEUTRAL_SHARE * q[:, NEUTRAL_AXIS])
        else:
            rows.append(q[:, NEUTRAL_AXIS])
    matrix = np.stack(rows) + 0.01 * rng.normal(size=(GRID * GRID, WIDTH))
    return matrix[:, :width].astype(np.float32)


def _onnx_encoder(path: str, width: int = WIDTH) -> None:
    """NCHW pixels -> mean over channels -> 8 x 8 average pool -> ReLU -> cells @ projection."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["gray"], axes=[1], keepdims=1),
            helper.make_node(
                "AveragePool", ["gray"], ["cells"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]
            ),
            helper.make_node("Relu", ["cells"], ["lit"]),
            helper.make_node("Flatten", ["lit"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "projection"], ["embedding"]),
        ],
        "tiny_clip_visual",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(_projection(width), "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _savedmodel_encoder(path: str) -> None:
    """The same encoder in TensorFlow, taking NHWC pixels."""
    import tensorflow as tf

    projection = tf.constant(_projection())

    class Visual(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def __call__(self, pixels):
            gray = tf.reduce_mean(pixels, axis=-1, keepdims=True)
            cells = tf.nn.relu(tf.nn.avg_pool2d(gray, CELL, CELL, "VALID"))
            return tf.matmul(tf.reshape(cells, [-1, GRID * GRID]), projection)

    visual = Visual()
    tf.saved_model.save(visual, path, signatures={"serving_default": visual.__call__})


def _write_folder(folder, *, table_path=SHIPPED_PROMPTS_PATH, encoder="onnx", **overrides):
    """A model folder with the tiny encoder and the text embeddings of the table's prompts."""
    os.makedirs(folder, exist_ok=True)
    spec = SPEC
    if encoder == "onnx":
        name = ENCODER_FILE
        _onnx_encoder(os.path.join(folder, name), overrides.pop("width", WIDTH))
    else:
        name = "image_encoder"
        _savedmodel_encoder(os.path.join(folder, name))
        spec = spec._replace(layout="NHWC")
    prompts, embeddings = _text_embeddings(load_prompt_table(table_path))
    config = ModelConfig("tiny/clip", name, spec, LOGIT_SCALE, pretrained="planted")
    write_model_folder(
        str(folder), config=config, table_path=table_path, prompts=prompts, embeddings=embeddings
    )
    return str(folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return _write_folder(tmp_path_factory.mktemp("zero-shot") / "model")


@pytest.fixture(scope="module")
def classifier(folder) -> ZeroShotClassifier:
    return ZeroShotClassifier.load(folder)


@pytest.fixture
def model_copy(folder, tmp_path):
    """A fresh copy of the model folder, to break."""
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


# ----------------------------------------------------------------------------- images


def _hit(index: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """A black image, bright in cell ``index``: it embeds along label ``index``'s direction.

    At another square size the patch is scaled with it (the image is resized to ``SIZE``)."""
    image = np.zeros((height, width, 3), np.uint8)
    row, column = divmod(index, GRID)
    sy, sx = height / SIZE, width / SIZE
    image[
        round(row * CELL * sy) : round((row + 1) * CELL * sy),
        round(column * CELL * sx) : round((column + 1) * CELL * sx),
    ] = 255
    return image


def _gray(height: int = 300, width: int = 400) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def _read(path) -> str:
    return pathlib.Path(path).read_text(encoding="utf-8")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _evidence(scores: dict[str, float]) -> dict[str, float]:
    """Each label's evidence (0-100) from this component's outputs, through the label table."""
    return label_evidence({f"zero_shot/{name}": score for name, score in scores.items()})


# ----------------------------------------------------------------------------- loading, scores


def test_a_local_folder_loads_with_the_shipped_table(classifier, folder):
    assert classifier.name == "zero_shot"
    assert classifier.labels == tuple(TAXONOMY)
    assert classifier.version.startswith("zero-shot-tiny-clip-planted-")
    assert len(classifier.version.rsplit("-", 1)[1]) == 12
    assert ZeroShotClassifier.version_for(folder) == classifier.version
    assert classifier.predict([]) == []


def test_every_label_is_reachable_and_brings_its_parents(classifier):
    images = [_hit(i) for i in range(len(LABELS))]
    for name, scores in zip(LABELS, classifier.predict(images)):
        assert set(scores) == set(TAXONOMY)
        assert all(0.0 <= s <= 1.0 for s in scores.values())
        assert max(scores, key=scores.get) == name
        assert scores[name] > 0.9
        labels = {
            entry["Name"]: entry["Confidence"]
            for entry in labels_from_evidence(_evidence(scores), 50.0)
        }
        for name_or_parent in ancestors(name):
            assert labels[name_or_parent] >= labels[name]


@pytest.mark.parametrize(
    "image",
    [_gray(), np.zeros((200, 200, 3), np.uint8), np.full((90, 500, 3), 255, np.uint8)],
    ids=["gray", "black", "white"],
)
def test_a_neutral_looking_image_scores_under_one_half_on_every_label(classifier, image):
    (scores,) = classifier.predict([image])
    assert max(scores.values()) < 0.5
    assert labels_from_evidence(_evidence(scores), 50.0) == []


def test_a_batch_equals_its_images_one_by_one(classifier):
    rng = np.random.default_rng(0)
    images = [
        _hit(LABELS.index("Gambling"), 512, 512),
        _hit(LABELS.index("Smoking"), 96, 64),
        _gray(80, 120),
        rng.integers(0, 256, (301, 512, 3), dtype=np.uint8),
        rng.integers(0, 256, (512, 97, 3), dtype=np.uint8),
    ]
    batch = classifier.predict(images)
    for image, together in zip(images, batch):
        (alone,) = classifier.predict([image])
        assert alone.keys() == together.keys()
        np.testing.assert_allclose(list(alone.values()), list(together.values()), atol=1e-6)
    assert max(batch[0], key=batch[0].get) == "Gambling"


def test_image_embeddings_are_unit_vectors(classifier):
    embeddings = classifier.embed([_hit(0), _gray(), np.zeros((70, 70, 3), np.uint8)])
    assert embeddings.shape == (3, WIDTH) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings[:2], axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- calibration


def _table(tmp_path, labels: dict, **defaults) -> str:
    shipped = json.loads(_read(SHIPPED_PROMPTS_PATH))
    document = {"neutral": shipped["neutral"], "labels": {}}
    if defaults:
        document["defaults"] = defaults
    for name, calibration in labels.items():
        document["labels"][name] = {"prompts": shipped["labels"][name]["prompts"], **calibration}
    path = tmp_path / f"table-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def _cosines(folder: str, classifier: ZeroShotClassifier, image: np.ndarray, name: str):
    """The image's cosines with ``name``'s prompts and with the neutral prompts, by hand."""
    with np.load(os.path.join(folder, EMBEDDINGS_FILE)) as saved:
        rows = dict(zip(saved["prompts"].tolist(), saved["embeddings"]))
    shipped = load_prompt_table()
    entry = next(e for e in shipped.labels if e.name == name)
    (v,) = classifier.embed([image]).astype(np.float64)
    cos = {p: float(v @ rows[p] / np.linalg.norm(rows[p])) for p in rows}
    return [cos[p] for p in entry.prompts], [cos[p] for p in shipped.neutral]


@pytest.mark.parametrize(
    "calibration",
    [
        {},
        {"temperature": 0.5, "offset": 0.0},
        {"temperature": 2.0, "offset": 5.0},
        {"temperature": 0.0, "offset": 1.0},
        {"temperature": 0.05, "offset": -1.0, "aggregate": "mean"},
    ],
)
@pytest.mark.parametrize("image_of", ["Gambling", "Smoking"])
def test_the_score_follows_the_documented_formula(folder, tmp_path, calibration, image_of):
    table = _table(tmp_path, {"Gambling": calibration, "Smoking": {}})
    classifier = ZeroShotClassifier.load(folder, prompts=table)
    assert classifier.labels == ("Gambling", "Smoking")
    image = _hit(LABELS.index(image_of))
    label_cos, neutral_cos = _cosines(folder, classifier, image, "Gambling")
    similarity = np.mean(label_cos) if calibration.get("aggregate") == "mean" else max(label_cos)
    temperature = calibration.get("temperature", 1.0)
    offset = calibration.get("offset", 2.0)
    expected = _sigmoid(temperature * LOGIT_SCALE * (similarity - max(neutral_cos)) - offset)
    (scores,) = classifier.predict([image])
    assert scores["Gambling"] == pytest.approx(expected, abs=1e-5)


def test_offset_and_temperature_move_the_score_as_documented(folder, tmp_path):
    image = _hit(LABELS.index("Gambling"))

    def score(**calibration) -> float:
        table = _table(tmp_path, {"Gambling": calibration})
        return ZeroShotClassifier.load(folder, prompts=table).predict([image])[0]["Gambling"]

    # The image matches Gambling better than any neutral prompt: a positive margin.
    assert score(offset=0.0) > score(offset=2.0) > score(offset=20.0)
    assert score(temperature=2.0, offset=0.0) > score(temperature=1.0, offset=0.0) > 0.5
    assert score(temperature=0.0, offset=3.0) == pytest.approx(_sigmoid(-3.0))
    # The offset is the margin (in logits) at which the label reaches one half.
    classifier = ZeroShotClassifier.load(folder, prompts=_table(tmp_path, {"Gambling": {}}))
    label_cos, neutral_cos = _cosines(folder, classifier, image, "Gambling")
    margin = LOGIT_SCALE * (max(label_cos) - max(neutral_cos))
    assert score(offset=margin) == pytest.approx(0.5, abs=1e-5)


def test_table_defaults_apply_to_labels_without_their_own(folder, tmp_path):
    image = _hit(LABELS.index("Smoking"))
    table = _table(tmp_path, {"Smoking": {}, "Gambling": {"offset": 2.0}}, offset=30.0)
    (scores,) = ZeroShotClassifier.load(folder, prompts=table).predict([image])
    assert scores["Smoking"] < 0.5  # the table's default offset, not the built-in one
    reference = _table(tmp_path, {"Smoking": {"offset": 30.0}})
    (expected,) = ZeroShotClassifier.load(folder, prompts=reference).predict([image])
    assert scores["Smoking"] == pytest.approx(expected["Smoking"])


def test_the_version_follows_the_prompt_table(folder, tmp_path, classifier):
    calibrated = ZeroShotClassifier.load(folder, prompts=_table(tmp_path, {"Gambling": {}}))
    recalibrated = ZeroShotClassifier.load(
        folder, prompts=_table(tmp_path, {"Gambling": {"offset": 3.0}})
    )
    assert len({classifier.version, calibrated.version, recalibrated.version}) == 3
    assert ZeroShotClassifier.load(folder).version == classifier.version


def test_the_folders_own_table_is_used_and_an_argument_overrides_it(model_copy, tmp_path):
    (model_copy / PROMPTS_FILE).write_text(
        _read(_table(tmp_path, {"Weapons": {}, "Pills": {}})),
        encoding="utf-8",
    )
    assert ZeroShotClassifier.load(str(model_copy)).labels == ("Weapons", "Pills")
    override = _table(tmp_path, {"Smoking": {}})
    assert ZeroShotClassifier.load(str(model_copy), prompts=override).labels == ("Smoking",)
    os.unlink(model_copy / PROMPTS_FILE)
    assert ZeroShotClassifier.load(str(model_copy)).labels == tuple(TAXONOMY)


# ----------------------------------------------------------------------------- other sources


@pytest.mark.slow
def test_a_folder_in_s3_is_copied_once_into_the_cache(
    folder, classifier, s3, moto_server, tmp_path, monkeypatch
):
    from storage.settings import S3Settings

    monkeypatch.setenv("BEAM_MODERATION_CACHE", str(tmp_path / "cache"))
    s3.create_bucket(Bucket="models")
    for name in os.listdir(folder):
        s3.upload_file(os.path.join(folder, name), "models", f"zero-shot/tiny/{name}")
    s3.put_object(
        Bucket="models",
        Key="tables/two.json",
        Body=_read(_table(tmp_path, {"Gambling": {}, "Smoking": {}})).encode("utf-8"),
    )
    settings = S3Settings(
        endpoint_url=moto_server, access_key_id="testing", secret_access_key="testing"
    )
    remote = ZeroShotClassifier.load("s3://models/zero-shot/tiny", s3=settings)
    images = [_hit(LABELS.index("Weapons")), _gray()]
    assert remote.version == classifier.version
    for got, expected in zip(remote.predict(images), classifier.predict(images)):
        assert got == pytest.approx(expected)
    (cached,) = [p for p in os.listdir(tmp_path / "cache") if p.startswith("zero-shot-")]
    assert sorted(os.listdir(tmp_path / "cache" / cached)) == sorted(os.listdir(folder))
    # Served from the cache from now on, the prompt table read from S3.
    for name in os.listdir(folder):
        s3.delete_object(Bucket="models", Key=f"zero-shot/tiny/{name}")
    again = ZeroShotClassifier.load(
        "s3://models/zero-shot/tiny", prompts="s3://models/tables/two.json", s3=settings
    )
    assert again.labels == ("Gambling", "Smoking")
    with pytest.raises(ValueError, match="s3://models/zero-shot/missing does not exist"):
        ZeroShotClassifier.load("s3://models/zero-shot/missing", s3=settings)
    s3.put_object(Bucket="models", Key="not-a-model/readme.txt", Body=b"hello")
    with pytest.raises(ValueError, match="s3://models/not-a-model has no zero_shot.json"):
        ZeroShotClassifier.load("s3://models/not-a-model", s3=settings)
    assert [p for p in os.listdir(tmp_path / "cache") if p.startswith(".")] == []


def test_other_filesystems_are_copied_file_by_file(folder, tmp_path):
    (tmp_path / "source").mkdir()
    shutil.copytree(folder, tmp_path / "source" / "model")
    (tmp_path / "source" / "model" / "nested").mkdir()
    (tmp_path / "source" / "model" / "nested" / "extra.gz").write_bytes(b"not gzip")
    _copy_with_filesystems(str(tmp_path / "source" / "model"), str(tmp_path / "copy"))
    assert sorted(os.listdir(tmp_path / "copy")) == sorted([*os.listdir(folder), "nested"])
    assert (tmp_path / "copy" / "nested" / "extra.gz").read_bytes() == b"not gzip"
    assert ZeroShotClassifier.load(str(tmp_path / "copy")).labels == tuple(TAXONOMY)


@pytest.mark.slow
def test_a_savedmodel_encoder_gives_the_scores_of_the_onnx_one(tmp_path, classifier):
    folder = _write_folder(tmp_path / "savedmodel", encoder="savedmodel")
    saved = ZeroShotClassifier.load(folder)
    images = [_hit(i) for i in range(0, len(LABELS), 5)] + [_gray(), _hit(3, 200, 120)]
    for got, expected in zip(saved.predict(images), classifier.predict(images)):
        np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-4)
    assert saved.version == classifier.version


# ----------------------------------------------------------------------------- preprocessing


def _stripes() -> np.ndarray:
    """100 x 200: a red quarter, a green half, a blue quarter, left to right."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :50, 0] = 255
    image[:, 50:150, 1] = 255
    image[:, 150:, 2] = 255
    return image


def test_shortest_side_resize_and_centre_crop_keep_the_middle():
    spec = InputSpec(50, "NCHW", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    pixels = prepare_image(_stripes(), spec)
    assert pixels.shape == (3, 50, 50) and pixels.dtype == np.float32
    inner = pixels[:, :, 3:-3]  # away from the bicubic overshoot at the crop's edges
    np.testing.assert_allclose(inner[1], (1.0 - 0.5) / 0.25, atol=0.05)
    np.testing.assert_allclose(inner[[0, 2]], (0.0 - 0.5) / 0.25, atol=0.05)


def test_squash_keeps_the_whole_image_and_nhwc_puts_channels_last():
    spec = InputSpec(50, "NHWC", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "squash", "bilinear")
    pixels = prepare_image(_stripes(), spec)
    assert pixels.shape == (50, 50, 3)
    assert pixels[25, 2].argmax() == 0 and pixels[25, 25].argmax() == 1
    assert pixels[25, 47].argmax() == 2


def test_a_grayscale_array_is_read_as_rgb():
    spec = InputSpec(32)
    pixels = prepare_image(np.full((40, 60), 255, np.uint8), spec)
    np.testing.assert_allclose(pixels, 1.0, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def _config(folder) -> dict:
    return json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: "{not json", "zero_shot.json is not valid JSON"),
        (lambda c: [c], "must hold a JSON object"),
        (lambda c: {**c, "format": 2}, "format must be 1"),
        (lambda c: {k: v for k, v in c.items() if k != "logit_scale"}, "logit_scale is missing"),
        (lambda c: {**c, "logit_scale": -1}, "logit_scale must be greater than 0"),
        (lambda c: {**c, "logit_scal": 1}, r"unknown keys \['logit_scal'\]"),
        (lambda c: {**c, "model": ""}, "model must be the model's name"),
        (lambda c: {**c, "image_encoder": "../elsewhere.onnx"}, "inside the model folder"),
        (lambda c: {**c, "image_encoder": "absent.onnx"}, "not a file of the folder"),
        (lambda c: {**c, "image_encoder": "absent"}, "neither an .onnx file nor a SavedModel"),
        (lambda c: {**c, "input": {**c["input"], "layout": "NCWH"}}, "layout must be one of"),
        (lambda c: {**c, "input": {**c["input"], "mean": [0.5, 0.5]}}, "mean must be a list of 3"),
        (lambda c: {**c, "input": {**c["input"], "std": [1, 0, 1]}}, "std must be greater than 0"),
        (lambda c: {**c, "input": {**c["input"], "size": "64"}}, "size must be a positive int"),
        (lambda c: {**c, "input": {**c["input"], "resize": "longest"}}, "resize must be one of"),
    ],
)
def test_a_malformed_zero_shot_json_says_what_to_fix(model_copy, change, message):
    changed = change(_config(model_copy))
    text = changed if isinstance(changed, str) else json.dumps(changed)
    (model_copy / CONFIG_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier.load(str(model_copy))


def test_a_folder_without_zero_shot_json_is_refused(tmp_path):
    with pytest.raises(ValueError, match="zero_shot.json is missing.*export_zero_shot"):
        ZeroShotClassifier.load(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        ZeroShotClassifier.load(str(tmp_path / "absent"))


def test_an_encoder_that_does_not_load_is_named(model_copy):
    (model_copy / ENCODER_FILE).write_bytes(b"this is not an ONNX model")
    with pytest.raises(ValueError, match=f"image encoder .*{ENCODER_FILE} does not load"):
        ZeroShotClassifier.load(str(model_copy))


def test_an_encoder_of_another_width_is_refused(model_copy):
    _onnx_encoder(str(model_copy / ENCODER_FILE), width=100)
    with pytest.raises(ValueError, match=r"shape \(100,\).*128-wide text embeddings"):
        ZeroShotClassifier.load(str(model_copy))


def test_an_input_size_the_encoder_cannot_take_is_reported(model_copy):
    config = _config(model_copy)
    config["input"]["size"] = 32  # 4 x 4 cells: the projection expects 64
    (model_copy / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="fails on a NCHW batch of shape .*input.size"):
        ZeroShotClassifier.load(str(model_copy))


def _write_table(tmp_path, document) -> str:
    path = tmp_path / "table.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"neutral": ["a photo"], "labels": {"Gamblng": ["a photo of a roulette wheel"]}},
            r"'Gamblng' is not a label of the moderation taxonomy; did you mean 'Gambling'\?",
        ),
        ({"neutral": ["a photo"], "labels": {}}, "labels must map taxonomy labels"),
        ({"labels": {"Gambling": ["a photo of a roulette wheel"]}}, "neutral must be a non-empty"),
        ({"neutral": ["a photo"], "labels": {"Gambling": []}}, "'Gambling': prompts must be"),
        (
            {"neutral": ["a photo"], "labels": {"Gambling": {"prompts": ["x"], "temprature": 1}}},
            r"label 'Gambling' has unknown keys \['temprature'\]",
        ),
        (
            {"neutral": ["a photo"], "labels": {"Gambling": {"prompts": ["x"], "offset": "2"}}},
            "offset must be a finite number",
        ),
        (
            {"neutral": ["a photo"], "labels": {"Gambling": {"prompts": ["x"], "temperature": -1}}},
            "temperature must be at least 0",
        ),
        (
            {
                "neutral": ["a photo"],
                "defaults": {"aggregate": "sum"},
                "labels": {"Gambling": ["x"]},
            },
            "aggregate must be one of max, mean",
        ),
        (
            {"neutral": ["a photo"], "labels": {"Gambling": ["a photo", "a photo of dice"]}},
            "'Gambling': 'a photo' is also a neutral prompt",
        ),
    ],
)
def test_a_wrong_prompt_table_names_the_label(folder, tmp_path, document, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier.load(folder, prompts=_write_table(tmp_path, document))


def test_a_prompt_without_an_embedding_says_to_export_again(folder, tmp_path):
    table = json.loads(_read(_table(tmp_path, {"Gambling": {}})))
    table["labels"]["Gambling"]["prompts"].append("a photo of a pair of dice")
    path = _write_table(tmp_path, table)
    expected = (
        "the prompt 'a photo of a pair of dice' of label 'Gambling' in .*table.json has no "
        "embedding in .*text_embeddings.npz: re-run python -m training.export_zero_shot with "
        "--prompts .*table.json"
    )
    with pytest.raises(ValueError, match=expected):
        ZeroShotClassifier.load(folder, prompts=path)
    table["labels"]["Gambling"]["prompts"].pop()
    table["neutral"].append("a photo of a teapot")
    with pytest.raises(ValueError, match="neutral prompt 'a photo of a teapot'.*re-run"):
        ZeroShotClassifier.load(folder, prompts=_write_table(tmp_path, table))


def _rewrite_embeddings(folder, **arrays) -> None:
    path = folder / EMBEDDINGS_FILE
    with np.load(path) as saved:
        current = {"prompts": saved["prompts"], "embeddings": saved["embeddings"]}
    current.update(arrays)
    np.savez(path, **current)


def test_a_pickle_in_the_embeddings_file_is_refused(model_copy):
    with np.load(model_copy / EMBEDDINGS_FILE) as saved:
        prompts = saved["prompts"].tolist()
    _rewrite_embeddings(model_copy, prompts=np.array(prompts, dtype=object))
    with pytest.raises(ValueError, match="pickled .* refused"):
        ZeroShotClassifier.load(str(model_copy))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (lambda p, e: {"embeddings": np.where(np.arange(len(e))[:, None] == 3, np.nan, e)}, "NaN"),
        (lambda p, e: {"embeddings": e[:-1]}, r"shape \(\d+, D\), one row per prompt"),
        (lambda p, e: {"embeddings": e[:, 0]}, "one row per prompt"),
        (lambda p, e: {"embeddings": np.zeros_like(e)}, "are 0"),
        (lambda p, e: {"embeddings": (e * 100).astype(np.int32)}, "floating point"),
        (lambda p, e: {"prompts": np.array([p[0]] * len(p))}, "prompts must be unique"),
        (lambda p, e: {"prompts": np.arange(len(p))}, "1-D string array"),
    ],
)
def test_bad_text_embeddings_are_refused(model_copy, arrays, message):
    with np.load(model_copy / EMBEDDINGS_FILE) as saved:
        prompts, embeddings = saved["prompts"], saved["embeddings"]
    _rewrite_embeddings(model_copy, **arrays(prompts, embeddings))
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier.load(str(model_copy))


def test_an_embeddings_file_that_is_not_npz_is_refused(model_copy):
    (model_copy / EMBEDDINGS_FILE).write_bytes(b"plain text")
    with pytest.raises(ValueError, match="not a readable .npz"):
        ZeroShotClassifier.load(str(model_copy))
    os.unlink(model_copy / EMBEDDINGS_FILE)
    with pytest.raises(ValueError, match="text_embeddings.npz is missing"):
        ZeroShotClassifier.load(str(model_copy))


# ----------------------------------------------------------------------------- rules, table


def test_one_rule_per_taxonomy_label():
    assert [rule.label for rule in ZERO_SHOT_RULES] == list(TAXONOMY)
    assert [rule.signal for rule in ZERO_SHOT_RULES] == [f"zero_shot/{name}" for name in TAXONOMY]


def test_the_shipped_table_covers_every_label_with_clear_prompts():
    document = json.loads(_read(SHIPPED_PROMPTS_PATH))
    assert list(document["labels"]) == list(TAXONOMY)
    assert set(document["defaults"]) == {"temperature", "offset", "aggregate"}
    table = load_prompt_table()
    every = [p for entry in table.labels for p in entry.prompts] + list(table.neutral)
    assert len(every) == len(set(every)), "a prompt may serve one label (or neutral) only"
    assert len(table.neutral) >= 10
    for entry in table.labels:
        assert 3 <= len(entry.prompts) <= 6, entry.name
        assert (entry.temperature, entry.offset, entry.aggregate) == (1.0, 2.0, "max")
    for prompt in every:
        assert prompt == prompt.strip() and prompt.split()[0] in {"a", "an"}, prompt


# ----------------------------------------------------------------------------- the export script


def test_the_export_script_helps_without_torch():
    code = (
        "import sys, training.export_zero_shot as e\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n"
        "e.main(['--help'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--model", "--pretrained", "--output", "--prompts"):
        assert flag in done.stdout


def test_the_input_spec_comes_from_open_clips_preprocessing():
    spec = input_spec_from(
        {
            "size": (256, 256),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "resize_mode": "squash",
        }
    )
    assert spec == InputSpec(256, "NCHW", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "squash", "bicubic")
    clip = input_spec_from({"size": 224})
    assert clip.size == 224 and clip.resize == "shortest" and clip.mean[0] == 0.48145466
    with pytest.raises(ValueError, match="only square"):
        input_spec_from({"size": (224, 256)})
    with pytest.raises(ValueError, match="'longest' is not supported"):
        input_spec_from({"size": 224, "resize_mode": "longest"})


def test_the_written_folder_is_what_the_loader_reads(folder):
    assert sorted(os.listdir(folder)) == sorted(
        [CONFIG_FILE, EMBEDDINGS_FILE, PROMPTS_FILE, ENCODER_FILE]
    )
    config = _config(pathlib.Path(folder))
    assert config["format"] == 1 and config["image_encoder"] == ENCODER_FILE
    assert _read(os.path.join(folder, PROMPTS_FILE)) == _read(SHIPPED_PROMPTS_PATH)


# ------------------------------------------------------------------------- in the model, in a job


@pytest.fixture(scope="module")
def moderation_model(folder):
    from model.moderation_model import load_moderation_model

    return load_moderation_model("open_nsfw", backbone="none", zero_shot_model=folder)


def test_the_moderation_model_emits_every_label_with_its_parents(moderation_model, classifier):
    """Through the base model's own response: each label of the taxonomy is reachable, with its
    parent and grandparent at least as confident and with their own taxonomy levels."""
    assert [part.name for part in moderation_model.components] == ["open_nsfw", "zero_shot"]
    assert moderation_model.version.endswith("+" + classifier.version)
    responses = moderation_model.predict([_hit(i, 96, 96) for i in range(len(LABELS))], 50)
    for name, response in zip(LABELS, responses, strict=True):
        labels = {entry["Name"]: entry for entry in response["ModerationLabels"]}
        assert name in labels, name
        for name_or_parent in ancestors(name):
            entry = labels[name_or_parent]
            assert entry["Confidence"] >= labels[name]["Confidence"]
            assert entry["TaxonomyLevel"] == TAXONOMY[name_or_parent].level
            assert entry["ParentName"] == TAXONOMY[name_or_parent].parent
    (gray,) = moderation_model.predict([_gray()], 50)
    assert gray["ModerationLabels"] == []


@pytest.mark.slow
def test_a_job_runs_the_zero_shot_model(folder, tmp_path):
    from PIL import Image

    from model.moderation_model import moderation_model_version
    from pipeline.run import run

    wanted = ["Middle Finger", "Air Crash", "Kissing on the Lips"]
    lines = []
    for name in wanted:
        path = tmp_path / f"{name.replace(' ', '-')}.png"
        Image.fromarray(_hit(LABELS.index(name), 160, 160)).save(path)
        lines.append(json.dumps({"source-ref": str(path)}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    run(
        [
            f"--manifest={tmp_path / 'manifest.jsonl'}",
            f"--output={output}",
            "--runner=DirectRunner",
            "--components=open_nsfw",
            "--backbone=none",
            f"--zero_shot_model={folder}",
        ]
    )
    results = [json.loads(line) for line in _read(output / "results.jsonl").splitlines()]
    assert len(results) == len(wanted)
    version = moderation_model_version("open_nsfw", "none", zero_shot_model=folder)
    for line in results:
        response = line["detect-moderation-labels"]
        assert response["ModerationModelVersion"] == version
        name = os.path.basename(line["source-ref"])[: -len(".png")].replace("-", " ")
        names = [entry["Name"] for entry in response["ModerationLabels"]]
        assert names[0] == name or (name in names and TAXONOMY[name].level < 3)
        assert set(ancestors(name)) <= set(names)


def test_a_prompt_table_without_the_model_is_refused(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import ModerationOptions, validate_options

    options = PipelineOptions(
        ["--manifest=m.jsonl", f"--output={tmp_path}", "--zero_shot_prompts=p.json"]
    )
    with pytest.raises(ValueError, match="--zero_shot_prompts needs --zero_shot_model"):
        validate_options(options.view_as(ModerationOptions))
