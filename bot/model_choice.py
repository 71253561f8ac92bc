"""Which model serves a chat, per capability, and which models may be chosen.

The model in force is the chat's own chat model (chat only), else the default the bot's
admins set with ``/models set``, else the configured one. What may be chosen comes from
the configuration's suggestions and what the providers report (``ModelCatalogue``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, get_args

from bot.config import ModelsConfig
from bot.providers.base import CAPABILITIES
from bot.providers.catalogue import ProviderModels

if TYPE_CHECKING:
    from bot.services import Services

ModelRole = Literal["chat", "completions", "edits", "images", "image_edits"]
"""The capabilities the bot uses, each with a configured default model an admin may change."""

MODEL_ROLES: tuple[ModelRole, ...] = get_args(ModelRole)


def configured_default(models: ModelsConfig, role: ModelRole) -> str:
    """The configuration's model for ``role`` ("" for edits means: ask the chat model)."""
    value: str = getattr(models, role)
    return value


def resolve_model(
    models: ModelsConfig, role: ModelRole, *, chat_choice: str | None, admin_default: str | None
) -> str:
    """The model in force: the chat's choice (chat only), the admins' default, the config's.

    A chat's choice no longer among the configured chat suggestions (the configuration
    changed since) is ignored, unless it is one of the defaults.
    """
    default = admin_default or configured_default(models, role)
    if role != "chat" or not chat_choice:
        return default
    allowed = models.suggestions.chat
    if allowed and chat_choice not in allowed and chat_choice not in (default, models.chat):
        return default
    return chat_choice


async def effective_model(services: Services, chat_id: int, role: ModelRole) -> str:
    """The model that serves ``role`` in chat ``chat_id`` now."""
    chat_choice, admin_default = await services.store.model_choices(chat_id, role)
    return resolve_model(
        services.config.models, role, chat_choice=chat_choice, admin_default=admin_default
    )


def suggestions(models: ModelsConfig, reports: Sequence[ProviderModels]) -> dict[str, list[str]]:
    """Suggested models per capability: the configuration's, then the providers' (wrapper).

    A provider's nested capability (``audio.transcriptions``) counts for its first part;
    capabilities the bot does not know (``finetunes``) are left out.
    """
    merged: dict[str, list[str]] = {capability: [] for capability in CAPABILITIES}
    for capability in CAPABILITIES:
        _extend(merged[capability], getattr(models.suggestions, capability))
    for report in reports:
        for key, names in report.suggest.items():
            known = merged.get(key.partition(".")[0])
            if known is not None:
                _extend(known, names)
    return merged


def choosable_chat_models(
    models: ModelsConfig, reports: Sequence[ProviderModels], admin_default: str | None
) -> list[str]:
    """The chat models a chat may choose, defaults first.

    The configured chat suggestions when there are any; otherwise every model the providers
    report or suggest or the configuration names for a provider.
    """
    chosen = [admin_default or models.chat]
    _extend(chosen, [models.chat])
    if models.suggestions.chat:
        _extend(chosen, models.suggestions.chat)
        return chosen
    _extend(chosen, suggestions(models, reports)["chat"])
    _extend(chosen, known_models(reports))
    return chosen


def known_models(
    reports: Sequence[ProviderModels], configured: Iterable[Sequence[str]] = ()
) -> list[str]:
    """Every model the providers report or suggest, and those their configurations list."""
    found: list[str] = []
    for names in configured:
        _extend(found, names)
    for report in reports:
        _extend(found, report.models)
        for names in report.suggest.values():
            _extend(found, names)
    return found


def admin_choices(
    models: ModelsConfig,
    role: ModelRole,
    reports: Sequence[ProviderModels],
    configured: Iterable[Sequence[str]],
    admin_defaults: Mapping[str, str],
) -> list[str]:
    """The models an admin may make the default of ``role``: any the bot knows of.

    Empty when nothing is known (no provider answered and nothing is configured): then any
    name is taken on trust.
    """
    suggested = suggestions(models, reports).get(role, [])
    if role == "image_edits":
        suggested = suggestions(models, reports)["images"]
    found = [m for m in (admin_defaults.get(role), configured_default(models, role)) if m]
    _extend(found, suggested)
    _extend(found, known_models(reports, configured))
    return found


def match_model(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate called ``name``; case is ignored when that leaves only one."""
    if name in candidates:
        return name
    folded = [c for c in candidates if c.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _extend(target: list[str], names: Iterable[str]) -> None:
    """Append the ``names`` not yet in ``target``, in order."""
    for name in names:
        if name and name not in target:
            target.append(name)
