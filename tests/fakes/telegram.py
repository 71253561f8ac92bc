"""A fake Telegram Bot API server on 127.0.0.1 for the real python-telegram-bot to talk to.

Use it as::

    async with FakeTelegram() as tg, Bot(TOKEN, base_url=tg.base_url,
                                         base_file_url=tg.base_file_url) as bot:
        ...

It keeps the chats' messages, records every call, serves long polling, reproduces the Bot API
errors a streaming bot meets (not modified, too long, can't parse entities, flood control) and
can inject faults. Documented simplifications:

* every chat exists and the bot may write to it; ids > 0 are private chats, ids < 0
  supergroups (``user_sends(chat_type=...)`` can say otherwise);
* ``parse_mode`` HTML is parsed like Telegram does (text and entities come back parsed);
  Markdown and MarkdownV2 are stored verbatim, without entities or validation;
* entities out of the text's range are rejected (Telegram is sometimes lenient about them);
* photos sent by URL are taken as they are, except URLs of 127.0.0.1 or localhost, which
  Telegram's servers could not fetch ("failed to get HTTP URL content"); uploaded photos
  and files users send (``user_sends_photo``) can be downloaded with getFile at
  ``base_file_url``; every photo has two sizes of fixed dimensions;
* ``sendMessageDraft`` error descriptions for non-private chats and a zero draft_id are
  invented, as Telegram does not document them;
* with a webhook set (setWebhook), updates are POSTed to it instead of served by getUpdates
  (see ``telegram_webhook``); ``delivered_at`` is then the time the bot acknowledged one;
* a call is recorded when it is answered, so a long poll shows up after the calls that
  arrived while it waited; ``Call.at`` is the arrival time, ``delivered_at(update_id)`` the
  time a getUpdates answer first carried an update.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import BodyPartReader, web

from tests.fakes.server import LISTEN_BACKLOG
from tests.fakes.telegram_text import (
    Entity,
    EntityError,
    check_entities,
    parse_html,
    strip_formatted,
    utf16_len,
    word_set,
)
from tests.fakes.telegram_webhook import Webhook, WebhookDeliverer

JSONDict = dict[str, Any]

DEFAULT_TOKEN = "123456:TEST-TOKEN"
BOT_ID = 1000
BOT_USERNAME = "test_llm_bot"
BOT_FIRST_NAME = "TestBot"

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are"
    " exactly the same as a current content and reply markup of the message"
)
CANT_PARSE_ENTITIES = (
    "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 11"
)
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
MESSAGE_TOO_LONG = "Bad Request: message is too long"
MESSAGE_TEXT_EMPTY = "Bad Request: message text is empty"
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active;"
    " use deleteWebhook to delete the webhook first"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

# Canonical camelCase names, looked up case-insensitively as Telegram does.
METHODS = (
    "getMe",
    "getUpdates",
    "deleteWebhook",
    "getWebhookInfo",
    "setWebhook",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "sendChatAction",
    "sendMessageDraft",
    "sendPhoto",
    "sendMediaGroup",
    "getFile",
    "deleteMessage",
    "answerCallbackQuery",
    "getChat",
    "getChatMember",
)
_CANONICAL = {name.lower(): name for name in METHODS}

# PTB sends every non-string value JSON-encoded inside a form field, and strings raw
# (telegram/request/_requestparameter.py: json_value), so decoding must go by parameter name:
# a text of "123" or "[1]" must stay a string.
_INT_PARAMS = word_set(
    """
    chat_id message_id message_thread_id draft_id offset limit user_id reply_to_message_id
    cache_time direct_messages_topic_id max_connections
    """
)
_FLOAT_PARAMS = frozenset({"timeout"})
_BOOL_PARAMS = word_set(
    """
    disable_notification protect_content show_alert drop_pending_updates
    allow_sending_without_reply has_spoiler show_caption_above_media allow_paid_broadcast
    disable_web_page_preview
    """
)
_JSON_PARAMS = word_set(
    """
    entities caption_entities reply_markup commands scope allowed_updates reply_parameters
    link_preview_options message_ids suggested_post_parameters media
    """
)

CHAT_ACTIONS = word_set(
    """
    typing upload_photo record_video upload_video record_voice upload_voice upload_document
    choose_sticker find_location record_video_note upload_video_note
    """
)
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
# A leading /command, optionally addressed as /command@bot_username.
_LEADING_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,64})?")
# Telegram marks every @username in a text as a mention entity (not inside a /command@bot).
_MENTION = re.compile(r"(?<![\w/@])@[A-Za-z0-9_]{5,32}")


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    name: str
    filename: str | None
    content_type: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Length of the uploaded bytes."""
        return len(self.data)


@dataclass(frozen=True)
class Call:
    """One answered request to the fake: what was asked and what the fake answered."""

    method: str
    params: JSONDict
    at: float
    ok: bool
    error_code: int | None = None
    description: str | None = None
    result: Any = None

    @property
    def chat_id(self) -> int | str | None:
        """The ``chat_id`` parameter, if the call had one."""
        chat_id: int | str | None = self.params.get("chat_id")
        return chat_id

    def summary(self) -> str:
        """One line for failure messages."""
        shown = {k: v for k, v in self.params.items() if k in {"chat_id", "message_id", "text"}}
        if isinstance(shown.get("text"), str) and len(shown["text"]) > 60:
            shown["text"] = shown["text"][:57] + "..."
        outcome = "ok" if self.ok else f"{self.error_code} {self.description}"
        return f"{self.method}({', '.join(f'{k}={v!r}' for k, v in shown.items())}) -> {outcome}"


@dataclass(frozen=True)
class MessageVersion:
    """The content of a message after one send or edit."""

    text: str
    entities: list[Entity]
    reply_markup: JSONDict | None
    at: float


@dataclass(frozen=True)
class PhotoInfo:
    """What a sendPhoto carried: an upload (with its size) or a URL / file_id."""

    size: int | None
    source: str
    file_ids: tuple[str, ...]
    file_sizes: tuple[int, ...] = ()
    """The size of each of ``file_ids`` when they differ (a user's photo); else ``size``."""
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The uploaded bytes (of the largest size), when the photo was uploaded."""
    media_group_id: str | None = None


@dataclass
class SentMessage:
    """A message in a chat as the fake currently holds it, with all its versions."""

    chat_id: int
    message_id: int
    from_user_id: int
    kind: Literal["text", "photo", "document", "other"]
    date: int
    versions: list[MessageVersion]
    message_thread_id: int | None = None
    reply_to_message_id: int | None = None
    photo: PhotoInfo | None = None
    document: JSONDict | None = None
    # The fields of a message of another kind (a voice note, a sticker), as Telegram sends them.
    other: JSONDict | None = None
    edit_date: int | None = None
    deleted: bool = False

    @property
    def from_bot(self) -> bool:
        """Whether the bot sent it (as opposed to a user pushed by the test)."""
        return self.from_user_id == BOT_ID

    @property
    def text(self) -> str:
        """Current text, or caption for a photo ("" if none)."""
        return self.versions[-1].text

    @property
    def entities(self) -> list[Entity]:
        """Current entities (caption entities for a photo), as Telegram stores them."""
        return self.versions[-1].entities

    @property
    def reply_markup(self) -> JSONDict | None:
        """Current inline keyboard, if any."""
        return self.versions[-1].reply_markup

    @property
    def texts(self) -> list[str]:
        """Every text the message has shown, oldest first."""
        return [version.text for version in self.versions]


@dataclass(frozen=True)
class Draft:
    """One sendMessageDraft call that succeeded."""

    chat_id: int
    draft_id: int
    text: str
    entities: list[Entity]
    message_thread_id: int | None
    at: float


@dataclass(frozen=True)
class FloodLimits:
    """Flood control as token buckets: a budget refills at a rate and allows small bursts.

    Telegram publishes only rates (about 1 message per second in a chat, 20 per minute in a
    group, 30 per second overall); the burst sizes here are assumptions. The per-chat budget
    applies to every chat, the group one additionally to chats with negative ids. Only
    ``counted_methods`` (canonical names) spend budget; sendChatAction, deleteMessage and
    answerCallbackQuery are free, as they produce no message content. A call spends budget on
    arrival, even if it then fails validation (a "not modified" edit still costs).
    """

    per_chat_interval: float = 1.0
    per_chat_burst: int = 3
    group_per_minute: float = 20
    group_burst: int = 5
    global_per_second: float = 30
    global_burst: int = 30
    counted_methods: frozenset[str] = word_set(
        "sendMessage editMessageText editMessageReplyMarkup sendPhoto sendMessageDraft"
        " sendMediaGroup"
    )


class _TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def wait_time(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class _FloodGate:
    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._buckets: dict[tuple[str, int], _TokenBucket] = {}

    def _bucket(self, key: tuple[str, int], rate: float, burst: int, now: float) -> _TokenBucket:
        if key not in self._buckets:
            self._buckets[key] = _TokenBucket(rate, burst, now)
        return self._buckets[key]

    def retry_after(self, method: str, chat_id: object, now: float) -> int | None:
        """Spend one message of every budget involved, or say how many seconds to wait."""
        limits = self.limits
        if method not in limits.counted_methods:
            return None
        buckets = [self._bucket(("global", 0), limits.global_per_second, limits.global_burst, now)]
        if isinstance(chat_id, int):
            rate = 1 / limits.per_chat_interval
            buckets.append(self._bucket(("chat", chat_id), rate, limits.per_chat_burst, now))
            if chat_id < 0:
                rate = limits.group_per_minute / 60
                buckets.append(self._bucket(("group", chat_id), rate, limits.group_burst, now))
        wait = max(bucket.wait_time(now) for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.tokens -= 1
        return None


@dataclass
class _Injection:
    method: str
    chat_id: int | None
    remaining: int
    status: int
    description: str
    parameters: JSONDict | None


class ApiError(Exception):
    """An error answer of the Bot API; raised inside the fake to end a request."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONDict:
        """The JSON Telegram answers with."""
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class _Signal:
    """Wakes every waiter at once: waiters hold the current event, notify() swaps in a new one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


def canonical_method(method: str) -> str:
    """The documented camelCase name of a Bot API method, matched case-insensitively."""
    try:
        return _CANONICAL[method.lower()]
    except KeyError:
        raise ValueError(f"the fake does not implement Bot API method {method!r}") from None


class FakeTelegram:
    """Fake Bot API server; see the module docstring. Use as an async context manager."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, flood: FloodLimits | None = None) -> None:
        self.token = token
        self.flood = flood
        self._flood_gate = _FloodGate(flood) if flood else None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False
        self._calls: list[Call] = []
        self._calls_changed = _Signal()
        self._updates: list[JSONDict] = []
        self._updates_changed = _Signal()
        self._waiting_polls = 0
        self._polls_changed = _Signal()
        self._next_update_id = 1
        self._delivered_at: dict[int, float] = {}
        self._allowed_updates: list[str] = []
        self._chats: dict[int, dict[int, SentMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._chat_types: dict[int, str] = {}
        self._forums: set[int] = set()
        self._users: dict[int, JSONDict] = {}
        self._member_status: dict[tuple[int, int], str] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._drafts: list[Draft] = []
        self._open_callback_queries: set[str] = set()
        self._callback_ids = itertools.count(7_000_000_001)
        self._injections: list[_Injection] = []
        self._webhook: WebhookDeliverer | None = None
        self._files: dict[str, bytes] = {}
        """file_id -> the bytes getFile hands out."""
        self._file_paths: dict[str, str] = {}
        """file_path -> file_id, for downloads at ``base_file_url``."""
        self._media_group_ids = itertools.count(13_000_000_000_000_001)
        self._handlers: dict[str, Callable[[JSONDict], Any]] = {
            "getMe": lambda _params: self.bot_user,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setWebhook": self._set_webhook,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "sendChatAction": self._send_chat_action,
            "sendMessageDraft": self._send_message_draft,
            "sendPhoto": self._send_photo,
            "sendMediaGroup": self._send_media_group,
            "getFile": self._get_file,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
        }

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._handle_file)
        # A short shutdown timeout: close() has already answered every long poll.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=LISTEN_BACKLOG)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Answer pending long polls and stop the server."""
        self._closing = True
        self._updates_changed.notify()
        if self._webhook is not None:
            await self._webhook.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The bound port."""
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What to pass as ``Bot(base_url=...)``; PTB appends the token."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """What to pass as ``Bot(base_file_url=...)``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        """The bot's User object, as getMe answers it."""
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    # ------------------------------------------------------------- recorded calls

    @property
    def calls(self) -> list[Call]:
        """Every answered call, in answer order (a copy)."""
        return list(self._calls)

    def calls_to(
        self, method: str, chat_id: int | None = None, *, ok: bool | None = None
    ) -> list[Call]:
        """Calls of one method, optionally only for one chat and only (un)successful ones."""
        return [call for call in self._calls if _matches(call, method, chat_id, ok)]

    def clear_calls(self) -> None:
        """Forget the recorded calls (messages, drafts and commands stay)."""
        self._calls.clear()

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        *,
        count: int = 1,
        timeout: float = 10.0,
        description: str | None = None,
    ) -> list[Call]:
        """Wait until ``count`` recorded calls (of the whole history) match; return all matches.

        On timeout raise AssertionError listing the calls seen.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._calls_changed.event
                    matched = [call for call in self._calls if predicate(call)]
                    if len(matched) >= count:
                        return matched
                    await changed.wait()
        except TimeoutError:
            matched = [call for call in self._calls if predicate(call)]
            what = description or getattr(predicate, "__name__", repr(predicate))
            seen = "\n".join(f"  {call.summary()}" for call in self._calls[-40:]) or "  (none)"
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} call(s) matching {what};"
                f" {len(matched)} matched. Calls seen ({len(self._calls)}, last 40):\n{seen}"
            ) from None

    async def wait_for_call(
        self,
        method: str,
        chat_id: int | None = None,
        count: int = 1,
        timeout: float = 10.0,
        *,
        ok: bool | None = None,
    ) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (for ``chat_id``, if given) were answered."""
        canonical_method(method)  # fail fast on a typo rather than time out
        return await self.wait_for(
            lambda call: _matches(call, method, chat_id, ok),
            count=count,
            timeout=timeout,
            description=f"{method}(chat_id={chat_id}, ok={ok})",
        )

    async def wait_until_polling(self, timeout: float = 10.0) -> None:
        """Wait until a getUpdates long poll is waiting on the fake (the bot is polling)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._polls_changed.event
                    if self._waiting_polls:
                        return
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"no getUpdates long poll arrived within {timeout}s") from None

    # ------------------------------------------------------------------- state

    def messages(
        self, chat_id: int, *, from_bot: bool | None = None, include_deleted: bool = False
    ) -> list[SentMessage]:
        """The chat's messages in message_id order (users' ones included unless from_bot)."""
        return [
            message
            for message in self._chats.get(chat_id, {}).values()
            if (include_deleted or not message.deleted)
            and (from_bot is None or message.from_bot == from_bot)
        ]

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        """One message, deleted or not; KeyError if it never existed."""
        try:
            return self._chats[chat_id][message_id]
        except KeyError:
            raise KeyError(f"no message {message_id} in chat {chat_id}") from None

    def text_of(self, chat_id: int, message_id: int) -> str:
        """Current text (or caption) of a message."""
        return self.message(chat_id, message_id).text

    def drafts(self, chat_id: int | None = None) -> list[Draft]:
        """Drafts streamed with sendMessageDraft, oldest first."""
        return [d for d in self._drafts if chat_id is None or d.chat_id == chat_id]

    @property
    def commands(self) -> list[JSONDict]:
        """Commands set for the default scope and no language."""
        return self.commands_for()

    def commands_for(
        self, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[JSONDict]:
        """Commands set for one scope (a BotCommandScope dict) and language."""
        return list(self._commands.get(_commands_key(scope, language_code), []))

    def make_forum(self, chat_id: int) -> None:
        """Turn a supergroup into a forum: messages with a message_thread_id are in a topic."""
        self._chat_types[chat_id] = "supergroup"
        self._forums.add(chat_id)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers for this user in this chat (default "member")."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"status must be one of {sorted(MEMBER_STATUSES)}")
        self._member_status[chat_id, user_id] = status

    def delivered_at(self, update_id: int) -> float | None:
        """``time.monotonic()`` when a getUpdates answer first carried the update, or None."""
        return self._delivered_at.get(update_id)

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    # ---------------------------------------------------------- fault injection

    def inject_error(
        self,
        method: str,
        status: int,
        description: str,
        chat_id: int | None = None,
        times: int = 1,
        parameters: JSONDict | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (in ``chat_id``) with this error."""
        self._injections.append(
            _Injection(canonical_method(method), chat_id, times, status, description, parameters)
        )

    def inject_retry_after(
        self, method: str, retry_after: int, chat_id: int | None = None, times: int = 1
    ) -> None:
        """Answer with flood control: 429 and ``parameters.retry_after``."""
        self.inject_error(
            method,
            429,
            f"Too Many Requests: retry after {retry_after}",
            chat_id,
            times,
            {"retry_after": retry_after},
        )

    def inject_not_modified(
        self, method: str = "editMessageText", chat_id: int | None = None, times: int = 1
    ) -> None:
        """Answer with 400 "message is not modified"."""
        self.inject_error(method, 400, NOT_MODIFIED, chat_id, times)

    def inject_cant_parse_entities(
        self, method: str, chat_id: int | None = None, times: int = 1
    ) -> None:
        """Answer with 400 "can't parse entities"."""
        self.inject_error(method, 400, CANT_PARSE_ENTITIES, chat_id, times)

    def clear_injections(self) -> None:
        """Drop the injected faults not used yet."""
        self._injections.clear()

    # ------------------------------------------------------------ user updates

    @property
    def webhook(self) -> Webhook | None:
        """The webhook setWebhook registered, with its delivery attempts; None when polling."""
        return self._webhook.webhook if self._webhook else None

    def push_update(self, update: Mapping[str, Any]) -> int:
        """Queue an Update for getUpdates or the webhook; assigns ``update_id`` if absent."""
        queued = dict(update)
        update_id = queued.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._updates.append(queued)
        self._updates.sort(key=lambda u: int(u["update_id"]))
        self._updates_changed.notify()
        if self._webhook is not None:
            self._webhook.notify()
        return int(update_id)

    def user_sends(
        self,
        text: str,
        *,
        user_id: int = 42,
        chat_id: int | None = None,
        chat_type: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Alice",
        username: str | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        extra_entities: Sequence[Entity] = (),
        deliver: bool = True,
    ) -> int:
        """A user writes ``text``; the message is stored and pushed. Returns its message_id.

        Commands and @mentions get their entities as Telegram makes them; ``entities`` adds
        others (a text_mention, say) in ``extra_entities``. Without ``deliver`` no update is
        pushed: one a bot took (and confirmed) before it stopped."""
        chat_id = user_id if chat_id is None else chat_id
        if chat_type is not None:
            self._chat_types[chat_id] = chat_type
        self._remember_user(user_id, first_name, username, language_code)
        if reply_to_message_id is not None:
            self.message(chat_id, reply_to_message_id)  # a clear error if it does not exist
        message = self._store_message(
            chat_id,
            from_user_id=user_id,
            kind="text",
            text=text,
            entities=_entities_of(text, extra_entities),
            reply_markup=None,
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
        )
        if deliver:
            self.push_update({"message": self._message_json(message)})
        return message.message_id

    def user_sends_photo(
        self,
        data: bytes,
        caption: str | None = None,
        *,
        thumbnail: bytes = b"thumbnail",
        as_document: str | None = None,
        user_id: int = 42,
        chat_id: int | None = None,
        chat_type: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Alice",
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        media_group_id: str | None = None,
        extra_entities: Sequence[Entity] = (),
    ) -> int:
        """A user sends a photo (two sizes: ``thumbnail`` and ``data``; part of an album
        with ``media_group_id``), or with ``as_document`` (a MIME type) a file; returns its
        message_id. The caption's entities are made as for ``user_sends``."""
        chat_id = user_id if chat_id is None else chat_id
        if chat_type is not None:
            self._chat_types[chat_id] = chat_type
        self._remember_user(user_id, first_name, None, language_code)
        if reply_to_message_id is not None:
            self.message(chat_id, reply_to_message_id)  # a clear error if it does not exist
        message_id = self._next_message_id.get(chat_id, 1)
        photo: PhotoInfo | None = None
        document: JSONDict | None = None
        if as_document is None:
            file_ids = (
                f"AgACUserPhoto{chat_id}x{message_id}x0",
                f"AgACUserPhoto{chat_id}x{message_id}x1",
            )
            self._files[file_ids[0]] = thumbnail
            self._files[file_ids[1]] = data
            sizes = (len(thumbnail), len(data))
            photo = PhotoInfo(len(data), "user", file_ids, sizes, data, media_group_id)
        else:
            file_id = f"BQACUserFile{chat_id}x{message_id}"
            self._files[file_id] = data
            document = {
                "file_id": file_id,
                "file_unique_id": file_id[-12:],
                "file_name": "picture." + as_document.rpartition("/")[2],
                "mime_type": as_document,
                "file_size": len(data),
            }
        message = self._store_message(
            chat_id,
            from_user_id=user_id,
            kind="photo" if document is None else "document",
            text=caption or "",
            entities=_entities_of(caption or "", extra_entities),
            reply_markup=None,
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
            photo=photo,
        )
        message.document = document
        self.push_update({"message": self._message_json(message)})
        return message.message_id

    def user_sends_other(
        self,
        fields: Mapping[str, Any],
        *,
        user_id: int = 42,
        chat_id: int | None = None,
        language_code: str | None = "en",
        first_name: str = "Alice",
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
    ) -> int:
        """A user sends a message of another kind: ``fields`` such as ``{"sticker": {...}}``."""
        chat_id = user_id if chat_id is None else chat_id
        self._remember_user(user_id, first_name, None, language_code)
        if reply_to_message_id is not None:
            self.message(chat_id, reply_to_message_id)  # a clear error if it does not exist
        message = self._store_message(
            chat_id,
            from_user_id=user_id,
            kind="other",
            text="",
            entities=[],
            reply_markup=None,
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
        )
        message.other = dict(fields)
        self.push_update({"message": self._message_json(message)})
        return message.message_id

    def file_data(self, file_id: str) -> bytes | None:
        """The bytes stored under ``file_id``, if any."""
        return self._files.get(file_id)

    def user_presses(
        self,
        callback_data: str,
        *,
        message_id: int,
        user_id: int = 42,
        chat_id: int | None = None,
        language_code: str | None = "en",
        first_name: str = "Alice",
        username: str | None = None,
    ) -> str:
        """A user presses an inline button of a stored message. Returns the callback query id."""
        chat_id = user_id if chat_id is None else chat_id
        message = self.message(chat_id, message_id)
        query_id = str(next(self._callback_ids))
        self._open_callback_queries.add(query_id)
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": self._remember_user(user_id, first_name, username, language_code),
                    "message": self._message_json(message),
                    "chat_instance": str(-abs(chat_id) - 4_000_000_000),
                    "data": callback_data,
                }
            }
        )
        return query_id

    # ------------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        if request.match_info["token"] != self.token:
            error = ApiError(401, "Unauthorized")
            return self._answer(request.match_info["method"], {}, at, error=error)
        method = _CANONICAL.get(request.match_info["method"].lower())
        if method is None:
            error = ApiError(404, "Not Found: method not found")
            return self._answer(request.match_info["method"], {}, at, error=error)
        params: JSONDict = {}
        try:
            params = _decode_params(await _read_params(request))
            self._apply_injections_and_flood(method, params, at)
            if method == "getUpdates":
                result = await self._get_updates(params)
                delivered = time.monotonic()
                for update in result:
                    self._delivered_at.setdefault(int(update["update_id"]), delivered)
            else:
                result = self._handlers[method](params)
                if asyncio.iscoroutine(result):
                    result = await result
        except ApiError as error:
            return self._answer(method, params, at, error=error)
        return self._answer(method, params, at, result=result)

    async def _handle_file(self, request: web.Request) -> web.Response:
        file_id = self._file_paths.get(request.match_info["path"])
        if request.match_info["token"] != self.token or file_id is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=self._files[file_id], content_type="application/octet-stream")

    def _answer(
        self,
        method: str,
        params: JSONDict,
        at: float,
        *,
        result: Any = None,
        error: ApiError | None = None,
    ) -> web.Response:
        if error is None:
            self._record(Call(method, params, at, ok=True, result=result))
            return web.json_response({"ok": True, "result": result})
        self._record(Call(method, params, at, False, error.status, error.description))
        return web.json_response(error.body(), status=error.status)

    def _record(self, call: Call) -> None:
        self._calls.append(call)
        self._calls_changed.notify()

    def _apply_injections_and_flood(self, method: str, params: JSONDict, now: float) -> None:
        chat_id = params.get("chat_id")
        for injection in self._injections:
            if injection.method == method and injection.chat_id in (None, chat_id):
                injection.remaining -= 1
                if injection.remaining <= 0:
                    self._injections.remove(injection)
                raise ApiError(injection.status, injection.description, injection.parameters)
        if self._flood_gate is not None:
            retry_after = self._flood_gate.retry_after(method, chat_id, now)
            if retry_after is not None:
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )

    # ----------------------------------------------------------- getUpdates

    async def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)
        offset = params.get("offset")
        limit = min(100, max(1, params.get("limit", 100)))
        timeout = max(0.0, float(params.get("timeout", 0)))
        if params.get("allowed_updates") is not None:
            self._allowed_updates = list(params["allowed_updates"])
        if isinstance(offset, int):
            if offset < 0:
                # A negative offset keeps only the last -offset updates and forgets the rest.
                del self._updates[:offset]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._updates_changed.event
            batch = self._deliverable(limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            self._waiting_polls += 1
            self._polls_changed.notify()
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return self._deliverable(limit)
            finally:
                self._waiting_polls -= 1

    def _deliverable(self, limit: int) -> list[JSONDict]:
        if self._allowed_updates:
            # Telegram never creates updates of types the bot did not allow.
            allowed = set(self._allowed_updates)
            self._updates = [u for u in self._updates if set(u) - {"update_id"} <= allowed]
        return copy.deepcopy(self._updates[:limit])

    # ------------------------------------------------------- simple methods

    async def _delete_webhook(self, params: JSONDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if self._webhook is not None:
            webhook, self._webhook = self._webhook, None
            await webhook.close()
        return True

    def _get_webhook_info(self, params: JSONDict) -> JSONDict:
        url = self._webhook.webhook.url if self._webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _set_webhook(self, params: JSONDict) -> bool:
        url = params.get("url", "")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise _bad_request("Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if params.get("allowed_updates") is not None:
            self._allowed_updates = list(params["allowed_updates"])
        if self._webhook is not None:
            await self._webhook.close()
            self._webhook = None
        if not url:
            return True
        if not url.startswith(("http://", "https://")):
            raise _bad_request("Bad Request: bad webhook: HTTPS url must be provided for webhook")
        webhook = Webhook(
            url,
            secret,
            int(params.get("max_connections", 40)),
            params.get("allowed_updates"),
        )
        self._webhook = WebhookDeliverer(webhook, self._webhook_batch, self._webhook_acknowledged)
        self._webhook.start()
        self._webhook.notify()
        return True

    def _webhook_batch(self) -> list[JSONDict]:
        return copy.deepcopy(self._deliverable(100))

    def _webhook_acknowledged(self, update_id: int, at: float) -> None:
        self._delivered_at.setdefault(update_id, at)
        self._updates = [u for u in self._updates if u["update_id"] != update_id]

    def _set_my_commands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request('parameter "commands" is required')
        if len(commands) > 100:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        stored: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            stored.append({"command": name, "description": description})
        key = _commands_key(params.get("scope"), params.get("language_code", ""))
        self._commands[key] = stored
        return True

    def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        return self.commands_for(params.get("scope"), params.get("language_code", ""))

    def _delete_my_commands(self, params: JSONDict) -> bool:
        self._commands.pop(
            _commands_key(params.get("scope"), params.get("language_code", "")), None
        )
        return True

    def _send_chat_action(self, params: JSONDict) -> bool:
        self._chat_id(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _answer_callback_query(self, params: JSONDict) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._open_callback_queries:
            raise ApiError(400, QUERY_TOO_OLD)
        self._open_callback_queries.discard(query_id)
        return True

    def _get_chat(self, params: JSONDict) -> JSONDict:
        chat = self._chat_json(self._chat_id(params))
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return chat

    def _get_chat_member(self, params: JSONDict) -> JSONDict:
        chat_id = self._chat_id(params)
        user_id = _require_int(params, "user_id")
        status = self._member_status.get((chat_id, user_id), "member")
        return _chat_member_json(status, self._user_json(user_id))

    # ------------------------------------------------------------- messages

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat_id = self._chat_id(params)
        text, entities = _formatted(params, "text", "entities")
        _check_text(text)
        message = self._store_message(
            chat_id,
            from_user_id=BOT_ID,
            kind="text",
            text=text,
            entities=entities,
            reply_markup=_inline_markup(params),
            message_thread_id=params.get("message_thread_id"),
            reply_to_message_id=self._reply_target(chat_id, params),
        )
        return self._message_json(message)

    def _send_photo(self, params: JSONDict) -> JSONDict:
        chat_id = self._chat_id(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo.removeprefix("attach://"))
        caption, entities = _formatted(params, "caption", "caption_entities")
        if utf16_len(caption) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        info = self._photo_info(chat_id, photo)
        message = self._store_message(
            chat_id,
            from_user_id=BOT_ID,
            kind="photo",
            text=caption,
            entities=entities,
            reply_markup=_inline_markup(params),
            message_thread_id=params.get("message_thread_id"),
            reply_to_message_id=self._reply_target(chat_id, params),
            photo=info,
        )
        return self._message_json(message)

    def _photo_info(
        self, chat_id: int, photo: object, media_group_id: str | None = None
    ) -> PhotoInfo:
        """Check a photo parameter (an upload, a URL or a file_id) and describe it."""
        data: bytes | None = None
        if isinstance(photo, UploadedFile):
            if photo.size == 0:
                raise _bad_request("file must be non-empty")
            size: int | None = photo.size
            source = photo.filename or photo.name
            data = photo.data
        elif isinstance(photo, str) and photo:
            if re.match(r"https?://(127\.|localhost[:/])", photo):
                raise _bad_request("failed to get HTTP URL content")
            size, source = None, photo
        else:
            raise _bad_request("there is no photo in the request")
        message_id = self._next_message_id.get(chat_id, 1)
        file_ids = tuple(f"AgACAgFake{chat_id}x{message_id}x{i}" for i in range(2))
        if data is not None:
            for file_id in file_ids:
                self._files[file_id] = data
        elif source in self._files:
            for file_id in file_ids:
                self._files[file_id] = self._files[source]
        return PhotoInfo(size, source, file_ids, data=data, media_group_id=media_group_id)

    def _send_media_group(self, params: JSONDict) -> list[JSONDict]:
        chat_id = self._chat_id(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad_request("wrong number of media specified; must be between 2 and 10")
        reply_to = self._reply_target(chat_id, params)
        group_id = str(next(self._media_group_ids))
        checked: list[tuple[PhotoInfo, str, list[Entity]]] = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                raise _bad_request("the fake supports albums of photos only")
            photo = item.get("media")
            if isinstance(photo, str) and photo.startswith("attach://"):
                photo = params.get(photo.removeprefix("attach://"))
            caption, entities = _formatted(item, "caption", "caption_entities")
            if utf16_len(caption) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
            # Message ids are handed out in order, so each item's id is known in advance.
            info = self._photo_info(chat_id, photo, group_id)
            self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 1) + 1
            checked.append((info, caption, entities))
        self._next_message_id[chat_id] -= len(checked)
        sent = [
            self._store_message(
                chat_id,
                from_user_id=BOT_ID,
                kind="photo",
                text=caption,
                entities=entities,
                reply_markup=None,
                message_thread_id=params.get("message_thread_id"),
                reply_to_message_id=reply_to,
                photo=info,
            )
            for info, caption, entities in checked
        ]
        return [self._message_json(message) for message in sent]

    def _get_file(self, params: JSONDict) -> JSONDict:
        file_id = params.get("file_id")
        if not isinstance(file_id, str) or file_id not in self._files:
            raise _bad_request("invalid file_id")
        path = next((p for p, f in self._file_paths.items() if f == file_id), None)
        if path is None:
            path = f"photos/file_{len(self._file_paths)}.jpg"
            self._file_paths[path] = file_id
        return {
            "file_id": file_id,
            "file_unique_id": file_id[-12:],
            "file_size": len(self._files[file_id]),
            "file_path": path,
        }

    def _send_message_draft(self, params: JSONDict) -> bool:
        chat_id = self._chat_id(params)
        if self._chat_type(chat_id) != "private":
            raise _bad_request("message drafts can be sent only to private chats")
        draft_id = _require_int(params, "draft_id")
        if draft_id == 0:
            raise _bad_request("draft_id must be non-zero")
        # An absent or empty text shows a "Thinking..." placeholder, so it is allowed.
        text, entities = _formatted(params, "text", "entities")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, MESSAGE_TOO_LONG)
        draft = Draft(
            chat_id, draft_id, text, entities, params.get("message_thread_id"), time.monotonic()
        )
        self._drafts.append(draft)
        return True

    def _edit_message_text(self, params: JSONDict) -> JSONDict:
        message = self._message_to_edit(params)
        if message.kind != "text":
            raise _bad_request("there is no text in the message to edit")
        text, entities = _formatted(params, "text", "entities")
        _check_text(text)
        return self._edit(message, text, entities, _inline_markup(params))

    def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict:
        message = self._message_to_edit(params)
        return self._edit(message, message.text, message.entities, _inline_markup(params))

    def _delete_message(self, params: JSONDict) -> bool:
        chat_id = self._chat_id(params)
        message = self._chats.get(chat_id, {}).get(_require_int(params, "message_id"))
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        message.deleted = True
        return True

    def _message_to_edit(self, params: JSONDict) -> SentMessage:
        if "inline_message_id" in params:
            raise _bad_request("the fake does not support inline_message_id")
        chat_id = self._chat_id(params)
        if "message_id" not in params:
            raise _bad_request("message identifier is not specified")
        message = self._chats.get(chat_id, {}).get(_require_int(params, "message_id"))
        if message is None or message.deleted:
            raise ApiError(400, MESSAGE_TO_EDIT_NOT_FOUND)
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    def _edit(
        self,
        message: SentMessage,
        text: str,
        entities: list[Entity],
        reply_markup: JSONDict | None,
    ) -> JSONDict:
        # An edit without reply_markup removes the keyboard, so it counts as a change.
        if (text, entities, reply_markup) == (
            message.text,
            message.entities,
            message.reply_markup,
        ):
            raise ApiError(400, NOT_MODIFIED)
        message.versions.append(MessageVersion(text, entities, reply_markup, time.monotonic()))
        message.edit_date = int(time.time())
        return self._message_json(message)

    # ---------------------------------------------------------------- helpers

    def _chat_id(self, params: JSONDict) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if not isinstance(chat_id, int):
            # "@channelusername": the fake knows no public usernames.
            raise _bad_request("chat not found")
        return chat_id

    def _chat_type(self, chat_id: int) -> str:
        return self._chat_types.get(chat_id, "private" if chat_id > 0 else "supergroup")

    def _reply_target(self, chat_id: int, params: JSONDict) -> int | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            target, tolerant = (
                reply.get("message_id"),
                bool(reply.get("allow_sending_without_reply")),
            )
            reply_chat = reply.get("chat_id", chat_id)
        else:
            target = params.get("reply_to_message_id")
            tolerant = bool(params.get("allow_sending_without_reply"))
            reply_chat = chat_id
        if target is None:
            return None
        message = self._chats.get(reply_chat, {}).get(target)
        if message is None or message.deleted or reply_chat != chat_id:
            if tolerant:
                return None
            raise _bad_request("message to be replied not found")
        return int(target)

    def _store_message(
        self,
        chat_id: int,
        *,
        from_user_id: int,
        kind: Literal["text", "photo", "document", "other"],
        text: str,
        entities: list[Entity],
        reply_markup: JSONDict | None,
        message_thread_id: int | None,
        reply_to_message_id: int | None,
        photo: PhotoInfo | None = None,
    ) -> SentMessage:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        message = SentMessage(
            chat_id=chat_id,
            message_id=message_id,
            from_user_id=from_user_id,
            kind=kind,
            date=int(time.time()),
            versions=[MessageVersion(text, entities, reply_markup, time.monotonic())],
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
            photo=photo,
        )
        self._chats.setdefault(chat_id, {})[message_id] = message
        return message

    def _remember_user(
        self, user_id: int, first_name: str, username: str | None, language_code: str | None
    ) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        self._users[user_id] = user
        return dict(user)

    def _user_json(self, user_id: int) -> JSONDict:
        if user_id == BOT_ID:
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": BOT_FIRST_NAME,
                "username": BOT_USERNAME,
            }
        return dict(
            self._users.get(user_id, {"id": user_id, "is_bot": False, "first_name": "User"})
        )

    def _chat_json(self, chat_id: int) -> JSONDict:
        chat_type = self._chat_type(chat_id)
        if chat_type != "private":
            group: JSONDict = {
                "id": chat_id,
                "type": chat_type,
                "title": f"Test group {abs(chat_id)}",
            }
            if chat_id in self._forums:
                group["is_forum"] = True
            return group
        user = self._user_json(chat_id)
        chat: JSONDict = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        return chat

    def _message_json(self, message: SentMessage, *, with_reply: bool = True) -> JSONDict:
        data: JSONDict = {
            "message_id": message.message_id,
            "from": self._user_json(message.from_user_id),
            "chat": self._chat_json(message.chat_id),
            "date": message.date,
        }
        if message.message_thread_id is not None:
            data["message_thread_id"] = message.message_thread_id
            if message.chat_id in self._forums:
                data["is_topic_message"] = True
        if message.reply_to_message_id is not None and with_reply:
            target = self._chats[message.chat_id][message.reply_to_message_id]
            data["reply_to_message"] = self._message_json(target, with_reply=False)
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.kind == "text":
            data["text"] = message.text
            if message.entities:
                data["entities"] = message.entities
        elif message.other is not None:
            data.update(message.other)
        else:
            if message.document is not None:
                data["document"] = dict(message.document)
            else:
                assert message.photo is not None
                data["photo"] = _photo_sizes(message.photo)
                if message.photo.media_group_id is not None:
                    data["media_group_id"] = message.photo.media_group_id
            if message.text:
                data["caption"] = message.text
            if message.entities:
                data["caption_entities"] = message.entities
        if message.reply_markup is not None:
            data["reply_markup"] = message.reply_markup
        return copy.deepcopy(data)  # callers must not alias the fake's state


# ------------------------------------------------------------------ module helpers


def _entities_of(text: str, extra: Sequence[Entity]) -> list[Entity]:
    """A leading command and the @mentions as Telegram marks them, then ``extra``."""
    entities: list[Entity] = []
    if command := _LEADING_COMMAND.match(text):
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command[0])})
    for mention in _MENTION.finditer(text):
        offset = utf16_len(text[: mention.start()])
        entities.append({"type": "mention", "offset": offset, "length": len(mention[0])})
    entities.extend(dict(entity) for entity in extra)
    return entities


def _matches(call: Call, method: str, chat_id: int | None, ok: bool | None) -> bool:
    return (
        call.method.lower() == method.lower()
        and (chat_id is None or call.chat_id == chat_id)
        and (ok is None or call.ok == ok)
    )


def _commands_key(scope: Mapping[str, Any] | None, language_code: str) -> tuple[str, str]:
    return json.dumps(dict(scope or {"type": "default"}), sort_keys=True), language_code


async def _read_params(request: web.Request) -> JSONDict:
    """Query string merged with a form, multipart or JSON body, values as sent."""
    params: JSONDict = dict(request.query)
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise _bad_request("can't parse JSON encoded request body") from None
        if not isinstance(body, dict):
            raise _bad_request("request body must be a JSON object")
        params.update(body)
    elif request.content_type == "multipart/form-data":
        # Read parts ourselves: request.post() spools files to temporary files nobody closes.
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            data = await part.read(decode=True)
            if part.filename is not None:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                params[part.name] = UploadedFile(part.name, part.filename, content_type, data)
            else:
                params[part.name] = data.decode(part.get_charset("utf-8"))
    elif request.content_type == "application/x-www-form-urlencoded":
        params.update(await request.post())
    return params


def _decode_params(raw: JSONDict) -> JSONDict:
    """Give each parameter its Bot API type (see _INT_PARAMS and friends)."""
    params: JSONDict = {}
    for name, value in raw.items():
        if isinstance(value, UploadedFile) or not isinstance(value, str):
            params[name] = value
        elif name in _INT_PARAMS:
            params[name] = _decode_int(name, value)
        elif name in _FLOAT_PARAMS:
            try:
                params[name] = float(value) if "." in value else int(value)
            except ValueError:
                raise _bad_request(f"invalid {name} specified") from None
        elif name in _BOOL_PARAMS:
            params[name] = value.lower() in {"true", "1"}
        elif name in _JSON_PARAMS:
            try:
                params[name] = json.loads(value)
            except ValueError:
                what = "reply keyboard markup" if name == "reply_markup" else name
                raise _bad_request(f"can't parse {what} JSON object") from None
        else:
            params[name] = value
    return params


def _decode_int(name: str, value: str) -> int | str:
    if name == "chat_id" and value.startswith("@"):
        return value
    try:
        return int(value)
    except ValueError:
        raise _bad_request(f"invalid {name} specified") from None


def _require_int(params: JSONDict, name: str) -> int:
    value = params.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_request(f"{name} is empty" if value is None else f"invalid {name} specified")
    return value


def _formatted(params: JSONDict, text_key: str, entities_key: str) -> tuple[str, list[Entity]]:
    """The text as Telegram stores it: entities or parse_mode applied, whitespace trimmed."""
    raw = params.get(text_key)
    text = "" if raw is None else str(raw)
    parse_mode = str(params.get("parse_mode") or "")
    try:
        if params.get(entities_key) is not None:
            entities = check_entities(text, params[entities_key])
        elif parse_mode.lower() == "html":
            text, entities = parse_html(text)
        elif parse_mode.lower() in {"", "markdown", "markdownv2"}:
            entities = []
        else:
            raise _bad_request("unsupported parse_mode")
    except EntityError as error:
        raise _bad_request(f"can't parse entities: {error}") from None
    return strip_formatted(text, entities)


def _check_text(text: str) -> None:
    if not text:
        raise ApiError(400, MESSAGE_TEXT_EMPTY)
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, MESSAGE_TOO_LONG)


def _inline_markup(params: JSONDict) -> JSONDict | None:
    """Only an inline keyboard becomes part of the message; reply keyboards are not echoed."""
    markup = params.get("reply_markup")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        return markup
    return None


def _photo_sizes(photo: PhotoInfo) -> list[JSONDict]:
    # Fixed dimensions: the fake does not decode images.
    sizes: Iterable[tuple[int, int]] = ((90, 90), (800, 800))
    file_sizes = photo.file_sizes or (photo.size,) * len(photo.file_ids)
    return [
        {
            "file_id": file_id,
            "file_unique_id": file_id[-12:],
            "width": width,
            "height": height,
            **({"file_size": file_size} if file_size is not None else {}),
        }
        for file_id, (width, height), file_size in zip(
            photo.file_ids, sizes, file_sizes, strict=True
        )
    ]


def _chat_member_json(status: str, user: JSONDict) -> JSONDict:
    member: JSONDict = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        rights = (
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_pin_messages",
        )
        member.update(dict.fromkeys(rights, True))
        member.update(can_be_edited=False, is_anonymous=False, can_promote_members=False)
    elif status == "restricted":
        restrictions = (
            "can_send_messages",
            "can_send_audios",
            "can_send_documents",
            "can_send_photos",
            "can_send_videos",
            "can_send_video_notes",
            "can_send_voice_notes",
            "can_send_polls",
            "can_send_other_messages",
            "can_add_web_page_previews",
            "can_change_info",
            "can_invite_users",
            "can_pin_messages",
            "can_manage_topics",
            "can_edit_tag",
            "can_react_to_messages",
        )
        member.update(dict.fromkeys(restrictions, False))
        member.update(is_member=True, until_date=0)
    elif status == "kicked":
        member["until_date"] = 0
    return member
