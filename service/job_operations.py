"""The bulk analysis operations: Start, Get and ListMediaAnalysisJobs."""

from __future__ import annotations

import logging

from service.adapters import LoadedAdapters
from service.errors import RequestError
from service.jobs import JobRunner
from service.registry import JobRegistry
from service.review.bulk import FLOW_KEY
from service.review.flows import FlowDefinitionStore, FlowNotFound
from service.store import page_answer

__all__ = ["JobOperations"]

_LOGGER = logging.getLogger(__name__)


class JobOperations:
    """The job operations of ``service.api.RekognitionApi``, over its job registry and runner.

    Registry errors (JobNotFound, JobLimitExceeded, ...) reach the client through the API's
    table of error codes.
    """

    registry: JobRegistry
    runner: JobRunner
    adapters: LoadedAdapters
    flows: FlowDefinitionStore | None

    def start_media_analysis_job(self, params: dict) -> dict:
        adapter_arn = (
            params["OperationsConfig"].get("DetectModerationLabels", {}).get("ProjectVersion")
        )
        if adapter_arn:
            self.adapters.resolve(adapter_arn)
        flow_arn = params.get(FLOW_KEY)
        if flow_arn:
            try:
                if self.flows is None:
                    raise FlowNotFound(flow_arn)
                self.flows.get(flow_arn)
            except FlowNotFound:
                raise RequestError(
                    "ResourceNotFoundException",
                    f"The human review flow definition {flow_arn} does not exist: create it "
                    "with SageMaker's CreateFlowDefinition, or name another.",
                ) from None
        job, created = self.registry.start(params)
        if created:
            self.runner.submit(job)
        return {"JobId": job.job_id}

    def get_media_analysis_job(self, params: dict) -> dict:
        return self.registry.get(params["JobId"]).to_api()

    def list_media_analysis_jobs(self, params: dict) -> dict:
        jobs, token = self.registry.list(params.get("MaxResults", 100), params.get("NextToken"))
        return page_answer("MediaAnalysisJobs", [job.to_api() for job in jobs], token)
