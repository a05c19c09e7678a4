"""A job's start-up: what it imports and loads, when, and what it prints on a machine without a
GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import model.handler as handler_module
from model import tensorflow_env
from model.handler import ModerationModelHandler
from model.tensorflow_env import LOG_LEVEL, configure_tensorflow_logging, gpu_visible

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_PROBE = ("cuInit", "cuda_platform")


def _python(code: str, **env: str | None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose environment has ``env`` (None: unset) applied."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _environment(**changes: str | None) -> dict[str, str]:
    environment = dict(os.environ)
    # This process's level was set by the model package, not by a user: a child must not
    # inherit it as if it were a choice.
    environment.pop(LOG_LEVEL, None)
    for name, value in changes.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


# The log level.


def test_without_a_gpu_the_level_silences_the_cuda_probe(monkeypatch):
    monkeypatch.setattr(tensorflow_env, "_user_log_level", lambda: None)
    monkeypatch.setattr(tensorflow_env, "gpu_visible", lambda: False)
    assert configure_tensorflow_logging() == "3"
    assert os.environ[LOG_LEVEL] == "3"


def test_with_a_gpu_errors_stay_visible(monkeypatch):
    monkeypatch.setattr(tensorflow_env, "_user_log_level", lambda: None)
    monkeypatch.setattr(tensorflow_env, "gpu_visible", lambda: True)
    assert configure_tensorflow_logging() == "2"


@pytest.mark.parametrize("gpu", [False, True])
def test_the_users_level_always_wins(monkeypatch, gpu):
    monkeypatch.setattr(tensorflow_env, "_user_log_level", lambda: "0")
    monkeypatch.setattr(tensorflow_env, "gpu_visible", lambda: gpu)
    assert configure_tensorflow_logging() == "0"


def test_a_gpu_is_a_device_node_that_cuda_visible_devices_does_not_hide(monkeypatch):
    monkeypatch.setattr(tensorflow_env.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_visible()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not gpu_visible()
    monkeypatch.setattr(tensorflow_env.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert not gpu_visible()


def test_the_users_level_is_the_one_the_process_started_with():
    # The model package sets a default level when imported, before tensorflow_env decides.
    code = "from model.tensorflow_env import configure_tensorflow_logging as c; print(c())"
    assert _python(code, **{LOG_LEVEL: "1"}).stdout.split() == ["1"]
    expected = "2" if gpu_visible() else "3"
    assert _python(code).stdout.split() == [expected]


# What a job imports.


@pytest.mark.slow
def test_neither_the_job_nor_the_server_nor_the_default_model_imports_tensorflow():
    code = (
        "import sys, pipeline.run, service.server\n"
        "from model.moderation_model import load_moderation_model\n"
        "model = load_moderation_model()\n"
        "assert model.backbone is not None and model.content_types_head is not None\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'keras')))\n"
    )
    completed = _python(code)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["[]"]


# The default backbone's graph.


@pytest.fixture(scope="module")
def photos(sample_photos) -> list[np.ndarray]:
    from transforms.images import decode_image

    return [
        decode_image(open(path, "rb").read())
        for name, path in sorted(sample_photos.items())
        if name.endswith(".jpg")
    ]


@pytest.mark.slow
def test_the_graph_gives_what_the_keras_port_gives(photos):
    from model.backbone import Backbone, prepare_image
    from model.efficientnet_lite import INPUT_SIZE, build_keras_model, read_checkpoint

    graph = Backbone().run(photos)
    keras = build_keras_model(read_checkpoint())
    reference = keras(np.stack([prepare_image(image, INPUT_SIZE) for image in photos]))
    np.testing.assert_allclose(graph.embeddings, reference["embedding"].numpy(), atol=1e-4)
    np.testing.assert_allclose(graph.imagenet, reference["imagenet"].numpy(), atol=1e-5)
    assert (graph.imagenet.argmax(axis=1) == reference["imagenet"].numpy().argmax(axis=1)).all()


@pytest.mark.slow
def test_the_graph_is_built_once_per_cache(tmp_path, monkeypatch, photos):
    from model.backbone import Backbone, _embedded_graph

    shared = Backbone().run(photos[:2]).embeddings
    monkeypatch.setenv("BEAM_MODERATION_CACHE", str(tmp_path))
    fresh = Backbone()
    path = _embedded_graph()
    assert path.startswith(str(tmp_path)) and os.listdir(tmp_path) == [os.path.basename(path)]
    stamp = os.stat(path).st_mtime_ns
    Backbone()
    assert os.stat(path).st_mtime_ns == stamp
    np.testing.assert_array_equal(fresh.run(photos[:2]).embeddings, shared)


# Loading the model ahead of the stage that runs it.


class _Loads:
    """Stands in for load_moderation_model: counts calls, and the threads they ran on."""

    def __init__(self, error: Exception | None = None):
        self.threads: list[str] = []
        self._error = error
        self._release = threading.Event()
        self._release.set()

    def hold(self) -> None:
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def __call__(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        self._release.wait(30)
        if self._error is not None:
            raise self._error
        return types.SimpleNamespace(version="test")


@pytest.fixture(autouse=True)
def _nothing_left_loading():
    yield
    handler_module._LOADING.clear()


def test_a_started_load_is_what_load_model_returns(monkeypatch):
    loads = _Loads()
    monkeypatch.setattr(handler_module, "load_moderation_model", loads)
    loads.hold()
    ModerationModelHandler(backbone="none").start_loading()
    # Another handler with the same settings, as Beam's copy of the pipeline's one is.
    waiting = ModerationModelHandler(backbone="none")
    loaded: list = []
    taker = threading.Thread(target=lambda: loaded.append(waiting.load_model()))
    taker.start()
    loads.release()
    taker.join(30)
    assert len(loaded) == 1 and loads.threads == ["load-model"]
    # Taken once: a later load_model loads anew.
    assert waiting.load_model() is not loaded[0]
    assert loads.threads == ["load-model", "MainThread"]


def test_other_settings_load_their_own_model(monkeypatch):
    loads = _Loads()
    monkeypatch.setattr(handler_module, "load_moderation_model", loads)
    loads.hold()
    ModerationModelHandler(backbone="none").start_loading()
    other = ModerationModelHandler(backbone="none", components="open_nsfw")
    loads.release()
    other.load_model()
    assert sorted(loads.threads) == ["MainThread", "load-model"]


def test_a_failed_load_fails_load_model_with_what_to_check(monkeypatch):
    monkeypatch.setattr(handler_module, "load_moderation_model", _Loads(RuntimeError("no weights")))
    handler = ModerationModelHandler(backbone="none")
    handler.start_loading()
    with pytest.raises(ValueError, match="Unable to load the moderation model.*no weights"):
        handler.load_model()


def test_a_load_no_stage_took_is_forgotten(monkeypatch):
    loads = _Loads()
    monkeypatch.setattr(handler_module, "load_moderation_model", loads)
    handler = ModerationModelHandler(backbone="none")
    handler.start_loading()
    handler.stop_loading()
    handler.load_model()
    assert len(loads.threads) == 2


@pytest.mark.parametrize(
    ("flags", "ahead"),
    [
        ([], True),
        (["--runner=DirectRunner", "--direct_running_mode=multi_threading"], True),
        (["--direct_running_mode=multi_processing"], False),
        (["--runner=PortableRunner"], False),
        (["--share_model"], False),
        (["--model_copies=2"], False),
    ],
)
def test_only_a_stage_in_this_process_gets_its_model_loaded_ahead(
    monkeypatch, tmp_path, flags, ahead
):
    from pipeline import run as run_module

    started = []
    monkeypatch.setattr(ModerationModelHandler, "start_loading", lambda self: started.append(self))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("")
    options = run_module.prepare([f"--manifest={manifest}", f"--output={tmp_path}/out", *flags])
    assert (run_module._start_loading_model(options) is not None) == ahead
    assert len(started) == int(ahead)


@pytest.mark.slow
def test_a_local_job_loads_its_model_while_the_pipeline_is_built(
    monkeypatch, tmp_path, sample_photos
):
    from model.moderation_model import load_moderation_model
    from pipeline.run import run

    threads: list[str] = []

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return load_moderation_model(*args, **kwargs)

    monkeypatch.setattr(handler_module, "load_moderation_model", recorded)
    manifest = tmp_path / "manifest.jsonl"
    refs = [sample_photos["coffee.jpg"], sample_photos["chelsea.png"]]
    manifest.write_text("".join(json.dumps({"source-ref": ref}) + "\n" for ref in refs))
    outcome = run([f"--manifest={manifest}", f"--output={tmp_path / 'out'}"])
    assert outcome["statistics"]["valid-json-lines"] == 2
    assert threads == ["load-model"]
    assert not handler_module._LOADING


# What a job prints.


@pytest.fixture(scope="module")
def tensorflow_backbone(tmp_path_factory) -> str:
    """A SavedModel backbone, so that the job imports TensorFlow (the default one does not)."""
    import tensorflow as tf

    class MeanColour(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    path = str(tmp_path_factory.mktemp("backbone") / "mean_colour")
    tf.saved_model.save(MeanColour(), path)
    return path


def _job(tmp_path, sample_photos, *flags: str, **env: str | None) -> subprocess.CompletedProcess:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"source-ref": sample_photos["coffee.jpg"]}) + "\n")
    command = [
        sys.executable,
        "-m",
        "pipeline.run",
        f"--manifest={manifest}",
        f"--output={tmp_path / 'out'}",
        "--components=open_nsfw",
        *flags,
    ]
    completed = subprocess.run(
        command,
        cwd=REPO,
        env=_environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Analysed 1 of 1 manifest lines" in completed.stdout
    return completed


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    ["in_memory", "multi_processing"],
)
def test_a_job_prints_no_cuda_probe_errors(tmp_path, sample_photos, tensorflow_backbone, mode):
    completed = _job(
        tmp_path,
        sample_photos,
        f"--backbone={tensorflow_backbone}",
        f"--direct_running_mode={mode}",
        "--direct_num_workers=1",
    )
    for probe in CUDA_PROBE:
        assert probe not in completed.stderr


@pytest.mark.slow
@pytest.mark.skipif(gpu_visible(), reason="with a GPU, the CUDA probe succeeds and says nothing")
def test_the_cuda_probe_shows_when_the_user_asks_for_every_message(
    tmp_path, sample_photos, tensorflow_backbone
):
    completed = _job(
        tmp_path, sample_photos, f"--backbone={tensorflow_backbone}", **{LOG_LEVEL: "0"}
    )
    assert "cuInit" in completed.stderr
