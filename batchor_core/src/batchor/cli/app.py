"""The ``batchor`` commands: a Typer app over :class:`~batchor.BatchRunner` and
:class:`~batchor.Run`, and :func:`main`, which turns every error into one line
on stderr and an exit code (:class:`ExitCode`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from enum import IntEnum, StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from batchor.cli.display import (
    IngestProgress,
    WaitProgress,
    echo_json,
    format_plan,
    format_runs_table,
    format_summary,
    note,
    summary_record,
)
from batchor.cli.inputs import CSV_ENCODING, open_source, prompt_builder, prompt_fingerprint
from batchor.cli.settings import (
    ARTIFACTS_ENV,
    STORAGE_ENV,
    load_env_file,
    open_runner,
    require_api_key,
)
from batchor.engine.driver import LEASE_TTL_SECONDS
from batchor.errors import (
    ArtifactRuleError,
    BatchorError,
    ProviderError,
    RunNotFinishedError,
    RunNotFoundError,
    RunTimeoutError,
    SourceMismatchError,
    StorageError,
)
from batchor.job import BatchJob
from batchor.providers import PROVIDER_CONFIGS, provider_config_class
from batchor.providers.base import ProviderConfig
from batchor.providers.openai import OpenAIEnqueueLimitConfig
from batchor.results import RunControlState, RunStatus, RunSummary, TerminalResultsExport
from batchor.run import Run
from batchor.runner import BatchRunner, new_run_id
from batchor.testing.cli import emulator as emulator_command
from batchor.types import check_run_id, import_model


class ExitCode(IntEnum):
    """What ``batchor`` exits with."""

    OK = 0
    RUN_FAILED = 1
    """The waited-for run ended ``completed_with_failures`` or ``cancelled``."""
    USAGE = 2
    """Bad options or input, unknown run, or an action the run's state forbids."""
    TIMEOUT = 3
    """``--timeout`` elapsed while the run was still running."""
    ENVIRONMENT = 4
    """The provider, the storage or the file system failed."""
    INTERRUPTED = 130
    """Ctrl-C (a run being started or watched can be resumed)."""


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    AZURE = "azure"


class Endpoint(StrEnum):
    RESPONSES = "/v1/responses"
    CHAT_COMPLETIONS = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"


PROMPT_FINGERPRINT_KEY = "batchor_cli_prompt"
"""``batch_metadata`` key of :func:`~batchor.cli.inputs.prompt_fingerprint`."""

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the run ended with failures or was cancelled (wait, start --wait); "
    "2 usage error; 3 --timeout elapsed; 4 provider, storage or file-system error."
)

app = typer.Typer(
    name="batchor",
    help=(
        "Durable, typed runs of large LLM jobs through the OpenAI Batch API.\n\n"
        "Runs live in the storage (--storage, default $BATCHOR_HOME/default.sqlite3); "
        "credentials come from OPENAI_API_KEY / OPENAI_BASE_URL or ./.env."
    ),
    epilog=EXIT_CODES_HELP,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"batchor {package_version('batchor-core')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed batchor-core version and exit.",
        ),
    ] = False,
) -> None:
    pass


artifacts_app = typer.Typer(
    help="Export or prune a finished run's artifacts (request and raw output files).",
    rich_markup_mode=None,
)
app.add_typer(artifacts_app, name="artifacts")

RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run's id (batchor runs lists them).")
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar=STORAGE_ENV,
        metavar="URL",
        show_default="$BATCHOR_HOME/default.sqlite3",
        help="Where runs live: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB[?schema=S].",
    ),
]
ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        envvar=ARTIFACTS_ENV,
        metavar="DIR",
        file_okay=False,
        show_default="beside the SQLite file",
        help="Artifact directory (required with PostgreSQL storage).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
]
PollIntervalOption = Annotated[
    float | None,
    typer.Option(
        "--poll-interval",
        metavar="SECONDS",
        min=0.01,
        show_default="adaptive",
        help="Fixed seconds between polls (default: fast while batches are young, "
        "backing off to a minute).",
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        metavar="URL",
        show_default="the provider's variable, e.g. $OPENAI_BASE_URL, else the run's",
        help="API address to reach the provider through; wins over the one stored with the run.",
    ),
]
ResultsFileOption = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        dir_okay=False,
        help="File to write: .jsonl or .parquet.",
    ),
]


def open_run(
    storage: str | None, artifacts: Path | None, run_id: str, base_url: str | None = None
) -> Run:
    """The run ``run_id`` in the storage the options name, or a usage error;
    ``base_url`` points the run at another API address."""
    runner = open_runner(storage, artifacts, base_url=base_url)
    try:
        return runner.get_run(run_id)
    except RunNotFoundError:
        raise RunNotFoundError(
            f"no run {run_id!r} in {runner.storage!r}; batchor runs lists the runs it has"
        ) from None


def require_terminal(run: Run, action: str, alternative: str = "") -> RunSummary:
    """The run's summary, or :class:`RunNotFinishedError` if it is still running."""
    summary = run.summary()
    if not summary.status.is_terminal:
        raise RunNotFinishedError(
            f"{action} needs a finished run, and {run.run_id!r} is still "
            f"{summary.status.value} ({summary.terminal_items:,}/{summary.total_items:,} "
            f"items terminal): batchor wait {run.run_id} first{alternative}"
        )
    return summary


def plural(count: int, noun: str) -> str:
    """``1 item``, ``2 items``, ``10,000 items``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


# -- start and watch ----------------------------------------------------------------------


InputsArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="INPUT",
        exists=True,
        dir_okay=False,
        readable=True,
        help="CSV, JSONL or Parquet files (by extension); several become one input, "
        "with item ids prefixed per file.",
    ),
]
IdColumnOption = Annotated[
    str,
    typer.Option("--id-column", metavar="COLUMN", help="Column holding each row's unique id."),
]
ModelOption = Annotated[str, typer.Option("--model", metavar="MODEL", help="Model, e.g. gpt-4.1.")]
PromptColumnOption = Annotated[
    str | None,
    typer.Option("--prompt-column", metavar="COLUMN", help="Column holding the prompt."),
]
PromptTemplateOption = Annotated[
    str | None,
    typer.Option(
        "--prompt-template",
        metavar="TEXT",
        help="Prompt built from columns, e.g. 'Classify: {text}' (Python str.format).",
    ),
]
SystemPromptOption = Annotated[
    str | None,
    typer.Option("--system-prompt", metavar="TEXT", help="System prompt for every item."),
]
StructuredOutputOption = Annotated[
    str | None,
    typer.Option(
        "--structured-output",
        metavar="MODULE:CLASS",
        help="Pydantic model each reply must validate into (importable; the working "
        "directory is on the import path).",
    ),
]
ProviderOption = Annotated[
    Provider,
    typer.Option(
        "--provider",
        help="Whose batch API runs it; the key comes from its variable (OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, GEMINI_API_KEY, AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT).",
    ),
]
EndpointOption = Annotated[
    Endpoint | None,
    typer.Option(
        "--endpoint",
        show_default="/v1/responses (azure: /v1/chat/completions)",
        help="OpenAI or Azure endpoint each request calls.",
    ),
]
EnqueuedTokenLimitOption = Annotated[
    int | None,
    typer.Option(
        "--enqueued-token-limit",
        metavar="TOKENS",
        min=1,
        help="Your organisation's enqueued-token limit for the model; batchor keeps "
        "70% of it in flight at most.",
    ),
]
EncodingOption = Annotated[
    str,
    typer.Option(
        "--encoding",
        metavar="CODEC",
        help="Text encoding of CSV inputs, e.g. cp1252 or latin-1 (UTF-8, with or "
        "without a byte-order mark, by default).",
    ),
]
CostLimitOption = Annotated[
    float | None,
    typer.Option(
        "--cost-limit",
        metavar="USD",
        help="Pause the run before a batch would take its spend (at batch prices) above this.",
    ),
]


def build_job(
    inputs: list[Path],
    *,
    id_column: str,
    model: str,
    prompt_column: str | None,
    prompt_template: str | None,
    system_prompt: str | None,
    structured_output: str | None,
    provider: Provider,
    endpoint: Endpoint | None,
    enqueued_token_limit: int | None,
    cost_limit: float | None,
    encoding: str,
    base_url: str | None,
) -> BatchJob:
    """The job ``start`` and ``plan`` describe with the same options."""
    if cost_limit is not None and cost_limit <= 0:
        raise typer.BadParameter(
            f"must be a positive number of USD, got {cost_limit:g}", param_hint="'--cost-limit'"
        )
    prompt = prompt_builder(prompt_column, prompt_template, system_prompt)
    output_model = None if structured_output is None else load_output_model(structured_output)
    return BatchJob(
        items=open_source(inputs, id_column, prompt, encoding),
        build_prompt=prompt,
        provider_config=provider_config(provider, model, endpoint, enqueued_token_limit, base_url),
        structured_output=output_model,
        batch_metadata={PROMPT_FINGERPRINT_KEY: prompt_fingerprint(id_column, prompt)},
        cost_limit_usd=cost_limit,
    )


@app.command()
def start(
    inputs: InputsArgument,
    id_column: IdColumnOption,
    model: ModelOption,
    prompt_column: PromptColumnOption = None,
    prompt_template: PromptTemplateOption = None,
    system_prompt: SystemPromptOption = None,
    encoding: EncodingOption = CSV_ENCODING,
    structured_output: StructuredOutputOption = None,
    provider: ProviderOption = Provider.OPENAI,
    endpoint: EndpointOption = None,
    enqueued_token_limit: EnqueuedTokenLimitOption = None,
    cost_limit: CostLimitOption = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            metavar="ID",
            show_default="generated",
            help="Run id; repeat start with the same id to resume an interrupted ingestion.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Then wait for the run to finish, as batchor wait.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", min=0, help="With --wait: give up after."),
    ] = None,
    poll_interval: PollIntervalOption = None,
    base_url: BaseUrlOption = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start a run from input files and print its id.

    Every row becomes one request. The whole input is stored before start
    returns; batches are submitted by whoever drives the run next (batchor
    wait, or --wait here). If ingestion is interrupted, run the same command
    with --run-id to continue where it stopped.
    """
    if timeout is not None and not wait:
        raise typer.BadParameter("--timeout needs --wait", param_hint="'--timeout'")
    if run_id is not None:
        check_run_id(run_id)
    job = build_job(
        inputs,
        id_column=id_column,
        model=model,
        prompt_column=prompt_column,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        structured_output=structured_output,
        provider=provider,
        endpoint=endpoint,
        enqueued_token_limit=enqueued_token_limit,
        cost_limit=cost_limit,
        encoding=encoding,
        base_url=base_url,
    )
    runner = open_runner(storage, artifacts, base_url=base_url)
    run_id = run_id or new_run_id(runner.clock)
    note(f"{run_id}: {_ingestion_plan(runner, run_id, job, len(inputs))}")
    try:
        with IngestProgress(run_id) as progress:
            run = runner.start(job, run_id=run_id, progress=progress)
    except KeyboardInterrupt:
        note(
            f"interrupted: run {run_id} is partly ingested; run the same command with "
            f"--run-id {run_id} to resume"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    summary = run.summary()
    if not wait:
        note(
            f"{run_id}: {plural(summary.total_items, 'item')} stored; batchor wait {run_id} runs it"
        )
        if json_output:
            echo_json(summary_record(summary))
        else:
            typer.echo(run.run_id)
        return
    if not json_output:
        typer.echo(run.run_id)
    _wait_and_report(run, timeout, poll_interval, json_output)


@app.command()
def plan(
    inputs: InputsArgument,
    id_column: IdColumnOption,
    model: ModelOption,
    prompt_column: PromptColumnOption = None,
    prompt_template: PromptTemplateOption = None,
    system_prompt: SystemPromptOption = None,
    structured_output: StructuredOutputOption = None,
    provider: ProviderOption = Provider.OPENAI,
    endpoint: EndpointOption = None,
    enqueued_token_limit: EnqueuedTokenLimitOption = None,
    cost_limit: CostLimitOption = None,
    encoding: EncodingOption = CSV_ENCODING,
    base_url: BaseUrlOption = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what start would submit, without storing or submitting anything.

    Takes the same options as start. Reads every row and builds every request
    (so a plan that succeeds is an input that ingests), then prints the items,
    batches, estimated tokens and cost at batch prices, and the first request.
    """
    job = build_job(
        inputs,
        id_column=id_column,
        model=model,
        prompt_column=prompt_column,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        structured_output=structured_output,
        provider=provider,
        endpoint=endpoint,
        enqueued_token_limit=enqueued_token_limit,
        cost_limit=cost_limit,
        encoding=encoding,
        base_url=base_url,
    )
    planned = open_runner(storage, artifacts).plan(job)
    if json_output:
        echo_json(asdict(planned))
    else:
        typer.echo(format_plan(planned, cost_limit))


def load_output_model(reference: str) -> type[BaseModel]:
    """The ``--structured-output`` class, imported now so a typo fails before any run."""
    module, _, name = reference.partition(":")
    if not module or not name:
        raise typer.BadParameter(
            f"{reference!r} is not MODULE:CLASS, e.g. myproject.models:Ticket",
            param_hint="'--structured-output'",
        )
    model = import_model(reference)
    if model is BaseModel:
        raise typer.BadParameter(
            f"{reference} is pydantic.BaseModel itself, which has no fields; name your own "
            "model class, e.g. myproject.models:Ticket",
            param_hint="'--structured-output'",
        )
    return model


def provider_config(
    provider: Provider,
    model: str,
    endpoint: Endpoint | None,
    enqueued_token_limit: int | None,
    base_url: str | None,
) -> ProviderConfig:
    """The provider settings of a CLI run. The key stays in the environment (the
    provider reads it from its own variables); ``--base-url``, else the provider's
    address variable (``$OPENAI_BASE_URL``, ``$GEMINI_BASE_URL``...), is stored with
    the run when set (without any credentials it holds)."""
    config_class = provider_config_class(provider.value)
    require_api_key(config_class)
    settings: dict[str, object] = {"model": model}
    base_url = base_url or (
        os.environ.get(config_class.BASE_URL_ENV) if config_class.BASE_URL_ENV else None
    )
    if base_url:
        settings["base_url"] = base_url
    if endpoint is not None:
        if "endpoint" not in config_class.model_fields:
            raise typer.BadParameter(
                f"{provider.value} takes no --endpoint (it is for openai and azure)",
                param_hint="'--endpoint'",
            )
        settings["endpoint"] = endpoint.value
    if enqueued_token_limit is not None:
        if provider is Provider.ANTHROPIC:
            raise typer.BadParameter(
                "Anthropic's queue limit counts requests, not tokens; batchor learns it "
                "from the provider's refusals",
                param_hint="'--enqueued-token-limit'",
            )
        settings["enqueue_limits"] = OpenAIEnqueueLimitConfig(
            enqueued_token_limit=enqueued_token_limit
        )
    return config_class(**settings)


def _ingestion_plan(runner: BatchRunner, run_id: str, job: BatchJob, input_count: int) -> str:
    """What ``start`` is about to do for ``run_id``: start, resume or nothing. Refuses
    to resume a run whose rows became requests another way."""
    try:
        existing = runner.get_run(run_id)
    except RunNotFoundError:
        return f"starting; ingesting {plural(input_count, 'input file')}"
    stored = existing.config.batch_metadata.get(PROMPT_FINGERPRINT_KEY)
    if stored != job.batch_metadata[PROMPT_FINGERPRINT_KEY]:
        raise SourceMismatchError(
            f"run {run_id!r} was started "
            + ("from Python" if stored is None else "with other options")
            + ": --id-column, --prompt-column, --prompt-template and --system-prompt must be "
            "the same to resume it; or start a new run with another --run-id"
        )
    before = existing.summary()
    if before.ingest_complete:
        return f"every item is already stored ({before.total_items:,}); nothing to ingest"
    return f"resuming ingestion after {plural(before.total_items, 'stored item')}"


@app.command()
def status(
    run_id: RunIdArgument,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh", help="Advance the run one step (poll the provider) before reporting."
        ),
    ] = False,
    base_url: BaseUrlOption = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a run's status, item counts, batches, tokens and cost.

    Reads the storage only, unless --refresh.
    """
    run = open_run(storage, artifacts, run_id, base_url)
    summary = run.refresh() if refresh else run.summary()
    if json_output:
        echo_json(summary_record(summary))
    else:
        typer.echo(format_summary(summary))


@app.command()
def runs(
    active: Annotated[bool, typer.Option("--active", help="Only runs still running.")] = False,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the runs in the storage, newest first."""
    summaries = [
        run.summary() for run in open_runner(storage, artifacts).list_runs(active_only=active)
    ]
    if json_output:
        echo_json([summary_record(summary) for summary in summaries])
    elif summaries:
        typer.echo(format_runs_table(summaries))
    else:
        note("no runs" + (" still running" if active else "") + " in this storage")


@app.command()
def wait(
    run_id: RunIdArgument,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0,
            show_default="no limit",
            help="Give up (exit 3) after this long; the run goes on.",
        ),
    ] = None,
    poll_interval: PollIntervalOption = None,
    base_url: BaseUrlOption = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Drive a run until it finishes, showing progress.

    Exits 0 when every item completed, 1 when the run ended with failures or
    was cancelled. Interrupting (Ctrl-C) stops watching, not the run.
    """
    run = open_run(storage, artifacts, run_id, base_url)
    _wait_and_report(run, timeout, poll_interval, json_output)


def _wait_and_report(
    run: Run, timeout: float | None, poll_interval: float | None, json_output: bool
) -> None:
    if not run.status.is_terminal:
        require_api_key(run.config.provider)
    summary = run.summary()
    try:
        with WaitProgress() as progress:
            for summary in run.watch(timeout, poll_interval=poll_interval):
                progress.update(summary)
    except KeyboardInterrupt:
        note(f"stopped watching; run {run.run_id} goes on (batchor wait {run.run_id})")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if json_output:
        echo_json(summary_record(summary))
    else:
        typer.echo(format_summary(summary))
    if summary.status is not RunStatus.COMPLETED:
        raise typer.Exit(ExitCode.RUN_FAILED)


# -- results ------------------------------------------------------------------------------


def export_record(run_id: str, written: TerminalResultsExport) -> dict[str, object]:
    """What ``results``/``export --json`` print: the file, the count and the cursor."""
    return {
        "run_id": run_id,
        "path": str(written.path),
        "count": written.count,
        "next_after_sequence": written.next_after_sequence,
    }


def _export_results(
    run: Run,
    output: Path,
    *,
    after_sequence: int = 0,
    append: bool = False,
    limit: int | None = None,
) -> TerminalResultsExport:
    """``run.export_terminal_results``; Ctrl-C says that the file was left as it was."""
    try:
        return run.export_terminal_results(
            output, after_sequence=after_sequence, append=append, limit=limit
        )
    except KeyboardInterrupt:
        note(
            f"interrupted: {output} was left as it was"
            + (" (nothing appended)" if append else "")
            + "; run the command again to write it"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def _check_results_file(path: Path) -> None:
    if path.suffix.lower() not in (".jsonl", ".parquet"):
        raise typer.BadParameter(
            f"{path}: write .jsonl or .parquet (by extension)", param_hint="'--output'"
        )


@app.command()
def results(
    run_id: RunIdArgument,
    output: ResultsFileOption,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write every result of a finished run to a JSONL or Parquet file."""
    _check_results_file(output)
    run = open_run(storage, artifacts, run_id)
    require_terminal(run, "results", ", or batchor export for what has finished so far")
    written = _export_results(run, output)
    if json_output:
        echo_json(export_record(run_id, written))
    else:
        typer.echo(f"wrote {plural(written.count, 'result')} to {written.path}")


@app.command()
def export(
    run_id: RunIdArgument,
    output: ResultsFileOption,
    after_sequence: Annotated[
        int,
        typer.Option(
            "--after-sequence",
            metavar="N",
            min=0,
            help="Only results after this sequence number (the last export's next_after_sequence).",
        ),
    ] = 0,
    append: Annotated[
        bool, typer.Option("--append", help="Append to the file (JSONL only).")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", min=1, help="Write at most N results."),
    ] = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write the results that finished after a cursor, while the run goes on.

    Prints next_after_sequence: pass it as --after-sequence next time (with
    --append to grow one JSONL file).
    """
    _check_results_file(output)
    run = open_run(storage, artifacts, run_id)
    written = _export_results(
        run, output, after_sequence=after_sequence, append=append, limit=limit
    )
    if json_output:
        echo_json(export_record(run_id, written))
    else:
        typer.echo(
            f"wrote {plural(written.count, 'result')} to {written.path}; "
            f"next_after_sequence={written.next_after_sequence}"
        )


@artifacts_app.command("export")
def artifacts_export(
    run_id: RunIdArgument,
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", file_okay=False, help="Destination; files go in DIR/RUN_ID/."
        ),
    ],
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy a finished run's artifacts and results into DIR/RUN_ID/.

    Writes the request and raw output files, results.jsonl and manifest.json
    (path, bytes and sha256 of each file).
    """
    run = open_run(storage, artifacts, run_id)
    require_terminal(run, "artifacts export")
    exported = run.export_artifacts(directory)
    if json_output:
        echo_json(
            {
                "run_id": run_id,
                "directory": str(exported.directory),
                "manifest_path": str(exported.manifest_path),
                "results_path": str(exported.results_path),
                "exported_artifact_paths": exported.exported_artifact_paths,
            }
        )
    else:
        typer.echo(
            f"exported {plural(len(exported.exported_artifact_paths), 'artifact')} and "
            "results.jsonl "
            f"to {exported.directory} (manifest: {exported.manifest_path})"
        )


@artifacts_app.command("prune")
def artifacts_prune(
    run_id: RunIdArgument,
    requests_only: Annotated[
        bool,
        typer.Option(
            "--requests-only",
            help="Keep raw output/error files (which may only go after artifacts export).",
        ),
    ] = False,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a finished run's artifacts.

    Request files can go at once; raw output and error files only after
    batchor artifacts export.
    """
    run = open_run(storage, artifacts, run_id)
    require_terminal(run, "artifacts prune")
    try:
        pruned = run.prune_artifacts(include_raw_outputs=not requests_only)
    except ArtifactRuleError:
        raise ArtifactRuleError(
            f"the raw output files of run {run_id!r} must be exported before they are pruned: "
            f"batchor artifacts export {run_id} DIR first, or prune with --requests-only"
        ) from None
    if json_output:
        echo_json(
            {
                "run_id": run_id,
                "removed_artifact_paths": pruned.removed_artifact_paths,
                "kept_artifact_paths": pruned.kept_artifact_paths,
            }
        )
    else:
        typer.echo(
            f"removed {plural(len(pruned.removed_artifact_paths), 'artifact')}, "
            f"kept {len(pruned.kept_artifact_paths):,}"
        )


# -- control ------------------------------------------------------------------------------


def _report_control(run: Run, message: str, json_output: bool) -> None:
    summary = run.summary()
    if json_output:
        echo_json(summary_record(summary))
    else:
        typer.echo(message)


@app.command()
def pause(
    run_id: RunIdArgument,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop submitting new batches; batches in flight are still collected."""
    run = open_run(storage, artifacts, run_id)
    run.pause()
    _report_control(run, f"paused {run_id}: no new batches until batchor resume", json_output)


@app.command()
def resume(
    run_id: RunIdArgument,
    cost_limit: Annotated[
        float | None,
        typer.Option(
            "--cost-limit",
            metavar="USD",
            help="Raise (or set) the run's cost limit first; a run paused at it resumes.",
        ),
    ] = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Let a paused run submit batches again."""
    run = open_run(storage, artifacts, run_id)
    if cost_limit is not None:
        if cost_limit <= 0:
            raise typer.BadParameter(
                f"must be a positive number of USD, got {cost_limit:g}",
                param_hint="'--cost-limit'",
            )
        run.set_cost_limit(cost_limit)
    if run.summary().control_state is not RunControlState.RUNNING:
        run.resume()
    limit = f" (cost limit ${cost_limit:,.4f})" if cost_limit is not None else ""
    _report_control(run, f"resumed {run_id}{limit}", json_output)


@app.command()
def cancel(
    run_id: RunIdArgument,
    remote: Annotated[
        bool,
        typer.Option("--remote", help="Also cancel the provider's batches now in flight."),
    ] = False,
    base_url: BaseUrlOption = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cancel a run, drain-style.

    Nothing new is submitted; batches in flight are still collected (or, with
    --remote, cancelled at the provider), then every unfinished item fails with
    run_cancelled. The run ends when next driven (batchor wait).
    """
    run = open_run(storage, artifacts, run_id, base_url)
    if remote:
        require_api_key(run.config.provider)
    run.cancel(remote=remote)
    _report_control(
        run,
        f"cancel requested for {run_id}"
        + (" (provider batches cancelled)" if remote else "")
        + f"; batchor wait {run_id} drains it",
        json_output,
    )


# -- tools --------------------------------------------------------------------------------


@app.command()
def worker(
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="Stop once no run needs driving (else run until Ctrl-C)."
        ),
    ] = False,
    max_runs_per_tick: Annotated[
        int,
        typer.Option("--max-runs-per-tick", metavar="N", min=1, help="Runs claimed at a time."),
    ] = 1,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            metavar="SECONDS",
            min=1.0,
            help="How long a claimed run stays this worker's without a sign of life.",
        ),
    ] = LEASE_TTL_SECONDS,
    poll_interval: PollIntervalOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Drive every active run in the storage until stopped (SIGTERM/Ctrl-C) or idle.

    Run several workers against one PostgreSQL storage to share the runs: each run
    is driven by one worker at a time and a dead worker's runs are taken over.
    """
    from dataclasses import asdict

    from batchor.worker import run_worker

    runner = open_runner(storage, artifacts)
    note(f"worker {runner.lease_owner} driving runs in {runner.storage!r}")
    report = run_worker(
        runner.storage,
        runner.artifact_store,
        poll_interval=poll_interval,
        max_runs_per_tick=max_runs_per_tick,
        until_idle=until_idle,
        lease_ttl=lease_ttl,
        base_url=base_url or None,
    )
    if json_output:
        echo_json(asdict(report))
    else:
        typer.echo(
            f"worker stopped ({report.stop_reason}): {plural(report.steps, 'step')}, "
            f"{plural(len(report.finished_run_ids), 'run')} finished, "
            f"{plural(report.errors, 'error')}"
        )


# The emulator's flags and behaviour live with the server, so that `batchor emulator`
# and `python -m batchor.testing` are one command.
app.command("emulator")(emulator_command)


# -- entry point --------------------------------------------------------------------------


def exit_code_for(error: BatchorError) -> ExitCode:
    """The exit code of a library error: usage unless the environment failed."""
    if isinstance(error, RunTimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(error, ProviderError | StorageError):
        return ExitCode.ENVIRONMENT
    return ExitCode.USAGE


def _error_line(message: str) -> str:
    """``Error: message`` on one line, with the API key (should a message ever hold
    it) masked."""
    line = " ".join(message.split())
    for config in PROVIDER_CONFIGS.values():
        for variable in config.API_KEY_ENVS:
            key = os.environ.get(variable)
            if key and len(key) >= 8:
                line = line.replace(key, "***")
    return f"Error: {line}"


def _usage_hint(error: typer.TyperException) -> str:
    context = getattr(error, "ctx", None)
    path = getattr(context, "command_path", None)
    return f" (see '{path} --help')" if isinstance(path, str) and path else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``batchor`` with ``argv`` (default: the process arguments); returns the
    exit code. Every error is one ``Error: ...`` line on stderr, no traceback."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load_env_file(Path.cwd() / ".env")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --structured-output classes, as `python -m` would
    command = typer.main.get_command(app)
    try:
        outcome = command.main(arguments or ["--help"], prog_name="batchor", standalone_mode=False)
    except typer.TyperException as error:
        typer.echo(_error_line(error.format_message()) + _usage_hint(error), err=True)
        return error.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return ExitCode.INTERRUPTED
    except BatchorError as error:
        typer.echo(_error_line(str(error)), err=True)
        return exit_code_for(error)
    except OSError as error:
        typer.echo(_error_line(str(error)), err=True)
        return ExitCode.ENVIRONMENT
    return outcome if isinstance(outcome, int) else ExitCode.OK
