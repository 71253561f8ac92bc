"""Configuration: YAML (or the environment alone) into validated, frozen dataclasses.

Every problem becomes one ``ConfigError`` naming the key path, e.g.
``providers[0].base_url: expected a string``. Strings may use ``${ENV_VAR}``.
"""

from __future__ import annotations

import contextlib
import os
import re
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml

from bot.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/bot.db"
DEFAULT_TELEGRAM_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_COMPLETIONS_MODEL = "gpt-3.5-turbo-instruct"
DEFAULT_IMAGES_MODEL = "dall-e-3"
DEFAULT_IMAGE_EDITS_MODEL = "dall-e-2"
DEFAULT_PERSONA_PROMPT = "You are a helpful assistant."
# The quota role of everyone not listed in another, and the key of every group's limits.
DEFAULT_ROLE = "default"
# The most images one /image may ask for: OpenAI's limit, and a Telegram album's size.
MAX_IMAGES = 10
# The most calls a chat holds in reserve for its final text. Telegram promises only "short
# bursts" over one message a second; bursts of three calls are as far as the bot goes.
MAX_FINAL_BURST = 2

ConversationScope = Literal["chat", "topic", "user"]
"""What shares a conversation in groups: the whole chat, each forum topic, or each member
within a topic."""

WrapperStream = Literal["stream", "sse", "plain", "steamship"]
"""The chat paths of seed 000: ``/openai/chat/stream``, ``/openai/chat/sse``, ``/openai/chat``
(one JSON answer) and Steamship's ``/send`` (one JSON answer, ``fileId`` as the session)."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Webhook mode: Telegram POSTs updates to ``url``; the bot listens on ``listen:port``."""

    # The public URL Telegram posts to (HTTPS; a reverse proxy forwards it to listen:port).
    url: str = ""
    listen: str = "0.0.0.0"  # noqa: S104 - a webhook server must be reachable by the proxy
    port: int = 8443
    # The local path served; None takes the path of ``url``.
    path: str | None = None
    # Telegram sends it in every request; requests without it are refused.
    secret_token: str = field(default="", repr=False)
    max_connections: int = 40


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """How to reach Telegram and who administers the bot."""

    token: str = field(repr=False)
    base_url: str = DEFAULT_TELEGRAM_BASE_URL
    base_file_url: str = DEFAULT_TELEGRAM_FILE_URL
    admins: tuple[int, ...] = ()
    # Who may use the bot: these users anywhere, and anyone in these chats. Both empty
    # means open to everyone; bot admins are always let in.
    allowed_users: tuple[int, ...] = ()
    allowed_chats: tuple[int, ...] = ()
    # Seconds the getUpdates long poll waits on the server before returning empty.
    poll_timeout: float = 30.0
    mode: Literal["polling", "webhook"] = "polling"
    webhook: WebhookConfig = field(default_factory=WebhookConfig)

    @property
    def webhook_path(self) -> str:
        """The path the webhook server serves, without the leading slash."""
        path = self.webhook.path if self.webhook.path is not None else _url_path(self.webhook.url)
        return path.strip("/")


@dataclass(frozen=True, slots=True)
class OpsConfig:
    """The operator's HTTP endpoints: ``/healthz`` (ready or not) and ``/metrics``."""

    listen: str = "127.0.0.1"
    # None: no such server.
    port: int | None = None


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where state lives; any SQLAlchemy async URL."""

    url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: connections this instance keeps for conversation locks, each
    # holding the locks of any number of conversations (more only spread them out).
    lock_connections: int = 2


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """How much each user may ask; bot admins are never limited."""

    # Requests (answers, completions, edits, images) per user in any 60 seconds; 0: no limit.
    user_requests_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Requests and tokens allowed per UTC day and UTC month; 0 (or absent): no limit."""

    requests_per_day: int = 0
    requests_per_month: int = 0
    tokens_per_day: int = 0
    tokens_per_month: int = 0

    @property
    def limited(self) -> bool:
        """Whether any of the four is a limit."""
        return any(
            (
                self.requests_per_day,
                self.requests_per_month,
                self.tokens_per_day,
                self.tokens_per_month,
            )
        )


@dataclass(frozen=True, slots=True)
class QuotaRole(QuotaLimits):
    """The limits of the users listed; the role ``default`` is everyone else's."""

    users: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class QuotasConfig:
    """Per-user and per-chat quotas (``quotas:``); no limit anywhere: nothing is counted."""

    # Role name -> its users and limits; "default" holds everyone not listed in another.
    roles: Mapping[str, QuotaRole] = field(default_factory=dict)
    # "default" -> the limits of every group; a chat id -> that chat's own. Private chats
    # are limited by their user's limits only.
    chats: Mapping[str, QuotaLimits] = field(default_factory=dict)
    # Minutes after which a reservation never settled (the bot died mid-answer) is dropped.
    hold_minutes: int = 60

    @property
    def active(self) -> bool:
        """Whether any limit is set, and so whether requests are counted at all."""
        limits = (*self.roles.values(), *self.chats.values())
        return any(limit.limited for limit in limits)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Redis, when several instances share one flood budget; empty ``url``: no Redis."""

    url: str = field(default="", repr=False)
    # Keys start with this and the bot's id, so bots sharing one Redis keep apart.
    prefix: str = "tg-llm-bot"


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Seconds to wait at each stage of a provider call."""

    connect: float = 10.0
    first_chunk: float = 60.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One upstream LLM service."""

    name: str
    base_url: str
    api_key: str = field(default="", repr=False)
    # "openai": an OpenAI-compatible chat API; "anthropic": Anthropic's native Messages API;
    # "wrapper": seed 000's service, which keeps each conversation itself (chatcode).
    kind: Literal["openai", "anthropic", "wrapper"] = "openai"
    models: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    # Sent when a request sets none; the anthropic kind needs one and falls back to 4096.
    max_tokens: int | None = None
    # Retries of this provider, with backoff, when it is the last one left for a request.
    retries: int = 2
    # openai kind only: ask for the short Reduce-Stream shapes (seed 002).
    reduce_stream: bool = False
    # openai kind only: send stream_options.include_usage (some providers reject it).
    include_usage: bool = False
    # wrapper kind only: which chat path of seed 000 to use; None means "stream".
    wrapper_stream: WrapperStream | None = None


@dataclass(frozen=True, slots=True)
class SuggestionsConfig:
    """The models /models offers per capability (seed 000's ``suggest``).

    For chat these are also the models a chat may choose; empty means any model the
    providers report.
    """

    chat: tuple[str, ...] = ()
    completions: tuple[str, ...] = ()
    edits: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    audio: tuple[str, ...] = ()
    embeddings: tuple[str, ...] = ()
    moderations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    """The default model per capability, what /models offers, and who may choose."""

    chat: str = DEFAULT_OPENAI_MODEL
    completions: str = DEFAULT_COMPLETIONS_MODEL
    # An edits model (seed 000 and 002's /v1/edits); empty: /edit asks the chat model.
    edits: str = ""
    images: str = DEFAULT_IMAGES_MODEL
    image_edits: str = DEFAULT_IMAGE_EDITS_MODEL
    suggestions: SuggestionsConfig = field(default_factory=SuggestionsConfig)
    # Models that accept images in a chat message; a photo sent to another model is refused.
    vision: tuple[str, ...] = ()
    # Whether users may choose their own chat model in private chats (admins always may).
    users_choose: bool = True


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    """Defaults and bounds of /image and the editing of photos."""

    size: str = "1024x1024"
    count: int = 1
    max_count: int = 4
    # None leaves it to the provider: GPT image models answer base64 only.
    response_format: Literal["url", "b64_json"] | None = None


@dataclass(frozen=True, slots=True)
class PersonaConfig:
    """A named system prompt."""

    name: str
    prompt: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """How much history goes with each request."""

    max_messages: int = 40
    max_tokens: int = 6000
    # Which messages share a conversation in groups: the whole chat, each forum topic, or
    # each member on their own (within a topic).
    scope: ConversationScope = "topic"
    # The longest prompt accepted, in characters; longer ones are refused with the limit.
    max_prompt_chars: int = 16000


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """How answers are paced and shown while they stream."""

    edit_interval_private: float = 1.0
    edit_interval_group: float = 3.0
    # Telegram's bot-wide budget for message-producing calls.
    global_per_second: float = 30.0
    # Private chats stream as native drafts (sendMessageDraft) and fall back to edits.
    drafts: bool = True
    # Drafts count against the chat's budget like edits: Telegram publishes no limit of
    # their own, and faster drafts met 429s against the per-chat limit in the benchmark.
    draft_interval: float = 1.0
    # Calls per chat held in reserve for the final text (and the last parts of a long
    # answer), so it goes out at once instead of a whole interval behind the last update.
    # The long-run pace is unchanged; 0 spaces every call evenly.
    final_burst: int = 1
    # The longest a streaming answer is left unread between two reads (its pieces wait in
    # the connection): the end of an answer is noticed up to this late. Reads otherwise
    # come when the chat can show more, so a shorter time costs wake-ups (CPU).
    read_interval_max: float = 1.0
    # Seconds a stopping bot lets the answers in flight finish before it cuts them.
    shutdown_grace: float = 10.0
    # Messages left unanswered by a restart are answered after it if they are at most this
    # many seconds old; older ones get a note to ask again. 0: never answered after it.
    resume_within: float = 600.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    telegram: TelegramConfig
    providers: tuple[ProviderConfig, ...]
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    personas: tuple[PersonaConfig, ...] = (
        PersonaConfig(name="default", prompt=DEFAULT_PERSONA_PROMPT),
    )
    context: ContextConfig = field(default_factory=ContextConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quotas: QuotasConfig = field(default_factory=QuotasConfig)

    def persona(self, name: str | None) -> PersonaConfig:
        """Return the persona called ``name``, or the first one."""
        for persona in self.personas:
            if persona.name == name:
                return persona
        return self.personas[0]


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (YAML), or build the configuration from the environment when it is None."""
    env = os.environ if env is None else env
    if path is None:
        return parse_config(_env_only(env), env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from exc
    return parse_config({} if data is None else data, env)


def parse_config(data: object, env: Mapping[str, str]) -> Config:
    """Validate already-parsed YAML data into a ``Config``."""
    config: Config = _build(Config, data, "", env)
    _check(config)
    return config


def _env_only(env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration a bare environment describes."""
    for name in ("TELEGRAM_BOT_TOKEN", "OPENAI_API_KEY"):
        if not env.get(name):
            raise ConfigError("", f"no config file given and {name} is not set")
    model = env.get("OPENAI_MODEL") or DEFAULT_OPENAI_MODEL
    return {
        "telegram": {"token": "${TELEGRAM_BOT_TOKEN}"},
        "providers": [
            {
                "name": "openai",
                "kind": "openai",
                "base_url": env.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL,
                "api_key": "${OPENAI_API_KEY}",
            }
        ],
        "models": {"chat": model},
        **_env_webhook(env),
    }


def _env_webhook(env: Mapping[str, str]) -> dict[str, Any]:
    """Webhook mode and the ops port from the environment, for containers without a file."""
    extra: dict[str, Any] = {}
    if env.get("TELEGRAM_WEBHOOK_URL"):
        webhook: dict[str, Any] = {
            "url": "${TELEGRAM_WEBHOOK_URL}",
            "secret_token": "${TELEGRAM_WEBHOOK_SECRET}",
        }
        if env.get("TELEGRAM_WEBHOOK_PORT"):
            webhook["port"] = env["TELEGRAM_WEBHOOK_PORT"]
        extra["telegram"] = {
            "token": "${TELEGRAM_BOT_TOKEN}",
            "mode": "webhook",
            "webhook": webhook,
        }
    if env.get("BOT_OPS_PORT"):
        extra["ops"] = {"listen": "0.0.0.0", "port": env["BOT_OPS_PORT"]}  # noqa: S104
    if env.get("DATABASE_URL"):
        extra["database"] = {"url": "${DATABASE_URL}"}
    if env.get("REDIS_URL"):
        extra["redis"] = {"url": "${REDIS_URL}"}
    return extra


def _check(config: Config) -> None:
    """Rules that span several keys."""
    if not config.telegram.token:
        raise ConfigError("telegram.token", "must not be empty")
    if config.telegram.mode == "webhook":
        _check_webhook("telegram.webhook", config.telegram.webhook)
    _check_port("ops.port", config.ops.port)
    _check_scale_out(config)
    if not config.providers:
        raise ConfigError("providers", "at least one provider is needed")
    seen: set[str] = set()
    for i, provider in enumerate(config.providers):
        if provider.name in seen:
            raise ConfigError(f"providers[{i}].name", f"duplicate provider name {provider.name!r}")
        seen.add(provider.name)
        _check_provider(f"providers[{i}]", provider)
    if not config.personas:
        raise ConfigError("personas", "at least one persona is needed")
    names = [p.name for p in config.personas]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"personas[{i}].name", f"duplicate persona name {name!r}")
    _check_limits(config)
    _check_quotas(config.quotas)


def _check_quotas(quotas: QuotasConfig) -> None:
    """Limits are counts, a user has one role, and chats are named by their ids."""
    role_of: dict[int, str] = {}
    for name, role in quotas.roles.items():
        path = f"quotas.roles.{name}"
        _check_quota_limits(path, role)
        if name == DEFAULT_ROLE and role.users:
            raise ConfigError(f"{path}.users", "the default role is everyone's; it lists no users")
        for user in role.users:
            if user in role_of:
                raise ConfigError(
                    f"{path}.users", f"user {user} is in role {role_of[user]!r} already"
                )
            role_of[user] = name
    for key, limits in quotas.chats.items():
        path = f"quotas.chats.{key}"
        if key != DEFAULT_ROLE and not re.fullmatch(r"-?\d+", key):
            raise ConfigError(path, "keys are chat ids (e.g. -1001234567890) or default")
        _check_quota_limits(path, limits)
    if quotas.hold_minutes <= 0:
        raise ConfigError("quotas.hold_minutes", "must be positive")


def _check_quota_limits(path: str, limits: QuotaLimits) -> None:
    for key in ("requests_per_day", "requests_per_month", "tokens_per_day", "tokens_per_month"):
        if getattr(limits, key) < 0:
            raise ConfigError(f"{path}.{key}", "must not be negative (0: no limit)")


def _check_provider(path: str, provider: ProviderConfig) -> None:
    """Rules for one provider."""
    if not provider.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.base_url", "must start with http:// or https://")
    for key in ("connect", "first_chunk", "idle", "total"):
        if getattr(provider.timeouts, key) <= 0:
            raise ConfigError(f"{path}.timeouts.{key}", "must be positive")
    if provider.max_tokens is not None and provider.max_tokens <= 0:
        raise ConfigError(f"{path}.max_tokens", "must be positive")
    if provider.retries < 0:
        raise ConfigError(f"{path}.retries", "must not be negative")
    if provider.kind != "openai":
        for key in ("reduce_stream", "include_usage"):
            if getattr(provider, key):
                raise ConfigError(f"{path}.{key}", "is an option of kind openai only")
    if provider.kind != "wrapper" and provider.wrapper_stream is not None:
        raise ConfigError(f"{path}.wrapper_stream", "is an option of kind wrapper only")
    if provider.kind == "wrapper" and _url_path(provider.base_url).endswith("/openai"):
        # The adapter appends /openai/chat/... and /send itself; a doubled /openai is a 404.
        raise ConfigError(f"{path}.base_url", "must be the service root, without /openai")


def _check_webhook(path: str, webhook: WebhookConfig) -> None:
    """Webhook mode needs a URL Telegram can post to and a secret to recognise its posts."""
    if not webhook.url.startswith(("https://", "http://")):
        raise ConfigError(f"{path}.url", "webhook mode needs the public https:// URL")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", webhook.secret_token):
        raise ConfigError(
            f"{path}.secret_token", "webhook mode needs 1-256 characters of A-Z a-z 0-9 _ -"
        )
    _check_port(f"{path}.port", webhook.port)
    if not 1 <= webhook.max_connections <= 100:
        raise ConfigError(f"{path}.max_connections", "must be between 1 and 100")


def _check_scale_out(config: Config) -> None:
    """The keys several instances need: the lock pool and the shared Redis."""
    if config.database.lock_connections < 1:
        raise ConfigError("database.lock_connections", "must be at least 1")
    url = config.redis.url
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url", "must start with redis://, rediss:// or unix://")
    if not config.redis.prefix:
        raise ConfigError("redis.prefix", "must not be empty")


def _check_port(path: str, port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(path, "must be a TCP port (0-65535)")


def _url_path(url: str) -> str:
    """The path of ``url`` without a trailing slash, e.g. "/openai" or ""."""
    return urlsplit(url).path.rstrip("/")


def _check_limits(config: Config) -> None:
    """Budgets and intervals must make sense."""
    if config.limits.user_requests_per_minute < 0:
        raise ConfigError("limits.user_requests_per_minute", "must not be negative")
    for key in ("max_messages", "max_tokens", "max_prompt_chars"):
        if getattr(config.context, key) <= 0:
            raise ConfigError(f"context.{key}", "must be positive")
    for key in (
        "edit_interval_private",
        "edit_interval_group",
        "draft_interval",
        "read_interval_max",
        "shutdown_grace",
        "resume_within",
    ):
        if getattr(config.streaming, key) < 0:
            raise ConfigError(f"streaming.{key}", "must not be negative")
    if not 0 <= config.streaming.final_burst <= MAX_FINAL_BURST:
        raise ConfigError("streaming.final_burst", f"must be between 0 and {MAX_FINAL_BURST}")
    if config.streaming.global_per_second <= 0:
        raise ConfigError("streaming.global_per_second", "must be positive")
    images = config.images
    if not 1 <= images.max_count <= MAX_IMAGES:
        raise ConfigError("images.max_count", f"must be between 1 and {MAX_IMAGES}")
    if not 1 <= images.count <= images.max_count:
        raise ConfigError("images.count", f"must be between 1 and max_count ({images.max_count})")
    if not re.fullmatch(r"\d+x\d+|auto", images.size):
        raise ConfigError("images.size", "must look like 1024x1024, or be auto")


def _expand(value: str, path: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` references; an unset variable is an error naming it."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(path, f"environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(lookup, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(tp: Any, value: object, path: str, env: Mapping[str, str]) -> Any:  # noqa: PLR0911, PLR0912
    """Convert ``value`` to type ``tp``, raising ``ConfigError`` at ``path``."""
    if isinstance(value, str) and tp is not str:
        value = _expand(value, path, env)
    origin = get_origin(tp)
    if is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, value, path, env)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise ConfigError(path, f"must be one of {listed}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, "expected a list")
        return tuple(_build(item_tp, v, f"{path}[{i}]", env) for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(path, "expected a mapping")
        (_key_tp, value_tp) = get_args(tp)
        return {str(k): _build(value_tp, v, _join(path, str(k)), env) for k, v in value.items()}
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        (inner,) = (a for a in get_args(tp) if a is not type(None))
        return _build(inner, value, path, env)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(path, "expected a string")
        return _expand(str(value), path, env)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(path, "expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise ConfigError(path, "expected an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        raise ConfigError(path, "expected a number")
    raise ConfigError(path, f"unsupported type {tp!r}")  # pragma: no cover - a bug in a dataclass


def _build_dataclass(cls: type, value: object, path: str, env: Mapping[str, str]) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(path, "expected a mapping")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in value:
        if key not in known:
            raise ConfigError(_join(path, str(key)), "unknown key")
    kwargs: dict[str, Any] = {}
    for name, spec in known.items():
        if name in value:
            kwargs[name] = _build(hints[name], value[name], _join(path, name), env)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(_join(path, name), "is required")
    return cls(**kwargs)
