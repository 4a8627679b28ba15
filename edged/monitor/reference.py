"""Which variant the shadow monitor compares with, resolved (and refused) when edged starts."""

from __future__ import annotations

from dataclasses import replace

from edged.backends.registry import UnknownBackend, backend_spec
from edged.config import ConfigError, EdgedConfig
from edged.models import ModelError, ResolvedVariant, resolve_from_config

FIELD = "monitor.shadow.variant"


def resolve_reference(config: EdgedConfig, source: str = "config") -> ResolvedVariant | None:
    """The reference variant (None when the monitor is off); a variant the model does not
    have is a :class:`ConfigError` naming ``monitor.shadow.variant``."""
    shadow = config.monitor.shadow
    if not shadow.enabled:
        return None
    if config.model.path is not None and shadow.variant != "default":
        reason = (f"{shadow.variant!r}: a reference variant needs a model manifest "
                  "(model.manifest); with model.path only 'default' (the served file)")  # fmt: skip
        raise ConfigError([(FIELD, reason)], source)
    try:
        return one_thread(resolve_from_config(config.model, shadow.variant))
    except ModelError as exc:
        raise ConfigError([(FIELD, str(exc))], source) from None


def one_thread(resolved: ResolvedVariant) -> ResolvedVariant:
    """The variant with its runtime's thread option at 1 (over the manifest's own): the
    helper must never take more than one core from the live path."""
    try:
        spec = backend_spec(resolved.backend)
    except UnknownBackend:  # loading it says so
        return resolved
    if spec.threads_field is None:
        return resolved
    options = {**dict(resolved.options), spec.threads_field: 1}
    return replace(resolved, options=tuple(sorted(options.items())))
