"""The local server's command line: one set of flags for ``batchor emulator`` and
``python -m batchor.testing``.

:func:`emulator` is the command itself (a Typer command function): ``batchor``
registers it as its ``emulator`` command and :func:`main` runs it alone. Every
setting of :class:`~batchor.testing.LocalBatchServer` has a flag, and so has every
fault of :class:`~batchor.testing.Faults`.

A fault flag takes a *spec*: a leading value, then ``key=value`` options and bare
switches, separated by commas. ``message=`` must come last: it takes the rest of
the spec, commas included::

    --http-error 429,path=/v1/batches,method=POST,times=20,retry-after=2
    --stall 30,path=/v1/batches,method=POST,after-processing
    --fail-request row-7,status=400,code=invalid_prompt,message=Bad, bad prompt
    --expire-batches 2,completed-fraction=0.6,no-error-lines

``times`` is a count or ``forever``. Batch faults queue in a fixed order: those of
``--expire-batches`` first, then those of ``--fail-batches``.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from batchor.testing import anthropic_records
from batchor.testing.faults import Faults
from batchor.testing.models import (
    MALFORM_KINDS,
    MAX_BATCH_FILE_BYTES,
    MAX_FILE_BYTES,
    MAX_REQUESTS_PER_BATCH,
    BatchPace,
    MalformKind,
    UsageSplit,
)
from batchor.testing.replies import Responder
from batchor.testing.server import LocalBatchServer, serve

FaultPlan = Callable[[Faults], None]
"""A parsed fault flag: applies its fault to a server's plan."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """A fault flag's value, split: the leading value, ``key=value`` options, switches."""

    flag: str
    lead: str | None
    options: dict[str, str]
    switches: frozenset[str]

    def _fail(self, problem: str) -> typer.BadParameter:
        return typer.BadParameter(problem, param_hint=f"'{self.flag}'")

    def require_lead(self, what: str) -> str:
        if not self.lead:
            raise self._fail(f"starts with {what}")
        return self.lead

    def number(self, text: str, what: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise self._fail(f"{what} must be a number, got {text!r}") from None

    def integer(self, text: str, what: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise self._fail(f"{what} must be an integer, got {text!r}") from None

    def times(self, default: int | None = 1) -> int | None:
        raw = self.options.get("times")
        if raw is None:
            return default
        return None if raw == "forever" else self.integer(raw, "times")

    def kind(self) -> MalformKind:
        raw = self.options.get("kind", "invalid_json_line").replace("-", "_")
        if raw not in MALFORM_KINDS:
            raise self._fail(f"kind must be one of {', '.join(MALFORM_KINDS)}, got {raw!r}")
        return raw


def _split(flag: str, text: str, keys: Sequence[str], switches: Sequence[str] = ()) -> _Spec:
    """Parse ``LEAD,key=value,...,switch,...,message=rest``; unknown keys are an error."""
    head, found, message = text.partition("message=")
    if found and "message" not in keys:
        raise typer.BadParameter("takes no message=", param_hint=f"'{flag}'")
    options: dict[str, str] = {"message": message} if found else {}
    seen: set[str] = set()
    lead: str | None = None
    for index, item in enumerate(part.strip() for part in head.split(",")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        if equals:
            if key not in keys:
                raise typer.BadParameter(
                    f"unknown option {key!r} (known: {', '.join(keys)})", param_hint=f"'{flag}'"
                )
            options[key] = value
        elif item in switches:
            seen.add(item)
        elif index == 0:
            lead = item
        else:
            raise typer.BadParameter(f"unexpected {item!r}", param_hint=f"'{flag}'")
    return _Spec(flag, lead, options, frozenset(seen))


def _http_error(text: str) -> FaultPlan:
    spec = _split(
        "--http-error", text, ("method", "path", "times", "retry-after", "code", "message")
    )
    status = spec.integer(spec.require_lead("an HTTP status"), "the status")
    retry = spec.options.get("retry-after")
    retry_after = None if retry is None else spec.number(retry, "retry-after")
    times = spec.times()
    return lambda faults: faults.http_error(
        spec.options.get("method", "*"),
        spec.options.get("path", "/v1"),
        status,
        times=times,
        retry_after=retry_after,
        message=spec.options.get("message"),
        code=spec.options.get("code"),
    )


def _stall(text: str) -> FaultPlan:
    spec = _split("--stall", text, ("method", "path", "times"), ("after-processing",))
    seconds = spec.number(spec.require_lead("the seconds to hold a call"), "the seconds")
    times = spec.times()
    return lambda faults: faults.stall(
        spec.options.get("method", "*"),
        spec.options.get("path", "/v1"),
        seconds,
        after_processing="after-processing" in spec.switches,
        times=times,
    )


def _request_fault(spec: _Spec) -> tuple[int, str, str | None]:
    status = spec.integer(spec.options.get("status", "500"), "status")
    return status, spec.options.get("code", "server_error"), spec.options.get("message")


def _fail_request(text: str) -> FaultPlan:
    spec = _split("--fail-request", text, ("status", "code", "times", "message"))
    custom_id = spec.require_lead("a custom id")
    status, code, message = _request_fault(spec)
    times = spec.times()

    def plan(faults: Faults) -> None:
        if message is None:
            faults.fail_requests([custom_id], status, code, times=times)
        else:
            faults.fail_requests([custom_id], status, code, message, times=times)

    return plan


def _fail_request_share(text: str) -> FaultPlan:
    spec = _split("--fail-request-share", text, ("status", "code", "message"))
    share = spec.number(spec.require_lead("the share of requests (0-1)"), "the share")
    status, code, message = _request_fault(spec)

    def plan(faults: Faults) -> None:
        if message is None:
            faults.fail_request_share(share, status, code)
        else:
            faults.fail_request_share(share, status, code, message)

    return plan


def _fail_batches(text: str) -> FaultPlan:
    spec = _split("--fail-batches", text, ("code", "completed-fraction", "message"))
    count = spec.integer(spec.require_lead("how many batches"), "the count")
    fraction = spec.number(spec.options.get("completed-fraction", "0"), "completed-fraction")
    code = spec.options.get("code", "batch_failed")
    message = spec.options.get("message")

    def plan(faults: Faults) -> None:
        if message is None:
            faults.fail_next_batch(code, completed_fraction=fraction, times=count)
        else:
            faults.fail_next_batch(code, message, fraction, times=count)

    return plan


def _expire_batches(text: str) -> FaultPlan:
    spec = _split("--expire-batches", text, ("completed-fraction",), ("no-error-lines",))
    count = spec.integer(spec.require_lead("how many batches"), "the count")
    fraction = spec.number(spec.options.get("completed-fraction", "0.5"), "completed-fraction")
    lines = "no-error-lines" not in spec.switches
    return lambda faults: faults.expire_next_batch(fraction, times=count, expired_lines=lines)


def _malform_line(text: str) -> FaultPlan:
    spec = _split("--malform-line", text, ("kind", "times"))
    custom_id = spec.require_lead("a custom id")
    kind, times = spec.kind(), spec.times()
    return lambda faults: faults.malform_output([custom_id], kind, times=times)


def _malform_line_share(text: str) -> FaultPlan:
    spec = _split("--malform-line-share", text, ("kind",))
    share = spec.number(spec.require_lead("the share of lines (0-1)"), "the share")
    kind = spec.kind()
    return lambda faults: faults.malform_output_share(share, kind)


_FAULT_FLAGS: tuple[tuple[str, Callable[[str], FaultPlan]], ...] = (
    ("--http-error", _http_error),
    ("--stall", _stall),
    ("--fail-request", _fail_request),
    ("--fail-request-share", _fail_request_share),
    ("--expire-batches", _expire_batches),
    ("--fail-batches", _fail_batches),
    ("--malform-line", _malform_line),
    ("--malform-line-share", _malform_line_share),
)


def apply_fault_flags(faults: Faults, flags: dict[str, Sequence[str]]) -> None:
    """Parse each fault flag's specs (keyed by flag name) and add them to ``faults``.

    Raises :class:`typer.BadParameter` naming the flag for a spec that does not parse
    or a fault :class:`Faults` refuses.
    """
    for flag, parse in _FAULT_FLAGS:
        for text in flags.get(flag, ()):
            plan = parse(text)
            try:
                plan(faults)
            except ValueError as error:
                raise typer.BadParameter(str(error), param_hint=f"'{flag}'") from None


def load_responder(reference: str) -> Responder:
    """Import the ``--responder`` function from its ``module:function`` reference."""
    module_name, _, name = reference.partition(":")
    hint = "'--responder'"
    if not module_name or not name:
        raise typer.BadParameter(
            f"{reference!r} is not MODULE:FUNCTION, e.g. myproject.fakes:answer", param_hint=hint
        )
    try:
        target: object = importlib.import_module(module_name)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(
            f"cannot import {reference!r} ({exc}); is its module importable here (PYTHONPATH)?",
            param_hint=hint,
        ) from exc
    if not callable(target):
        raise typer.BadParameter(f"{reference!r} is not a function", param_hint=hint)
    return target


_TOKEN_LIMIT = "'--token-limit'"


def _token_limit(text: str) -> tuple[str, int]:
    model, separator, tokens = text.rpartition("=")
    if not separator or not model:
        raise typer.BadParameter(f"expected MODEL=TOKENS, got {text!r}", param_hint=_TOKEN_LIMIT)
    try:
        return model, int(tokens.replace("_", "").replace(",", ""))
    except ValueError:
        raise typer.BadParameter(
            f"TOKENS must be an integer in {text!r}", param_hint=_TOKEN_LIMIT
        ) from None


Specs = list[str] | None


def emulator(
    port: Annotated[
        int,
        typer.Option(
            "--port", metavar="PORT", min=0, max=65535, help="Port to listen on (0: any free)."
        ),
    ] = 8000,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Address to bind.")
    ] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            file_okay=False,
            show_default="temporary",
            help="Keep files and batches here, across restarts.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", metavar="KEY", help="Require exactly this bearer key."),
    ] = None,
    responder: Annotated[
        str | None,
        typer.Option(
            "--responder",
            metavar="MODULE:FUNCTION",
            show_default="the default responder",
            help="Reply with this function: request body -> reply text (or a dict, sent as JSON).",
        ),
    ] = None,
    pace_validating: Annotated[
        float,
        typer.Option(
            "--pace-validating", min=0, metavar="SECONDS", help="Seconds a batch validates."
        ),
    ] = 0.0,
    pace_in_progress: Annotated[
        float,
        typer.Option(
            "--pace-in-progress",
            min=0,
            metavar="SECONDS",
            help="Seconds a batch processes, on top of --pace-per-request.",
        ),
    ] = 0.0,
    pace_per_request: Annotated[
        float,
        typer.Option(
            "--pace-per-request",
            min=0,
            metavar="SECONDS",
            help="Seconds of processing added per request of a batch.",
        ),
    ] = 0.0,
    pace_finalizing: Annotated[
        float,
        typer.Option(
            "--pace-finalizing", min=0, metavar="SECONDS", help="Seconds a batch finalizes."
        ),
    ] = 0.0,
    pace_cancelling: Annotated[
        float,
        typer.Option(
            "--pace-cancelling",
            min=0,
            metavar="SECONDS",
            help="Seconds from cancel to cancelled.",
        ),
    ] = 0.0,
    token_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--token-limit",
            metavar="MODEL=TOKENS",
            help="Enqueued-token limit of a model (repeatable).",
        ),
    ] = None,
    default_token_limit: Annotated[
        int | None,
        typer.Option(
            "--default-token-limit",
            min=0,
            metavar="TOKENS",
            show_default="unlimited",
            help="Enqueued-token limit of the models not given --token-limit.",
        ),
    ] = None,
    max_requests_per_batch: Annotated[
        int,
        typer.Option(
            "--max-requests-per-batch",
            min=1,
            metavar="N",
            help="More requests fail the batch (too_many_tasks).",
        ),
    ] = MAX_REQUESTS_PER_BATCH,
    max_batch_file_bytes: Annotated[
        int,
        typer.Option(
            "--max-batch-file-bytes",
            min=1,
            metavar="BYTES",
            help="A larger input file fails the batch (file_too_large).",
        ),
    ] = MAX_BATCH_FILE_BYTES,
    max_file_bytes: Annotated[
        int,
        typer.Option(
            "--max-file-bytes",
            min=1,
            metavar="BYTES",
            help="A larger upload is refused (400 file_too_large).",
        ),
    ] = MAX_FILE_BYTES,
    anthropic_queue_limit: Annotated[
        int | None,
        typer.Option(
            "--anthropic-queue-limit",
            min=1,
            metavar="REQUESTS",
            show_default="unlimited",
            help="Anthropic: requests the processing queue holds; a create beyond it is 429.",
        ),
    ] = None,
    anthropic_max_requests_per_batch: Annotated[
        int,
        typer.Option(
            "--anthropic-max-requests-per-batch",
            min=1,
            metavar="N",
            help="Anthropic: a create with more requests is 400.",
        ),
    ] = anthropic_records.MAX_REQUESTS_PER_BATCH,
    anthropic_max_batch_bytes: Annotated[
        int,
        typer.Option(
            "--anthropic-max-batch-bytes",
            min=1,
            metavar="BYTES",
            help="Anthropic: a larger create body is 413 request_too_large.",
        ),
    ] = anthropic_records.MAX_BATCH_BYTES,
    cached_fraction: Annotated[
        float,
        typer.Option(
            "--cached-fraction",
            min=0,
            max=1,
            metavar="SHARE",
            help="Share of each request's input tokens reported as cached.",
        ),
    ] = 0.0,
    reasoning_ratio: Annotated[
        float,
        typer.Option(
            "--reasoning-ratio",
            min=0,
            metavar="RATIO",
            help="Reasoning tokens added per output text token.",
        ),
    ] = 0.0,
    http_error: Annotated[
        Specs,
        typer.Option(
            "--http-error",
            metavar="STATUS,...",
            help="Answer calls with an HTTP error. Options: method=, path= (default /v1), "
            "times= (default 1), retry-after=, code=, message=.",
        ),
    ] = None,
    stall: Annotated[
        Specs,
        typer.Option(
            "--stall",
            metavar="SECONDS,...",
            help="Hold calls before answering. Options: method=, path=, times=, "
            "after-processing (the call takes effect, only the answer is late).",
        ),
    ] = None,
    fail_request: Annotated[
        Specs,
        typer.Option(
            "--fail-request",
            metavar="CUSTOM_ID,...",
            help="That request fails in its next batch. Options: status= (default 500), "
            "code=, times=, message=.",
        ),
    ] = None,
    fail_request_share: Annotated[
        Specs,
        typer.Option(
            "--fail-request-share",
            metavar="SHARE,...",
            help="That share of every batch's requests fails. Options: status=, code=, message=.",
        ),
    ] = None,
    fail_batches: Annotated[
        Specs,
        typer.Option(
            "--fail-batches",
            metavar="N,...",
            help="The next N batches (after those of --expire-batches) fail. Options: code=, "
            "completed-fraction= (run that share first), message=.",
        ),
    ] = None,
    expire_batches: Annotated[
        Specs,
        typer.Option(
            "--expire-batches",
            metavar="N,...",
            help="The next N batches expire. Options: completed-fraction= (default 0.5), "
            "no-error-lines (leave the rest without a line).",
        ),
    ] = None,
    malform_line: Annotated[
        Specs,
        typer.Option(
            "--malform-line",
            metavar="CUSTOM_ID,...",
            help="Corrupt that request's output. Options: kind= (invalid-json-line, "
            "invalid-reply-text, missing-line, unknown-id), times=.",
        ),
    ] = None,
    malform_line_share: Annotated[
        Specs,
        typer.Option(
            "--malform-line-share",
            metavar="SHARE,...",
            help="Corrupt that share of every batch's output. Options: kind=.",
        ),
    ] = None,
) -> None:
    """Serve the local batch server (OpenAI's Files + Batches, Anthropic's Message
    Batches) until Ctrl-C.

    Point batchor at it with OPENAI_BASE_URL=http://HOST:PORT/v1 or
    ANTHROPIC_BASE_URL=http://HOST:PORT, and any key. Fault flags take a spec,
    VALUE,key=value,...; each is repeatable.
    """
    server = LocalBatchServer(
        pace=BatchPace(
            validating=pace_validating,
            in_progress=pace_in_progress,
            per_request=pace_per_request,
            finalizing=pace_finalizing,
            cancelling=pace_cancelling,
        ),
        token_limits=dict(_token_limit(text) for text in token_limit or ()),
        default_token_limit=default_token_limit,
        responder=None if responder is None else load_responder(responder),
        usage=UsageSplit(cached_fraction=cached_fraction, reasoning_ratio=reasoning_ratio),
        data_dir=data_dir,
        host=host,
        port=port,
        max_file_bytes=max_file_bytes,
        max_batch_file_bytes=max_batch_file_bytes,
        max_requests_per_batch=max_requests_per_batch,
        anthropic_limits=anthropic_records.AnthropicLimits(
            max_requests_per_batch=anthropic_max_requests_per_batch,
            max_batch_bytes=anthropic_max_batch_bytes,
            queued_request_limit=anthropic_queue_limit,
        ),
        api_key=api_key,
    )
    apply_fault_flags(
        server.faults,
        {
            "--http-error": http_error or (),
            "--stall": stall or (),
            "--fail-request": fail_request or (),
            "--fail-request-share": fail_request_share or (),
            "--fail-batches": fail_batches or (),
            "--expire-batches": expire_batches or (),
            "--malform-line": malform_line or (),
            "--malform-line-share": malform_line_share or (),
        },
    )
    stop = threading.Event()

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_terminate)
    try:
        serve(server, announce=typer.echo, stop=stop)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise typer.BadParameter(
                f"{host}:{port} is already in use; stop what listens there or pick another "
                "port (--port 0 picks a free one)",
                param_hint="'--port'",
            ) from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m batchor.testing``: :func:`emulator` as a program of its own."""
    app = typer.Typer(
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    app.command()(emulator)
    command = typer.main.get_command(app)
    try:
        command.main(
            args=list(argv) if argv is not None else sys.argv[1:],
            prog_name="python -m batchor.testing",
        )
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0
