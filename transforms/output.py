"""The job's two output files: ``results.jsonl`` and ``manifest-summary.json``.

Results are written as sorted parts to a temporary folder under the output location while the
job runs. Only when everything is done, and the summary's counts agree with the lines read,
does ``PublishOutputs`` publish, in this order:

1. remove the ``manifest-summary.json`` a previous run may have left there;
2. assemble ``results.jsonl`` (in manifest line order);
3. write ``manifest-summary.json``, last.

At no instant can a reader see a summary beside results of another run: a summary present
means the results beside it are complete and its own. A failure at any step fails the job and
leaves no summary. Removing the temporary parts afterwards is best effort: the outputs are
already published, so a failure there is a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from storage.outputs import OutputStore, join
from transforms.records import ManifestError, ManifestLine

__all__ = [
    "CUSTOM_LABELS_RESULTS_KEY",
    "MODERATION_RESULTS_KEY",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "LINES_PER_PART",
    "PublishedOutputs",
    "result_line",
    "BuildSummary",
    "WriteResults",
    "PublishOutputs",
]

_LOGGER = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "manifest-summary.json"
LINES_PER_PART = 10_000
_COPY_CHUNK = 8 * 1024 * 1024


# The key of a results line's response: the moderation model's, or a Custom Labels model's.
MODERATION_RESULTS_KEY = "detect-moderation-labels"
CUSTOM_LABELS_RESULTS_KEY = "detect-custom-labels"


def result_line(line: ManifestLine, response: dict, key: str = MODERATION_RESULTS_KEY) -> bytes:
    """One line of ``results.jsonl``: the source-ref and its response (DetectModerationLabels',
    or with ``key`` CUSTOM_LABELS_RESULTS_KEY, DetectCustomLabels')."""
    document = {"source-ref": line.source_ref, key: response}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class BuildSummary(beam.CombineFn):
    """Outcomes (``None`` for an analysed line, ``ManifestError`` otherwise) -> the summary.

    On an empty input it still produces a summary, with zero counts.
    """

    def create_accumulator(self):
        return 0, []

    def add_input(self, accumulator, outcome: ManifestError | None):
        valid, errors = accumulator
        if outcome is None:
            return valid + 1, errors
        errors.append(tuple(outcome))
        return valid, errors

    def merge_accumulators(self, accumulators):
        valid, errors = 0, []
        for more_valid, more_errors in accumulators:
            valid += more_valid
            errors.extend(more_errors)
        return valid, errors

    def extract_output(self, accumulator) -> dict:
        valid, errors = accumulator
        entries = sorted((ManifestError(*e) for e in errors), key=lambda e: (e.line_number, e.code))
        return {
            "version": "1.0",
            "statistics": {
                "total-json-lines": valid + len(entries),
                "valid-json-lines": valid,
                "invalid-json-lines": len(entries),
            },
            "errors": [e.to_summary_entry() for e in entries],
        }


class _WritePart(beam.DoFn):
    def __init__(self, folder: str, store: OutputStore):
        self._folder = folder
        self._store = store

    def process(self, element: tuple[int, Iterable[tuple[int, bytes]]]):
        part, lines = element
        ordered = sorted(lines)
        path = join(self._folder, f"results-{part:08d}.jsonl")
        with self._store.open_write(path) as stream:
            for _, data in ordered:
                stream.write(data)
        yield part, path, len(ordered)


class WriteResults(beam.PTransform):
    """``(ManifestLine, response)`` -> ``(part, path, line_count)`` of temporary result parts."""

    def __init__(
        self, temporary_folder: str, store: OutputStore, results_key: str = MODERATION_RESULTS_KEY
    ):
        super().__init__()
        self._folder = temporary_folder
        self._store = store
        self._key = results_key

    def expand(self, results):
        key = self._key
        return (
            results
            | "ToPartLines"
            >> beam.MapTuple(
                lambda line, response: (
                    line.line_number // LINES_PER_PART,
                    (line.line_number, result_line(line, response, key)),
                )
            )
            | "GroupParts" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(_WritePart(self._folder, self._store))
        )


class PublishedOutputs(NamedTuple):
    results: str
    summary: str
    statistics: dict


class _Publish(beam.DoFn):
    def __init__(self, output: str, temporary_folder: str, store: OutputStore):
        self._output = output
        self._temporary = temporary_folder
        self._store = store

    def process(self, _, parts, summary, lines_read):
        statistics = summary["statistics"]
        results_lines = sum(count for _, _, count in parts)
        if (
            statistics["total-json-lines"] != lines_read
            or results_lines != statistics["valid-json-lines"]
        ):
            raise RuntimeError(
                "Refusing to publish inconsistent outputs: "
                f"{lines_read} manifest lines read, summary counts {statistics}, "
                f"{results_lines} result lines written."
            )
        results_path = join(self._output, RESULTS_FILE)
        summary_path = join(self._output, SUMMARY_FILE)
        # A previous run's summary goes first, so that it never stands beside other results.
        self._store.delete_file(summary_path)
        with self._store.open_write(results_path) as stream:
            for _, path, _ in sorted(parts):
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as part:
                    while chunk := part.read(_COPY_CHUNK):
                        stream.write(chunk)
        # Written last: a summary present means the results beside it are complete.
        self._store.write_bytes(
            summary_path, json.dumps(summary, ensure_ascii=False, indent=2).encode()
        )
        try:
            self._store.delete_tree(self._temporary)
        except Exception as exc:  # published already: leftovers are only a cost
            _LOGGER.warning(
                "The outputs are published, but the temporary folder %s could not be removed "
                "(%s: %s); it can be deleted.",
                self._temporary,
                type(exc).__name__,
                exc,
            )
        yield PublishedOutputs(results_path, summary_path, statistics)


class PublishOutputs(beam.PTransform):
    """Assembles and publishes the outputs once parts, summary and line count are all final."""

    def __init__(
        self, parts, summary, lines_read, *, output: str, temporary_folder: str, store: OutputStore
    ):
        super().__init__()
        self._parts = parts
        self._summary = summary
        self._lines_read = lines_read
        self._output = output
        self._temporary = temporary_folder
        self._store = store

    def expand(self, pbegin):
        return (
            pbegin
            | "Once" >> beam.Create([None])
            | "Publish"
            >> beam.ParDo(
                _Publish(self._output, self._temporary, self._store),
                beam.pvalue.AsList(self._parts),
                beam.pvalue.AsSingleton(self._summary),
                beam.pvalue.AsSingleton(self._lines_read),
            )
        )
