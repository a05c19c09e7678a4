"""A local Beam job service for tests: ``python -m tests.job_service --port_file F``.

Beam's own (``apache_beam.runners.portability.local_job_service_main``) runs every job on one
SDK worker. A cluster runs several: Flink and Spark start ``--sdk_worker_parallelism`` workers
per task manager. This service runs each job with that many workers, so that a test of the
portable path spreads the work over several worker processes of an EXTERNAL worker pool, as a
cluster does.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from apache_beam.options.pipeline_options import PortableOptions
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner


class _ParallelJob(local_job_service.BeamJob):
    def _invoke_runner(self):
        self.set_state(local_job_service.beam_job_api_pb2.JobState.RUNNING)
        runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
        options = self.pipeline_options()
        # FnApiRunner reads its worker count only in run_pipeline(); the job API path goes
        # through run_via_runner_api(), so the count is set here.
        workers = options.view_as(PortableOptions).sdk_worker_parallelism
        runner._num_workers = max(1, int(workers or 1))
        return runner.run_via_runner_api(self._pipeline_proto, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.job_service")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port_file", required=True, help="Written once the service listens.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    servicer = local_job_service.LocalJobServicer(beam_job_type=_ParallelJob)
    port = servicer.start_grpc_server(args.port)
    temporary = args.port_file + ".tmp"
    with open(temporary, "w") as f:
        f.write(str(port))
    os.replace(temporary, args.port_file)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        servicer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
