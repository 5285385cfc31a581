"""Reading an OpenAI batch input file the way OpenAI validates it.

:func:`scan_input_file` streams the JSONL file once, at batch creation, and
returns what the batch needs: its custom ids, model, token count and any
validation errors. The errors only surface (batch ``failed``) when the batch
leaves ``validating``.

Error codes, as in ``errors.data[].code``:

===========================  ================================================
``empty_file``               the file has no request lines
``invalid_json_line``        a line is not a JSON object
``missing_required_parameter``  ``custom_id``, ``method``, ``url``, ``body`` or
                             ``body.model`` is absent (``param`` names it)
``invalid_value``            one of those has the wrong type, or ``method`` is
                             not ``POST`` (``param`` names it)
``url_mismatch``             ``url`` differs from the batch's ``endpoint``
``model_mismatch``           ``body.model`` differs from the first line's model
``duplicate_custom_id``      a ``custom_id`` repeats an earlier line's
``too_many_tasks``           more request lines than the per-batch maximum
``file_too_large``           the file is larger than the per-batch byte maximum
                             (judged before any line is read)
===========================  ================================================

Lines are numbered from 1; blank lines are skipped but still numbered. At most
:data:`MAX_REPORTED_ERRORS` errors are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchor.testing.openai_records import BatchErrorEntry
from batchor.testing.tokens import count_request_tokens

MAX_REPORTED_ERRORS = 1000


@dataclass(slots=True)
class InputScan:
    """What reading one input file found."""

    custom_ids: list[str] = field(default_factory=list)
    model: str | None = None
    tokens: int = 0
    request_count: int = 0
    errors: list[BatchErrorEntry] = field(default_factory=list)

    def add_error(
        self, code: str, message: str, line: int | None, param: str | None = None
    ) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(BatchErrorEntry(code=code, message=message, line=line, param=param))


def _check_line(
    request: Any, endpoint: str, scan: InputScan, seen: set[str]
) -> tuple[str, str, str | None] | None:
    """Return ``(code, message, param)`` for the first problem of one request, or None."""
    if not isinstance(request, dict):
        return ("invalid_json_line", "This line is not parseable as a valid JSON object.", None)
    for name in ("custom_id", "method", "url", "body"):
        if name not in request:
            return (
                "missing_required_parameter",
                f"Missing required parameter: '{name}'.",
                name,
            )
    custom_id, method, url, body = (
        request["custom_id"],
        request["method"],
        request["url"],
        request["body"],
    )
    if not isinstance(custom_id, str) or not custom_id:
        return ("invalid_value", "custom_id must be a non-empty string.", "custom_id")
    if method != "POST":
        return ("invalid_value", f"Invalid method {method!r}: only 'POST' is supported.", "method")
    if not isinstance(url, str):
        return ("invalid_value", "url must be a string.", "url")
    if url != endpoint:
        return (
            "url_mismatch",
            f"The url {url!r} of this request does not match the batch endpoint {endpoint!r}.",
            "url",
        )
    if not isinstance(body, dict):
        return ("invalid_value", "body must be a JSON object.", "body")
    model = body.get("model")
    if model is None:
        return (
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            "body.model",
        )
    if not isinstance(model, str) or not model:
        return ("invalid_value", "body.model must be a non-empty string.", "body.model")
    if scan.model is None:
        scan.model = model
    elif model != scan.model:
        return (
            "model_mismatch",
            f"The model {model!r} of this request differs from {scan.model!r} used earlier in "
            "the file: all requests in a batch must use the same model.",
            "body.model",
        )
    if custom_id in seen:
        return (
            "duplicate_custom_id",
            f"The custom_id {custom_id!r} for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each individual request in a batch.",
            "custom_id",
        )
    return None


def scan_input_file(path: Path, endpoint: str, max_requests: int) -> InputScan:
    """Stream ``path`` (JSONL) and validate every request line against ``endpoint``."""
    scan = InputScan()
    seen: set[str] = set()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            scan.request_count += 1
            if scan.request_count > max_requests:
                continue
            try:
                request = json.loads(raw)
            except ValueError:
                scan.add_error(
                    "invalid_json_line", "This line is not parseable as valid JSON.", number
                )
                continue
            problem = _check_line(request, endpoint, scan, seen)
            if problem is not None:
                code, message, param = problem
                scan.add_error(code, message, number, param)
                continue
            custom_id = request["custom_id"]
            seen.add(custom_id)
            scan.custom_ids.append(custom_id)
            scan.tokens += count_request_tokens(request["body"])
    if scan.request_count == 0:
        scan.add_error("empty_file", "The batch input file is empty.", None)
    elif scan.request_count > max_requests:
        # The code is the one OpenAI documents; the wording is ours, modelled on the
        # byte-limit message below, so a client can read the limit the same way.
        scan.errors.insert(
            0,
            BatchErrorEntry(
                code="too_many_tasks",
                message=f"The batch input file has {scan.request_count} requests, more than the "
                f"{max_requests} maximum for the {scan.model} model. Please try again with a "
                "smaller batch.",
            ),
        )
    return scan


def oversized_file_error(path: Path, max_bytes: int) -> InputScan:
    """The scan of a file over the per-batch byte limit: no line is judged, only the
    first line's model is read (for the message).

    The message is the one api.openai.com sends (e.g. "The batch input file is larger
    than the 209715200 maximum for the gpt-4o model. Please try again with a smaller
    batch."); OpenAI does not document the error code, ``file_too_large`` is ours.
    """
    scan = InputScan()
    with path.open("rb") as lines:
        for raw in lines:
            if raw.strip():
                try:
                    first = json.loads(raw)
                    model = first["body"]["model"]
                except (ValueError, KeyError, TypeError):
                    model = None
                scan.model = model if isinstance(model, str) else None
                break
    scan.add_error(
        "file_too_large",
        f"The batch input file is larger than the {max_bytes} maximum for the "
        f"{scan.model or 'requested'} model. Please try again with a smaller batch.",
        None,
    )
    return scan
