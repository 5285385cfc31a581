"""A run's structured output as one process sees it: which class, if any, to use.

A run stores two things about its output model: a reference to the class
(``module:QualName``) and the JSON schema its requests asked for. The class may
be importable here, not importable (defined in another program's ``__main__``,
moved, renamed), or importable but changed since the run started. None of that
may strand a run or hide a paid result:

- **collecting** a reply checks it against what the requests asked for: with the
  class when its schema is still the stored one (so its own validators apply),
  else against the stored schema (:func:`~batchor.providers.instances.schema_problem`);
- **reading** a result validates the stored text with the class as it is now;
  when that fails, or the class cannot be imported, the result has
  ``output=None``, its ``output_text``, and ``output_error`` saying why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ValidationError

from batchor.engine.config import RunConfig
from batchor.errors import BatchorError, StructuredOutputImportError
from batchor.providers.base import OutcomeKind, OutputKind, RequestOutcome
from batchor.providers.instances import schema_problem

logger = logging.getLogger("batchor")


@dataclass(frozen=True, slots=True)
class ReadOutput:
    """What a stored reply reads as: ``output`` (None when it cannot be had) and,
    then, ``error`` saying why."""

    output: Any
    error: str | None = None


class StructuredOutput:
    """How one process turns a run's reply texts into outputs (see the module docstring).

    ``load_class`` returns the output class (the job's own, or one imported from
    the stored reference); it may raise :class:`StructuredOutputImportError`.
    """

    def __init__(self, config: RunConfig, load_class: Callable[[], type[BaseModel] | None]) -> None:
        self.config = config
        self._load_class = load_class
        self._warned = False

    @cached_property
    def _loaded(self) -> tuple[type[BaseModel] | None, str | None]:
        if self.config.structured_output is None:
            return None, None
        try:
            return self._load_class(), None
        except StructuredOutputImportError as exc:
            return None, str(exc)

    @property
    def output_class(self) -> type[BaseModel] | None:
        """The class outputs are validated into here (None: not structured, or not importable)."""
        return self._loaded[0]

    @property
    def unavailable(self) -> str | None:
        """Why a structured run's class cannot be used here (None when it can)."""
        return self._loaded[1]

    @cached_property
    def _class_matches_requests(self) -> bool:
        """Whether the class still has the schema the run's requests asked for."""
        model = self.output_class
        if model is None:
            return False
        try:
            return self.config.provider.output_schema(model) == self.config.response_schema
        except BatchorError:
            return False  # the class changed so much it no longer passes the rules

    @property
    def _checks_replies(self) -> bool:
        return (
            self.config.structured_output is not None
            and self.config.provider.output_kind is OutputKind.TEXT
        )

    def check_reply(self, outcome: RequestOutcome) -> RequestOutcome:
        """``outcome``, or a retryable ``invalid_output`` failure when its text does not
        satisfy what the request asked for."""
        if not (self._checks_replies and outcome.succeeded):
            return outcome
        assert outcome.output_text is not None
        model = self.output_class
        if model is not None and self._class_matches_requests:
            try:
                model.model_validate_json(outcome.output_text)
            except ValidationError as exc:
                problem = f"{_first_error(exc)} ({exc.error_count()} error(s))"
                return _invalid(outcome, model.__name__, problem)
            return outcome
        self._warn_once()
        name = self.config.schema_name
        try:
            value = json.loads(outcome.output_text)
        except ValueError as exc:
            return _invalid(outcome, name, f"not JSON ({exc})")
        mismatch = schema_problem(self.config.response_schema or {}, value)
        if mismatch is not None:
            return _invalid(outcome, name, f"{mismatch} (checked against the run's stored schema)")
        return outcome

    def _warn_once(self) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "the structured-output class %s %s; replies are checked against the JSON schema "
            "the run's requests asked for",
            self.config.structured_output,
            "cannot be imported here" if self.unavailable else "changed since the run started",
        )

    def read(self, output_text: str) -> ReadOutput:
        """The output a stored reply reads as now (see :class:`ReadOutput`)."""
        if self.config.structured_output is None:
            if self.config.provider.output_kind is OutputKind.TEXT:
                return ReadOutput(None)
            return ReadOutput(json.loads(output_text))
        model = self.output_class
        if model is None:
            return ReadOutput(
                None,
                f"{self.unavailable}. output is None; output_text holds the reply as received "
                "(it was checked against the run's schema when collected)",
            )
        try:
            return ReadOutput(model.model_validate_json(output_text))
        except ValidationError as exc:
            changed = "" if self._class_matches_requests else " (the class changed since the run)"
            return ReadOutput(
                None,
                f"the stored reply does not validate as {self.config.structured_output} now"
                f"{changed}: {_first_error(exc)} ({exc.error_count()} error(s)); output_text "
                "holds the reply",
            )


def _first_error(exc: ValidationError) -> str:
    """``field 'a.b': Field required`` for the first error of ``exc``."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    where = f"field {location!r}" if location else "the reply"
    return f"{where}: {first.get('msg')}"


def _invalid(outcome: RequestOutcome, model_name: str, problem: str) -> RequestOutcome:
    return RequestOutcome(
        custom_id=outcome.custom_id,
        kind=OutcomeKind.FAILED,
        output_text=outcome.output_text,
        error_code="invalid_output",
        error_message=f"the reply does not validate as {model_name}: {problem}",
        retryable=True,
        usage=outcome.usage,
    )
