"""Batch providers: the neutral protocol (:mod:`.base`) and one module per provider.

:data:`AnyProviderConfig` is the union of every provider's settings, told apart
by their ``kind``: what a run stores, and what rebuilds the right adapter in a
fresh process. Adding a provider is one module here (its config with a new
``kind``, its adapter) plus its emulator module in :mod:`batchor.testing`.
"""

from typing import Annotated, get_args

from pydantic import Field

from batchor.errors import ConfigurationError
from batchor.providers.anthropic import AnthropicProviderConfig
from batchor.providers.base import ProviderConfig
from batchor.providers.gemini import GeminiProviderConfig
from batchor.providers.openai import AzureOpenAIProviderConfig, OpenAIProviderConfig

AnyProviderConfig = Annotated[
    OpenAIProviderConfig
    | AzureOpenAIProviderConfig
    | AnthropicProviderConfig
    | GeminiProviderConfig,
    Field(discriminator="kind"),
]
"""Any provider's settings, discriminated by ``kind``."""

PROVIDER_CONFIGS: dict[str, type[ProviderConfig]] = {
    config.model_fields["kind"].default: config
    for config in get_args(get_args(AnyProviderConfig)[0])
}
"""Each provider's settings class, by ``kind``."""


def provider_config_class(kind: str) -> type[ProviderConfig]:
    """The settings class of the provider ``kind``, or an error naming the kinds."""
    try:
        return PROVIDER_CONFIGS[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown provider {kind!r}; batchor has {', '.join(sorted(PROVIDER_CONFIGS))}"
        ) from None


__all__ = ["PROVIDER_CONFIGS", "AnyProviderConfig", "provider_config_class"]
