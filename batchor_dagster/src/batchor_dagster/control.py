"""Run control from the Dagster UI: a job that pauses, resumes or cancels a batchor run.

Launch it from the Launchpad with, for example::

    ops:
      control_batchor_run:
        config:
          batchor_run_id: ticket_triage.3f9a0c1d2e4b5a6978ab01cd
          action: pause

Pausing stops new submissions (in-flight batches are still collected); cancel
is drain-style (``cancel_remote_batches: true`` also cancels the provider's
in-flight batches). The op's output metadata shows the run's state afterwards.
"""

from typing import Literal

from dagster import Config, JobDefinition, OpExecutionContext, Output, job, op
from pydantic import Field

from batchor_dagster.resource import BatchorResource

DEFAULT_CONTROL_JOB_NAME = "batchor_run_control"


class BatchorRunControlConfig(Config):
    """What to do to which batchor run."""

    batchor_run_id: str = Field(description="The batchor run id (see the submit asset's metadata)")
    action: Literal["pause", "resume", "cancel"] = Field(
        description="pause: submit nothing new; resume: submit again; cancel: drain and stop"
    )
    cancel_remote_batches: bool = Field(
        default=False,
        description="With action=cancel, also cancel the provider's in-flight batches",
    )


def build_run_control_job(
    *, name: str = DEFAULT_CONTROL_JOB_NAME, resource_key: str = "batchor"
) -> JobDefinition:
    """A job with one op, ``control_batchor_run``, configured from the Launchpad."""

    @op(name="control_batchor_run", required_resource_keys={resource_key})
    def control_batchor_run(
        context: OpExecutionContext, config: BatchorRunControlConfig
    ) -> Output[None]:
        resource: BatchorResource = getattr(context.resources, resource_key)
        run = resource.get_run(config.batchor_run_id)
        if config.action == "pause":
            run.pause()
        elif config.action == "resume":
            run.resume()
        else:
            run.cancel(remote=config.cancel_remote_batches)
        summary = run.summary()
        context.log.info(
            f"batchor run {run.run_id}: {config.action} done; status {summary.status.value}, "
            f"control state {summary.control_state.value}"
        )
        return Output(
            None,
            metadata={
                "batchor_run_id": run.run_id,
                "action": config.action,
                "status": summary.status.value,
                "control_state": summary.control_state.value,
                "terminal_items": summary.terminal_items,
                "total_items": summary.total_items,
            },
        )

    @job(
        name=name,
        description="Pause, resume or cancel a batchor run by id (configure it in the Launchpad).",
        tags={"batchor/kind": "run_control"},
    )
    def run_control_job() -> None:
        control_batchor_run()

    return run_control_job


batchor_run_control_job = build_run_control_job()
"""The run-control job for a resource under the default key ``batchor``."""
