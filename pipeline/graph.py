"""The bulk moderation graph: manifest in, results and manifest summary out."""

from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler

from model.handler import AdapterModelHandler, CustomLabelsModelHandler, ModerationModelHandler
from pipeline.options import (
    ModerationOptions,
    allowed_source_prefixes,
    min_confidence,
    source_schemes,
    worker_processes_per_machine,
)
from storage.outputs import OutputStore, join
from storage.settings import S3Settings
from transforms.images import LoadImages
from transforms.isolation import ErrorsFromDeadLetters
from transforms.manifest import ReadManifest, ValidateManifestLine
from transforms.moderation import ModerateImages, ReportProgress
from transforms.output import (
    CUSTOM_LABELS_RESULTS_KEY,
    MODERATION_RESULTS_KEY,
    BuildSummary,
    PublishOutputs,
    WriteResults,
)

__all__ = ["adapter_handlers", "default_model_handler", "build_pipeline"]

# Where a step's unexpected exceptions go (Beam's dead-letter output), one per failed element.
_UNEXPECTED = "unexpected"


def default_model_handler(options: ModerationOptions) -> ModelHandler:
    """The job's model: the moderation model, or with ``--custom_labels_model`` (a folder by
    now, see ``pipeline.run.prepare``) a Custom Labels model."""
    if options.custom_labels_model:
        return CustomLabelsModelHandler(
            options.custom_labels_model,
            s3=S3Settings.from_options(options),
            min_confidence=min_confidence(options),
            intra_op_threads=options.inference_threads or None,
            processes_per_machine=worker_processes_per_machine(options),
            batch_size=options.inference_batch_size,
        )
    return ModerationModelHandler(
        # With an adapter, the base model hands its analyses to the adapter stage.
        analyses=bool(options.adapter),
        components=options.components,
        backbone=options.backbone,
        zero_shot_model=options.zero_shot_model,
        zero_shot_prompts=options.zero_shot_prompts,
        s3=S3Settings.from_options(options),
        min_confidence=min_confidence(options),
        intra_op_threads=options.inference_threads or None,
        processes_per_machine=worker_processes_per_machine(options),
        large_model=options.share_model,
        model_copies=options.model_copies,
        # Fixed-size batches: growing from 1, as BatchElements otherwise does, wastes the
        # first batches of every bundle on the slower small-batch path.
        min_batch_size=options.inference_batch_size,
        max_batch_size=options.inference_batch_size,
    )


def adapter_handlers(options: ModerationOptions) -> dict[str, ModelHandler]:
    """The job's adapter (``--adapter``), keyed by its ARN or URI; empty without one."""
    if not options.adapter:
        return {}
    handler = AdapterModelHandler(
        options.adapter,
        s3=S3Settings.from_options(options),
        min_confidence=min_confidence(options),
        project_version=options.project_version,
    )
    return {options.project_version or options.adapter: handler}


def build_pipeline(
    p: beam.Pipeline,
    options: ModerationOptions,
    model_handler: ModelHandler | None = None,
) -> dict[str, beam.PCollection]:
    """Wires the job into ``p`` and returns its main PCollections (for tests and callers)."""
    run_id = uuid.uuid4().hex[:12]
    s3 = S3Settings.from_options(options)
    store = OutputStore(s3, kms_key_id=options.output_kms_key_id)
    temporary = join(options.output, f".temporary-{run_id}")
    handler = model_handler or default_model_handler(options)

    read = p | "ReadManifest" >> ReadManifest(
        options.manifest, spread=False, s3=s3, version=options.manifest_version
    )
    # Counted before the reshuffle: the count is then ready before the lines are processed, so
    # that progress (which reports against it) is logged while they are.
    lines_read = read | "CountLines" >> beam.combiners.Count.Globally()
    lines = read | "SpreadLines" >> beam.Reshuffle()
    validated = lines | "ValidateLines" >> beam.ParDo(
        ValidateManifestLine(
            schemes=source_schemes(options),
            allowed_prefixes=allowed_source_prefixes(options),
        )
    ).with_outputs(ValidateManifestLine.TAG_INVALID, main="valid").with_exception_handling(
        dead_letter_tag=_UNEXPECTED
    )
    unexpected = validated[_UNEXPECTED] | "ValidationFailuresToErrors" >> ErrorsFromDeadLetters(
        "validating the line", lambda element: element[0]
    )
    loaded = validated.valid | "LoadImages" >> LoadImages(options.fetch_concurrency, s3)
    adapters = adapter_handlers(options) if model_handler is None else {}
    moderated = loaded.images | "ModerateImages" >> ModerateImages(handler, adapters)
    results = moderated["results"]

    errors = (
        validated[ValidateManifestLine.TAG_INVALID],
        unexpected,
        loaded[LoadImages.TAG_INVALID],
        moderated["invalid"],
    ) | "CollectErrors" >> beam.Flatten()
    analysed = results | "MarkAnalysed" >> beam.Map(lambda _: None)
    # Progress is counted on each branch before they meet: a runner may materialise a Flatten's
    # inputs first, and a count after it would then report only once everything is done.
    total = beam.pvalue.AsSingleton(lines_read)
    progress = ReportProgress(run_id, options.progress_interval_secs)
    summary = (
        (
            analysed | "ReportAnalysed" >> beam.ParDo(progress, total),
            errors | "ReportErrors" >> beam.ParDo(progress, total),
        )
        | "CollectOutcomes" >> beam.Flatten()
        | "BuildSummary" >> beam.CombineGlobally(BuildSummary())
    )
    key = CUSTOM_LABELS_RESULTS_KEY if options.custom_labels_model else MODERATION_RESULTS_KEY
    parts = results | "WriteResults" >> WriteResults(temporary, store, key)
    published = p | "PublishOutputs" >> PublishOutputs(
        parts,
        summary,
        lines_read,
        output=options.output,
        temporary_folder=temporary,
        store=store,
    )
    return {
        "lines": lines,
        "valid": validated.valid,
        "invalid": errors,
        "results": results,
        "summary": summary,
        "published": published,
    }
