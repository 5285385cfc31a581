"""Batch providers: the neutral protocol (:mod:`.base`) and one module per provider.

:data:`AnyProviderConfig` is the union of every provider's settings, told apart
by their ``kind``: what a run stores, and what rebuilds the right adapter in a
fresh process. Adding a provider is one module here (its config with a new
``kind``, its adapter) plus its emulator module in :mod:`batchor.testing`.
"""

from typing import Annotated

from pydantic import Field

from batchor.providers.anthropic import AnthropicProviderConfig
from batchor.providers.openai import OpenAIProviderConfig

AnyProviderConfig = Annotated[
    OpenAIProviderConfig | AnthropicProviderConfig, Field(discriminator="kind")
]
"""Any provider's settings, discriminated by ``kind``."""

__all__ = ["AnyProviderConfig"]
