"""Prompts from rows without writing Python: a column, or a ``str.format`` template.

What ``batchor start --prompt-column / --prompt-template`` and the Dagster
component's ``prompt_column`` / ``prompt_template`` build: a ``build_prompt``
that reads the item's payload (a row as a dict) by column name.
"""

from __future__ import annotations

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


def template_fields(template: str) -> tuple[str, ...]:
    """The column names a ``str.format`` template refers to, in order of appearance.

    ``{text}``, ``{score:.2f}`` and ``{text!r}`` are fine; positional fields
    (``{}``, ``{0}``) are not, since rows are looked up by column name. A
    malformed template raises :class:`~batchor.ConfigurationError`.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(
            f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    fields: list[str] = []
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        name = field_name.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ConfigurationError(
                f"{{{field_name}}} is positional; name a column instead, e.g. {{text}}"
            )
        if name not in fields:
            fields.append(name)
    return tuple(fields)
