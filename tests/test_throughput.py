"""What keeps the pipeline close to the hardware: repeated images analysed once, and inference
threads that never oversubscribe the cores whatever the runner's worker processes."""

from __future__ import annotations

import json
import logging
import shutil

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter

from model.handler import ModerationModelHandler, inference_threads, usable_cores
from model.recent import RecentResults, image_digest
from pipeline.options import ModerationOptions, worker_processes_per_machine


def _image(value: int, shape=(90, 120, 3)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


class _Counting:
    def __init__(self):
        self.computed: list[int] = []

    def __call__(self, images):
        self.computed += [int(image[0, 0, 0]) for image in images]
        return [{"value": int(image[0, 0, 0]), "labels": []} for image in images]


def test_repeats_in_a_batch_are_computed_once_and_answered_in_order():
    compute = _Counting()
    recent = RecentResults(capacity=8)
    results, repeats = recent.results([_image(1), _image(2), _image(1), _image(1)], compute)
    assert compute.computed == [1, 2]
    assert [r["value"] for r in results] == [1, 2, 1, 1]
    assert repeats == 2


def test_repeats_across_batches_come_from_the_recent_results():
    compute = _Counting()
    recent = RecentResults(capacity=8)
    recent.results([_image(1), _image(2)], compute)
    results, repeats = recent.results([_image(2), _image(3)], compute)
    assert compute.computed == [1, 2, 3]
    assert [r["value"] for r in results] == [2, 3]
    assert repeats == 1


def test_each_line_gets_its_own_copy_of_a_repeated_result():
    recent = RecentResults(capacity=8)
    results, _ = recent.results([_image(1), _image(1)], _Counting())
    results[0]["labels"].append("changed downstream")
    assert results[1]["labels"] == []
    later, _ = recent.results([_image(1)], _Counting())
    assert later[0]["labels"] == []


def test_the_least_recently_used_results_are_forgotten_first():
    compute = _Counting()
    recent = RecentResults(capacity=2)
    recent.results([_image(1), _image(2)], compute)
    recent.results([_image(1)], compute)  # 1 is now more recent than 2
    recent.results([_image(3)], compute)  # 2 goes
    assert len(recent) == 2
    recent.results([_image(1), _image(2)], compute)
    assert compute.computed == [1, 2, 3, 2]


def test_a_batch_larger_than_the_capacity_still_gets_every_result():
    compute = _Counting()
    results, _ = RecentResults(capacity=1).results([_image(v) for v in (1, 2, 3, 1)], compute)
    assert [r["value"] for r in results] == [1, 2, 3, 1]
    assert compute.computed == [1, 2, 3]


def test_the_digest_tells_shapes_apart():
    flat = np.zeros((100, 300, 3), dtype=np.uint8)
    assert image_digest(flat) != image_digest(flat.reshape(300, 100, 3))
    assert image_digest(flat) == image_digest(flat.copy())
    assert image_digest(flat) != image_digest(_image(1, (100, 300, 3)))


@pytest.mark.parametrize(
    "flags, processes",
    [
        ([], 1),
        (["--runner=DirectRunner"], 1),
        (["--direct_num_workers=4"], 1),  # in_memory mode runs one worker whatever the count
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], 2),
        (["--direct_running_mode=multi_threading", "--direct_num_workers=3"], 3),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=0"], None),
        (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], 1),
        (["--runner=PortableRunner", "--sdk_worker_parallelism=4"], 4),
        (["--runner=PortableRunner", "--sdk_worker_parallelism=0"], None),
        (["--runner=DataflowRunner"], None),
        (["--runner=DataflowRunner", "--experiments=no_use_multiple_sdk_containers"], 1),
    ],
)
def test_worker_processes_per_machine_follow_the_runner_options(flags, processes):
    assert worker_processes_per_machine(ModerationOptions(flags)) == processes


@pytest.mark.parametrize("processes", [1, 2, 3, 8, 64, None])
def test_default_threads_never_oversubscribe_the_cores(processes):
    threads = inference_threads(None, processes)
    workers = processes or usable_cores()
    assert threads >= 1
    assert threads * workers <= max(usable_cores(), workers)
    if processes == 1:
        assert threads == usable_cores()


def test_asked_for_threads_are_kept():
    assert inference_threads(3, 8) == 3


def test_model_copies_must_be_sensible():
    from pipeline.options import validate_options

    options = ModerationOptions(["--manifest=m.jsonl", "--output=out", "--model_copies=0"])
    with pytest.raises(ValueError, match="--model_copies"):
        validate_options(options.view_as(ModerationOptions))


@pytest.mark.slow
def test_a_repeated_image_is_analysed_once_and_every_line_gets_its_result(tmp_path, sample_photos):
    """Three lines of one file, a copy of it under another name, and another photo: five
    results, identical for the same pixels, from two analyses."""
    from pipeline.graph import build_pipeline

    original = sample_photos["coffee.jpg"]
    copy = str(tmp_path / "same-pixels.jpg")
    shutil.copyfile(original, copy)
    refs = [original, sample_photos["rocket.jpg"], original, copy, original]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"source-ref": ref}) + "\n" for ref in refs))
    output = tmp_path / "out"
    options = ModerationOptions(
        [f"--manifest={manifest}", f"--output={output}", "--progress_interval_secs=-1"]
    )
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options.view_as(ModerationOptions))
    outcome = pipeline.run()
    outcome.wait_until_finish()

    lines = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    assert [line["source-ref"] for line in lines] == refs
    responses = [line["detect-moderation-labels"] for line in lines]
    assert responses[0] == responses[2] == responses[3] == responses[4]
    counters = outcome.metrics().query(MetricsFilter().with_name("num_repeated_images"))
    assert sum(counter.committed for counter in counters["counters"]) == 3


# What the progress test saw, in order; module-level, so that the pickled handler (which Beam
# copies into the worker, in this process) appends to the same list.
_EVENTS: list[str] = []


class _ProgressRecorder(logging.Handler):
    def emit(self, record):
        _EVENTS.append("progress")


class _RecordingModelHandler(ModerationModelHandler):
    def run_inference(self, batch, model, inference_args=None):
        _EVENTS.append("batch")
        return super().run_inference(batch, model, inference_args)


@pytest.mark.slow
def test_progress_is_reported_while_images_are_analysed(tmp_path, sample_photos):
    """Progress lines come between inference batches, not all after the last one."""
    from pipeline.run import run

    refs = [sample_photos[name] for name in sorted(sample_photos)] * 2
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"source-ref": ref}) + "\n" for ref in refs))
    handler = _RecordingModelHandler(components="open_nsfw", backbone="none", max_batch_size=1)
    progress = logging.getLogger("transforms.moderation")
    recorder = _ProgressRecorder()
    progress.addHandler(recorder)
    level = progress.level
    progress.setLevel(logging.INFO)
    _EVENTS.clear()
    try:
        run(
            [
                f"--manifest={manifest}",
                f"--output={tmp_path / 'out'}",
                "--progress_interval_secs=0",
            ],
            model_handler=handler,
        )
    finally:
        progress.removeHandler(recorder)
        progress.setLevel(level)
    assert _EVENTS.count("batch") == len(refs)
    last_batch = len(_EVENTS) - 1 - _EVENTS[::-1].index("batch")
    assert _EVENTS.index("progress") < last_batch
