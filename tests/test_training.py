"""The training runner on its own: the trainer's command line, its result file, crashes, restarts.

The trainer here is a small executable standing in for ``python -m training.train_adapter``: it
answers by the version's name, as the real one answers by its data, so each outcome the runner
must record can be produced on demand.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import pytest

from service.jobs import JobSettings
from service.projects import ProjectRegistry
from service.training import RESTART_MESSAGE, TrainingRunner
from storage.settings import S3Settings

_TRAINER = textwrap.dedent(
    """\
    #!{python}
    # Stands in for `python -m training.train_adapter`: answers by the version name in --output.
    import json, os, sys

    args = dict(arg[2:].split("=", 1) for arg in sys.argv[3:] if "=" in arg)
    version = args["output"].rsplit("/", 2)[-2]
    result = None
    if version == "completes":
        result = {{
            "Status": "TRAINING_COMPLETED",
            "StatusMessage": json.dumps({{
                "argv": sys.argv[1:],
                "secret_in_environment": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            }}),
            "F1Score": 0.875,
            "Summary": {{"Bucket": "out-bucket", "Name": "adapters/summary.json"}},
            "Adapter": args["output"] + "/",
            "BaseModelVersion": "beam-moderation-test/base",
            "BackboneVersion": "backbone-test",
        }}
    elif version == "fails":
        result = {{"Status": "TRAINING_FAILED", "StatusMessage": "Label Alcohol has 3 examples."}}
    elif version == "incomplete":
        result = {{"Status": "TRAINING_COMPLETED", "F1Score": 0.5}}
    elif version == "crashes":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: the GPU caught fire", file=sys.stderr)
        print("exiting", file=sys.stderr)
        sys.exit(3)
    if result is not None:
        with open(args["result_file"], "w") as f:
            json.dump(result, f)
    """
)


@pytest.fixture
def trainer_executable(tmp_path) -> str:
    path = tmp_path / "trainer"
    path.write_text(_TRAINER.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def projects(tmp_path) -> ProjectRegistry:
    return ProjectRegistry(str(tmp_path / "jobs.sqlite"))


@pytest.fixture
def runner(projects, trainer_executable) -> TrainingRunner:
    settings = JobSettings(
        s3=S3Settings(
            endpoint_url="http://127.0.0.1:9",
            access_key_id="AKIDTRAINER",
            secret_access_key="trainer-secret",
            region_name="eu-west-1",
        ),
        components="open_nsfw",
        backbone="efficientnet-lite0",
        python=trainer_executable,
    )
    return TrainingRunner(projects, settings)


def _asset(key: str) -> dict:
    return {"GroundTruthManifest": {"S3Object": {"Bucket": "in-bucket", "Name": key}}}


def _version(projects: ProjectRegistry, name: str, **overrides):
    project = projects.create_project(f"project-{name}", auto_update="DISABLED")
    request = {
        "ProjectArn": project.arn,
        "VersionName": name,
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "/adapters/"},
        "TrainingData": {"Assets": [_asset("train-1.jsonl"), _asset("train-2.jsonl")]},
        "TestingData": {"AutoCreate": True},
    }
    request.update(overrides)
    return projects.create_version(project.arn, request)


def _train(runner: TrainingRunner, version):
    runner.submit(version)
    runner.wait(version.arn, timeout=60)
    return runner.projects.get_version(version.arn)


def test_a_completed_training_is_recorded_with_its_evaluation_and_adapter(runner, projects):
    version = _version(
        projects,
        "completes",
        FeatureConfig={"ContentModeration": {"ConfidenceThreshold": 70.0}},
        KmsKeyId="alias/adapters",
    )
    trained = _train(runner, version)
    assert trained.status == "TRAINING_COMPLETED"
    ms = version.arn.rsplit("/", 1)[-1]
    output = f"s3://out-bucket/adapters/project-completes/completes/{ms}"
    assert trained.adapter_uri == output + "/"
    assert trained.f1 == 0.875
    assert (trained.summary_bucket, trained.summary_name) == ("out-bucket", "adapters/summary.json")
    assert trained.base_model_version == "beam-moderation-test/base"
    assert trained.backbone_version == "backbone-test"
    assert trained.training_end is not None and trained.billable_secs >= 0
    seen = json.loads(trained.status_message)
    assert seen["secret_in_environment"] == "trainer-secret"
    argv = seen["argv"]
    assert argv[:2] == ["-m", "training.train_adapter"]
    assert argv[2:] == [
        "--training_manifest=s3://in-bucket/train-1.jsonl",
        "--training_manifest=s3://in-bucket/train-2.jsonl",
        "--auto_split",
        f"--output={output}",
        f"--project_version_arn={version.arn}",
        # The server has no allowed locations here: images may come from any bucket, never
        # from its disk.
        "--allowed_source_prefixes=s3://",
        "--confidence_threshold=70.0",
        "--kms_key_id=alias/adapters",
        "--components=open_nsfw",
        "--backbone=efficientnet-lite0",
        "--s3_endpoint_url=http://127.0.0.1:9",
        "--s3_region_name=eu-west-1",
        argv[-1],
    ]
    assert argv[-1].startswith("--result_file=")
    assert not os.path.exists(argv[-1].partition("=")[2])
    assert not any("trainer-secret" in part for part in argv)


def test_test_manifests_are_passed_when_given(runner, projects):
    version = _version(projects, "split", TestingData={"Assets": [_asset("test.jsonl")]})
    command = runner.command(version, "/tmp/result.json")
    assert "--testing_manifest=s3://in-bucket/test.jsonl" in command
    assert "--auto_split" not in command


def test_a_failed_training_keeps_what_to_fix(runner, projects):
    failed = _train(runner, _version(projects, "fails"))
    assert failed.status == "TRAINING_FAILED"
    assert failed.status_message == "Label Alcohol has 3 examples."
    assert failed.adapter_uri is None and failed.training_end is not None


def test_a_crash_fails_the_training_with_its_last_error_line(runner, projects):
    crashed = _train(runner, _version(projects, "crashes"))
    assert crashed.status == "TRAINING_FAILED"
    assert crashed.status_message == (
        "The training process exited with status 3. RuntimeError: the GPU caught fire"
    )


@pytest.mark.parametrize("name", ["silent", "incomplete"])
def test_a_training_without_a_usable_result_fails(runner, projects, name):
    version = _train(runner, _version(projects, name))
    assert version.status == "TRAINING_FAILED"
    assert "result" in version.status_message


def test_a_restarted_server_fails_the_versions_it_was_training(tmp_path, runner, projects):
    training = _version(projects, "interrupted")
    restarted = TrainingRunner(ProjectRegistry(projects.path), runner.settings)
    assert restarted.recover() == [training.arn]
    failed = projects.get_version(training.arn)
    assert failed.status == "TRAINING_FAILED"
    assert failed.status_message == RESTART_MESSAGE
    assert restarted.recover() == []
