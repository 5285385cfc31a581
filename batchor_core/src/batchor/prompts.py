"""Prompts from rows without writing Python: a column, or a ``str.format`` template.

What ``batchor start --prompt-column / --prompt-template`` and the Dagster
component's ``prompt_column`` / ``prompt_template`` build: a ``build_prompt``
that reads the item's payload (a row as a dict) by column name.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchor.errors import ConfigurationError
from batchor.types import BatchItem, PromptParts


@dataclass(frozen=True, slots=True)
class PromptBuilder:
    """``build_prompt`` from a prompt column or a ``str.format`` template.

    ``fields`` are the payload columns the prompt reads. In a template, a
    missing value (``None``) renders as an empty string.
    """

    fields: tuple[str, ...]
    prompt_column: str | None = None
    template: str | None = None
    system_prompt: str | None = None

    @classmethod
    def from_column(cls, column: str, system_prompt: str | None = None) -> PromptBuilder:
        """The prompt is the value of ``column``."""
        if not column:
            raise ConfigurationError("the prompt column name is empty")
        return cls((column,), prompt_column=column, system_prompt=system_prompt)

    @classmethod
    def from_template(cls, template: str, system_prompt: str | None = None) -> PromptBuilder:
        """The prompt is ``template`` with ``{column}`` fields filled from the row
        (:func:`template_fields` checks it first)."""
        return cls(template_fields(template), template=template, system_prompt=system_prompt)

    def __call__(self, item: BatchItem) -> PromptParts:
        values: Mapping[str, Any] = item.payload
        if self.prompt_column is not None:
            value = values[self.prompt_column]
            prompt = "" if value is None else str(value)
        else:
            assert self.template is not None
            prompt = self.template.format_map(
                {name: "" if value is None else value for name, value in values.items()}
            )
        return PromptParts(prompt=prompt, system_prompt=self.system_prompt)


MAX_TEMPLATE_WIDTH = 10_000
"""The largest width or precision a template field may ask for (``{text:>80}``,
``{score:.3f}``): a format spec could otherwise make one row's prompt as large as
memory allows."""


def template_fields(template: str) -> tuple[str, ...]:
    """The column names a ``str.format`` template refers to, in order of appearance.

    ``{text}``, ``{score:.2f}`` and ``{text!r}`` are fine; positional fields
    (``{}``, ``{0}``) are not, since rows are looked up by column name, nor are
    fields inside a format spec (``{text:>{width}}``) or a width or precision above
    :data:`MAX_TEMPLATE_WIDTH`. A bad template raises
    :class:`~batchor.ConfigurationError`.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(
            f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    fields: list[str] = []
    for _literal, field_name, spec, _conversion in parsed:
        if field_name is None:
            continue
        _check_format_spec(field_name, spec or "")
        name = field_name.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ConfigurationError(
                f"{{{field_name}}} is positional; name a column instead, e.g. {{text}}"
            )
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def _check_format_spec(field_name: str, spec: str) -> None:
    """Refuse a format spec computed from the data, or one asking for more than
    :data:`MAX_TEMPLATE_WIDTH` characters."""
    if "{" in spec:
        raise ConfigurationError(
            f"{{{field_name}:{spec}}} takes its format from another field; write the width "
            "or precision as a number"
        )
    numbers = [int(digits) for digits in re.findall(r"\d+", spec)]
    if numbers and max(numbers) > MAX_TEMPLATE_WIDTH:
        raise ConfigurationError(
            f"{{{field_name}:{spec}}} asks for {max(numbers):,} characters; a width or "
            f"precision may be at most {MAX_TEMPLATE_WIDTH:,}"
        )
