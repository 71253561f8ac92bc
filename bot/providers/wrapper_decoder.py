"""Pure decoders of seed 000's wrapper service: its line protocol and its JSON answers.

The chat stream (``POST /openai/chat/stream``, and ``/openai/chat/sse``, whose example in the
document is the same) is one JSON object a line::

    {"code":0,"data":"你","message":"continue"}           a piece of the answer: TextDelta
    {"code":0,"data":"MjAy...Nw==","message":"code"}      the chatcode: ProviderSession
    {"code":0,"data":"[DONE]","message":"end"}            the end: StreamEnd("stop")

and ``message: "error"`` is a failure ("错误返回，此时文字可能丢失"), raised as the classified
``ProviderError``. ``WrapperLineDecoder`` cuts the body into lines: bare lines, and also the
``data:`` lines of real server-sent events, in case the ``/sse`` path frames the same objects
that way (its example does not show any framing); ``event:``, ``id:``, ``retry:`` and comment
lines are SSE fields, blank lines are skipped, and lines may end in LF, CRLF or CR.
``WrapperStreamParser`` turns the lines into events. Tolerated: ``code`` as a number or a
string (the document types it both ways), a line without ``code``, message kinds we do not
know (ignored), lines that are not JSON (kept aside, see below), and ``data: "[DONE]"`` with
another kind, since the document also says "当返回[DONE]时结束" (it ends when [DONE] comes).

Where the stream ends: ``StreamEnd`` comes once, at ``end`` (or ``[DONE]``), and nothing after
it is parsed. A body that ends without it raises ``StreamCut``, as the other adapters do when
no finish reason came, with one exception: if no line of the body was a protocol line at all,
its text is classified as an error body (a 200 carrying a pretty-printed JSON error or a
plain-text complaint gets its real class rather than "cut").

The completions stream (``/openai/completions/stream`` and ``/sse``) is the same protocol
without a chatcode line, read by the same parser.

``parse_chat_answer`` reads ``POST /openai/chat`` (``{code, data: {chatcode, role, content},
message}``) and ``POST /openai/completions`` (``{code, data: [text, ...], message}``),
``parse_edit_answer`` ``POST /openai/edits`` (whose answer the document does not show),
``parse_send_answer`` Steamship's ``POST /send`` (``{text, fileId}``), and
``parse_wrapper_models`` ``GET /openai/models`` (``{code, data: {models, suggest}, message}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bot.errors import StreamCut
from bot.providers.base import ModelInfo, ProviderSession, StreamEnd, StreamEvent, TextDelta
from bot.providers.classify import (
    WRAPPER_ERROR,
    classify_error,
    is_error_body,
    is_wrapper_error,
)
from bot.providers.decoders import SSEDecoder, SSEMessage, parse_edit, parse_json

DONE = "[DONE]"

CONTINUE = "continue"
CODE = "code"
END = "end"

STRAY_TEXT_LIMIT = 64 * 1024
"""Characters of non-protocol lines kept for classifying a body that was not a stream."""

_SSE_FIELDS = frozenset({"data", "event", "id", "retry"})


class WrapperLineDecoder(SSEDecoder):
    """Lines of a wrapper stream as ``SSEMessage`` values, fed by hand.

    A bare line is a message of its own (its text stripped); SSE field lines are read as
    ``SSEDecoder`` reads them, so ``data: {...}`` gives the same message as ``{...}``. Line
    splitting, CR/CRLF handling, UTF-8 across chunk borders and the BOM are ``SSEDecoder``'s.
    """

    __slots__ = ()

    def _line(self, line: str, out: list[SSEMessage]) -> None:
        # Nearly every line is a JSON object, and no field name starts with a brace.
        is_field = not line.startswith("{") and (
            not line or line[0] == ":" or line.partition(":")[0] in _SSE_FIELDS
        )
        if is_field:
            super()._line(line, out)
            return
        stripped = line.strip()
        if stripped:
            out.append(SSEMessage(stripped))


class WrapperStreamParser:
    """State machine over the lines of one wrapper chat stream."""

    __slots__ = ("_done", "_protocol", "_provider", "_secrets", "_started", "_stray")

    def __init__(self, *, provider: str | None = None, secrets: tuple[str, ...] = ()) -> None:
        self._provider = provider
        self._secrets = secrets
        self._done = False
        self._started = False
        self._protocol = False
        """A line of the protocol was seen: the body is a stream, not an error page."""
        self._stray: list[str] = []
        """Lines that were not protocol lines, up to ``STRAY_TEXT_LIMIT`` characters."""

    @property
    def done(self) -> bool:
        """True once ``end`` was seen (or ``close()`` ended the stream)."""
        return self._done

    @property
    def finished(self) -> bool:
        """True once ``end`` was seen; the protocol has no earlier sign of a complete answer."""
        return self._done

    @property
    def started(self) -> bool:
        """True once a piece of text was emitted: the answer is partial now."""
        return self._started

    def feed_message(self, message: SSEMessage) -> list[StreamEvent]:
        """Parse one line; an error line raises its classified error."""
        if self._done:
            return []
        payload = message.data.strip()
        if not payload:
            return []
        if payload == DONE:
            return self._end()
        try:
            line = parse_json(payload)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            self._keep_stray(payload)
            return []
        if message.event == "error":
            if not (is_error_body(line) or is_wrapper_error(line)):
                line = {**line, "message": WRAPPER_ERROR}  # the event says it is an error
            raise classify_error(None, line, provider=self._provider, secrets=self._secrets)
        return self.feed_line(line)

    def feed_line(self, line: dict[str, object]) -> list[StreamEvent]:
        """Parse one already-decoded line object."""
        if self._done:
            return []
        if is_wrapper_error(line) or is_error_body(line):
            raise classify_error(None, line, provider=self._provider, secrets=self._secrets)
        if "message" not in line and "data" not in line:
            self._keep_stray(json.dumps(line, ensure_ascii=False))
            return []
        kind = line.get("message")
        data = line.get("data")
        self._protocol = True
        if kind == END or data == DONE:
            return self._end()
        return self._piece(kind, data)

    def close(self) -> list[StreamEvent]:
        """The body ended without ``end``: raise ``StreamCut``, or the error the body was."""
        if self._done:
            return []
        self._done = True
        if not self._protocol and self._stray:
            raise classify_error(
                None, "\n".join(self._stray), provider=self._provider, secrets=self._secrets
            )
        what = "the answer" if self._started else "any answer"
        raise StreamCut(f"stream ended without end, after {what}", provider=self._provider)

    def _piece(self, kind: object, data: object) -> list[StreamEvent]:
        """The event of a ``continue`` or ``code`` line; nothing for other kinds."""
        if not isinstance(data, str) or not data:
            return []
        if kind == CONTINUE:
            self._started = True
            return [TextDelta(data)]
        if kind == CODE:
            return [ProviderSession(data)]
        return []  # a kind the document does not define

    def _end(self) -> list[StreamEvent]:
        self._done = True
        self._protocol = True
        return [StreamEnd("stop")]

    def _keep_stray(self, text: str) -> None:
        if sum(len(s) for s in self._stray) < STRAY_TEXT_LIMIT:
            self._stray.append(text)


def parse_chat_answer(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[StreamEvent]:
    """The events of ``POST /openai/chat``'s answer: text, the chatcode, ``StreamEnd``.

    ``data`` is ``{chatcode, role, content}``; a list of text pieces (the shape of
    ``/openai/completions``) is accepted too. Anything else raises the classified error.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if is_wrapper_error(body) or is_error_body(body):
        data = None
    text: str | None = None
    chatcode: object = None
    if isinstance(data, dict):
        content = data.get("content")
        text = content if isinstance(content, str) else None
        chatcode = data.get("chatcode")
    elif isinstance(data, list) and all(isinstance(piece, str) for piece in data):
        text = "".join(data)
    if text is None:
        raise classify_error(status, body, provider=provider, secrets=secrets)
    return _whole_answer(text, chatcode)


def parse_edit_answer(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> str:
    """The edited text of ``POST /openai/edits``.

    The document shows no answer, so the shapes of its other endpoints are read: ``data`` as
    a list of texts (as ``/openai/completions``; the first is the edit, ``n`` being 1), a
    text, or ``{content}`` / ``{text}``; and OpenAI's own ``{choices: [{text}]}``, passed
    through. Anything else raises the classified error.
    """
    if is_wrapper_error(body) or is_error_body(body):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    if isinstance(body, dict) and "choices" in body:
        return parse_edit(body, status=status, provider=provider, secrets=secrets)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], str):
        return data[0]
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("content", "text"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    raise classify_error(status, body, provider=provider, secrets=secrets)


def parse_send_answer(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[StreamEvent]:
    """The events of Steamship's ``POST /send`` answer, ``{text, fileId}``.

    ``fileId`` "marks one conversation" and goes back as ``inputFileId``: a ProviderSession.
    """
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or is_wrapper_error(body) or is_error_body(body):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    assert isinstance(body, dict)
    return _whole_answer(text, body.get("fileId"))


def _whole_answer(text: str, session: object) -> list[StreamEvent]:
    """A non-streamed answer in the order a stream gives it: text, session, end."""
    events: list[StreamEvent] = []
    if text:
        events.append(TextDelta(text))
    if isinstance(session, str) and session:
        events.append(ProviderSession(session))
    events.append(StreamEnd("stop"))
    return events


@dataclass(frozen=True, slots=True)
class WrapperModels:
    """What ``GET /openai/models`` reports.

    ``models``: every model the service reports ("从openai官网查询到的现有模型"), then those
    named only in ``suggest`` (``extra["listed"]`` is False for these); each suggested model
    has ``extra["suggested_for"]``, the capabilities it is suggested for. ``suggest``: the
    service's per-capability lists ("在config.yaml中配置的可调用的模型"), nested keys flattened
    with dots: ``{"chat": ("gpt-4",), "audio.transcriptions": ("whisper-1",), ...}``.
    """

    models: list[ModelInfo] = field(default_factory=list)
    suggest: dict[str, tuple[str, ...]] = field(default_factory=dict)


def parse_wrapper_models(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> WrapperModels:
    """Read ``{code, data: {models, suggest}, message}``; raise for an error body."""
    if is_wrapper_error(body) or is_error_body(body):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list):
        data = {"models": data}
    if not isinstance(data, dict):
        return WrapperModels()
    suggest: dict[str, tuple[str, ...]] = {}
    _flatten_suggest(data.get("suggest"), "", suggest)
    capabilities: dict[str, list[str]] = {}
    for capability, names in suggest.items():
        for name in names:
            capabilities.setdefault(name, []).append(capability)
    models: list[ModelInfo] = []
    seen: set[str] = set()
    items = data.get("models")
    for item in items if isinstance(items, list) else []:
        model = _model(item)
        if model is None or model.id in seen:
            continue
        seen.add(model.id)
        if model.id in capabilities:
            model.extra["suggested_for"] = tuple(capabilities[model.id])
        models.append(model)
    for name, suggested_for in capabilities.items():
        if name not in seen:
            seen.add(name)
            extra: dict[str, object] = {"suggested_for": tuple(suggested_for), "listed": False}
            models.append(ModelInfo(id=name, extra=extra))
    return WrapperModels(models, suggest)


def _model(item: object) -> ModelInfo | None:
    """A model named by a string, or an OpenAI model object with an ``id``."""
    if isinstance(item, str):
        return ModelInfo(id=item) if item else None
    if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
        owned_by = item.get("owned_by")
        extra = {k: v for k, v in item.items() if k not in ("id", "owned_by")}
        return ModelInfo(
            id=item["id"], owned_by=owned_by if isinstance(owned_by, str) else None, extra=extra
        )
    return None


def _flatten_suggest(value: object, prefix: str, out: dict[str, tuple[str, ...]]) -> None:
    """``{"audio": {"transcriptions": [...]}}`` into ``{"audio.transcriptions": (...)}``."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            _flatten_suggest(item, f"{name}.", out)
        elif isinstance(item, list):
            out[name] = tuple(n for n in item if isinstance(n, str) and n)
        elif isinstance(item, str) and item:
            out[name] = (item,)
