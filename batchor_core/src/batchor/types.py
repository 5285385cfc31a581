"""The value types every part of batchor shares; this module imports nothing of batchor
but :mod:`batchor.errors`.

- what a user hands in: :class:`BatchItem` and what ``build_prompt`` returns,
  :class:`PromptParts` (with :class:`Message`, :class:`ContentPart`,
  :class:`RequestOptions` and :class:`Tool` for requests of any shape);
- :class:`FrozenConfig`, the base of every settings object;
- lineage: :data:`LINEAGE_KEY` and the :class:`Lineage` it holds;
- :func:`canonical_json`, the one JSON encoding batchor stores, hashes and compares,
  and :func:`parse_json`, the one fast parser;
- :class:`Usage`, the tokens a provider reports;
- run ids (:data:`RUN_ID_PATTERN`, :func:`check_run_id`);
- references to structured-output classes (:func:`model_reference`, :func:`import_model`);
- :class:`Clock`, time as the engine sees it.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from batchor.errors import ConfigurationError, StructuredOutputImportError

JSONValue = Any
"""A value that survives ``json.dumps`` / ``json.loads`` unchanged."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One logical input: a unique id, the payload ``build_prompt`` reads, metadata.

    ``metadata`` travels with the item into its result; it must be JSON-serialisable.
    """

    item_id: str
    payload: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ConfigurationError(
                f"BatchItem.item_id must be a non-empty string, got {self.item_id!r}"
            )


ContentKind = Literal["text", "image", "file"]


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a message's content: text, an image, or a file (a PDF...).

    An image is given by ``url`` or by base64 ``data`` with its ``media_type``
    (``image/png``); a file by base64 ``data``, ``media_type`` and optionally a
    ``filename``. Build them with :meth:`of_text`, :meth:`image_url`,
    :meth:`image_data` and :meth:`file_data`. Each provider translates them into
    its own form; one it cannot express fails the ingest naming the item.
    """

    kind: ContentKind
    text: str | None = None
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    filename: str | None = None

    @classmethod
    def of_text(cls, text: str) -> ContentPart:
        return cls("text", text=text)

    @classmethod
    def image_url(cls, url: str) -> ContentPart:
        return cls("image", url=url)

    @classmethod
    def image_data(cls, data: str, media_type: str) -> ContentPart:
        """An image as base64 ``data`` (no ``data:`` prefix) of type ``media_type``."""
        return cls("image", data=data, media_type=media_type)

    @classmethod
    def file_data(cls, data: str, media_type: str, filename: str | None = None) -> ContentPart:
        """A file as base64 ``data`` of type ``media_type`` (e.g. ``application/pdf``)."""
        return cls("file", data=data, media_type=media_type, filename=filename)


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation: its role and its content (text, or parts)."""

    role: Role
    content: str | Sequence[ContentPart]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters as a
    JSON schema (an object)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str | None = None


ToolChoice = Literal["auto", "none", "required"] | str
"""``"auto"``, ``"none"``, ``"required"`` (some tool), or the name of one tool."""


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Per-request settings in neutral terms, over the provider config's
    ``request_options``; each provider translates them (``max_output_tokens``
    becomes ``max_tokens`` for Anthropic, ``maxOutputTokens`` for Gemini...).
    ``metadata`` is sent where the provider takes per-request metadata."""

    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop: Sequence[str] = ()
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoice | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptParts:
    """What ``build_prompt(item)`` returns.

    The simple form is a user ``prompt`` and an optional ``system_prompt``. For a
    whole conversation, or content beyond text (images, files), give
    ``messages`` instead of ``prompt`` (a system prompt may be either the first
    ``system`` message or ``system_prompt``). ``options`` sets per-request
    settings (temperature, max output tokens, tools...).
    """

    prompt: str = ""
    system_prompt: str | None = None
    messages: Sequence[Message] = ()
    options: RequestOptions | None = None

    def conversation(self) -> tuple[str | None, list[Message]]:
        """``(system prompt, the other messages)``: the simple form as one user message,
        ``system`` messages of ``messages`` joined into the system prompt."""
        if not self.messages:
            return self.system_prompt, [Message("user", self.prompt)]
        system = [self.system_prompt] if self.system_prompt else []
        turns: list[Message] = []
        for message in self.messages:
            if message.role == "system":
                system.append(message_text(message))
            else:
                turns.append(message)
        return ("\n\n".join(system) if system else None), turns


def message_text(message: Message) -> str:
    """The text of a message (its text parts joined by a blank line)."""
    if isinstance(message.content, str):
        return message.content
    return "\n\n".join(part.text or "" for part in message.content if part.kind == "text")


class FrozenConfig(BaseModel):
    """Base of batchor's settings objects: immutable, no unknown fields, and invalid
    values raise :class:`ConfigurationError` naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'value'}: "
                + error["msg"].removeprefix("Value error, ")
                for error in exc.errors()
            )
            raise ConfigurationError(f"invalid {type(self).__name__}: {problems}") from exc


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a provider reported (for one request, or summed over many)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    """Of ``input_tokens``, those read from the provider's prompt cache."""
    output_tokens: int = 0
    reasoning_tokens: int = 0
    """Of ``output_tokens``, those spent on reasoning."""


# -- lineage ------------------------------------------------------------------------------

LINEAGE_KEY = "batchor_lineage"
"""``metadata`` key reserved for source lineage (see :class:`Lineage`)."""


class Lineage(TypedDict):
    """Where an item came from, under ``metadata["batchor_lineage"]``.

    ``source_ref``: the file (absolute path) or other input reference;
    ``partition_id``: the partition it belongs to (Dagster), if any;
    ``source_item_index``: its 0-based position in that source;
    ``source_primary_key``: its id within that source;
    ``source_namespace``: the prefix a :class:`~batchor.CompositeItemSource` put
    before that id (``item_id == f"{source_namespace}:{source_primary_key}"``).
    """

    source_ref: str | None
    partition_id: str | None
    source_item_index: int | None
    source_primary_key: str | None
    source_namespace: str | None


LINEAGE_FIELDS: tuple[str, ...] = tuple(Lineage.__annotations__)
"""The keys of a :class:`Lineage`, in their documented order."""


def empty_lineage() -> Lineage:
    """A lineage with every key present and unknown."""
    return Lineage(
        source_ref=None,
        partition_id=None,
        source_item_index=None,
        source_primary_key=None,
        source_namespace=None,
    )


# -- canonical JSON -----------------------------------------------------------------------

_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """The one JSON text batchor stores, hashes and compares: sorted keys, no spaces,
    non-ASCII kept as is. Equal values always give equal text."""
    return _CANONICAL_ENCODER.encode(value)


def parse_json(data: bytes | str) -> Any:
    """Parse JSON text: the one parser batchor uses on hot paths (result lines,
    stored metadata), orjson, about three times the standard library's speed.
    Raises :class:`ValueError` for text that is not JSON."""
    return orjson.loads(data)


# -- run ids ------------------------------------------------------------------------------

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""What a run id may be: safe in file names, URLs and provider metadata."""


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is safe in file names and URLs, else a ConfigurationError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ConfigurationError(
            f"run_id {run_id!r} must be 1-128 characters of letters, digits, '_', '.', '-' "
            "starting with a letter or digit"
        )
    return run_id


# -- structured-output classes ------------------------------------------------------------


def model_reference(model: type[BaseModel]) -> str:
    """``module:QualName`` of a model class, the form stored with a run."""
    return f"{model.__module__}:{model.__qualname__}"


def import_model(reference: str) -> type[BaseModel]:
    """Import a structured-output class from its ``module:QualName`` reference."""
    module_name, _, qualname = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise StructuredOutputImportError(
            f"cannot import the structured-output class {reference!r} ({exc}); "
            "define it at module level in an importable module and make that module "
            "importable in this process"
        ) from exc
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise StructuredOutputImportError(f"{reference!r} is not a Pydantic model class")
    return target


# -- time ---------------------------------------------------------------------------------


class Clock(Protocol):
    """Time as the engine sees it (epoch seconds); tests inject their own."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
