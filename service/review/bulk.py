"""Human review of a bulk job, started by the server: a job started with a flow definition
attached (``FLOW_KEY`` in its request) has a human loop for each results line that meets the
flow's conditions, created when the job has succeeded (``pipeline.human_review`` picks and names
them; running the step twice creates each loop once).

AWS does not support A2I in bulk analysis; attaching a flow is this project's extension:
StartMediaAnalysisJob with the header ``FLOW_HEADER`` (boto3 adds it through an event handler,
see the README), or the console's *Start bulk analysis* form.
"""

from __future__ import annotations

import logging

from model.confidence import DEFAULT_MIN_CONFIDENCE
from pipeline.human_review import bulk_loops
from service.registry import JobRecord
from service.review.flows import REKOGNITION_SOURCE, FlowNotFound
from service.review.loops import LoopExists, LoopQuotaExceeded

__all__ = ["FLOW_HEADER", "FLOW_KEY", "start_job_loops"]

_LOGGER = logging.getLogger(__name__)

FLOW_HEADER = "x-moderation-flow-definition-arn"
# Where the job's request keeps the flow's ARN: not a Rekognition member, so no answer shows it.
FLOW_KEY = "HumanReviewFlowDefinitionArn"


def start_job_loops(job: JobRecord, flows, loops, s3_client) -> int:
    """Creates the human loops of a SUCCEEDED job with a flow attached; returns how many the job
    has (0 without a flow). Loops created before are kept as they are; at the open-loop quota
    the rest are left out, with a warning."""
    arn = job.request.get(FLOW_KEY)
    if not arn or flows is None or loops is None:
        return 0
    try:
        flow = flows.get(arn)
    except FlowNotFound:
        _LOGGER.warning(
            "Job %s: its flow definition %s was deleted; no human loops", job.job_id, arn
        )
        return 0
    config = job.request["OperationsConfig"].get("DetectModerationLabels", {})
    body = s3_client.get_object(
        Bucket=job.request["OutputConfig"]["S3Bucket"], Key=job.results_key
    )["Body"]
    count = 0
    for loop in bulk_loops(
        body.iter_lines(),
        flow_arn=flow.arn,
        conditions=flow.conditions,
        job_key=job.job_id,
        min_confidence=config.get("MinConfidence", DEFAULT_MIN_CONFIDENCE),
    ):
        try:
            loops.create(loop.name, flow, loop.input_content, request_source=REKOGNITION_SOURCE)
        except LoopExists:
            pass  # created by an earlier run of this step
        except LoopQuotaExceeded as exc:
            _LOGGER.warning(
                "Job %s: %d human loop(s) created, the rest left out: %s", job.job_id, count, exc
            )
            return count
        count += 1
    _LOGGER.info("Job %s has %d human loop(s) in %s", job.job_id, count, flow.arn)
    return count
