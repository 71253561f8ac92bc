"""Pure, incremental decoders: bytes in, typed values out, no I/O.

``SSEDecoder`` cuts a byte stream into Server-Sent Events; ``OpenAIStreamParser`` turns the
data payloads of an OpenAI-compatible chat or legacy completions stream into ``StreamEvent``
values (Anthropic's stream has its own parser in ``anthropic_decoder``). Both are fed by
hand, so tests can split recorded streams at every byte offset. ``parse_models`` reads a
model list, ``parse_edit`` the answer of ``/v1/edits``. ``parse_json`` reads the JSON of
every stream parser.

Where the stream ends (the rule every adapter relies on): ``OpenAIStreamParser`` emits
``StreamEnd`` when it sees ``[DONE]``. When the body ends without ``[DONE]``, ``close()``
emits it if a ``finish_reason`` was seen and raises ``StreamCut`` otherwise. Nothing is
parsed after ``[DONE]``, so ``StreamEnd`` is always the last event and comes exactly once,
after any usage-only chunk (which providers send after the finish reason).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from bot import fast_json
from bot.errors import StreamCut
from bot.providers.base import (
    ModelInfo,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from bot.providers.classify import classify_error, is_error_body

DONE = "[DONE]"

# The first look-up of a codec imports its module: done here, at start-up, rather than
# in the first stream.
codecs.lookup("utf-8-sig")


def parse_json(text: str) -> object:
    """``json.loads(text)``, by orjson where it gives the same value (``bot.fast_json``)."""
    return fast_json.loads(text.encode("utf-8", "surrogatepass"), lambda: json.loads(text))


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One ``data:`` line of an event stream and the ``event:`` name that preceded it."""

    data: str
    event: str | None = None


class SSEDecoder:
    """Incremental Server-Sent Events decoder, tolerant the way OpenAI-compatible gateways need.

    Every ``data:`` line is a message of its own (gateways never send multi-line data and some
    omit the blank line between events). An ``event:`` line names the next data line only.
    Comments (``:``), ``id:`` and ``retry:`` are ignored. Lines may end in LF, CRLF or CR and
    have no length limit; each byte is scanned once.
    """

    __slots__ = ("_decoder", "_event", "_partial", "_pending_cr")

    def __init__(self) -> None:
        # "utf-8-sig" drops a leading BOM, as the SSE specification asks; bad bytes become
        # U+FFFD rather than killing the answer.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._partial: list[str] = []
        self._event: str | None = None
        self._pending_cr = False

    def feed(self, data: bytes) -> list[SSEMessage]:
        """Decode ``data`` and return the messages whose lines it completed."""
        return self._lines(self._decoder.decode(data))

    def flush(self) -> list[SSEMessage]:
        """End of stream: return what an unterminated last line holds, then reset."""
        out = self._lines(self._decoder.decode(b"", final=True))
        if self._partial:
            line = "".join(self._partial)
            self._partial = []
            self._line(line, out)
        self._decoder.reset()
        self._event = None
        self._pending_cr = False
        return out

    def _lines(self, text: str) -> list[SSEMessage]:
        out: list[SSEMessage] = []
        if not text:
            return out
        if self._pending_cr:
            # The CR that ended the previous feed and this LF are one line break.
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return out
        if "\r" in text:
            self._pending_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if len(lines) == 1:
            self._partial.append(text)
            return out
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial = []
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        # Data lines and the blank lines between events are nearly every line: read here,
        # without a call each; ``_line`` reads them the same way.
        for line in lines:
            if not line:
                self._event = None
            elif line.startswith("data:"):
                value = line[6:] if line.startswith(" ", 5) else line[5:]
                out.append(SSEMessage(value, self._event))
                self._event = None
            else:
                self._line(line, out)
        return out

    def _line(self, line: str, out: list[SSEMessage]) -> None:
        if line.startswith("data:"):
            value = line[6:] if line.startswith(" ", 5) else line[5:]
            out.append(SSEMessage(value, self._event))
            self._event = None
        elif not line:
            self._event = None
        elif line[0] != ":":
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value or None
            elif name == "data":  # "data" with no colon: an empty data field
                out.append(SSEMessage(value, self._event))
                self._event = None


class OpenAIStreamParser:
    """State machine over the data payloads of an OpenAI-compatible completion stream.

    Accepts standard ``chat.completion.chunk`` objects (only choice 0 is shown), legacy
    ``text_completion`` chunks (``choices[].text``), usage-only chunks (``choices: []``),
    Reduce-Stream arrays (``["text"]`` for completions, ``[{"content": ...}]`` for chat),
    and raises the classified ``ProviderError`` for an error object inside the stream.
    Payloads that are not JSON (keep-alives) are ignored.
    """

    __slots__ = ("_done", "_finish_reason", "_provider", "_secrets", "_started")

    def __init__(self, *, provider: str | None = None, secrets: tuple[str, ...] = ()) -> None:
        self._provider = provider
        self._secrets = secrets
        self._done = False
        self._finish_reason: str | None = None
        self._started = False

    @property
    def done(self) -> bool:
        """True once ``[DONE]`` was seen (or ``close()`` ended the stream)."""
        return self._done

    @property
    def finish_reason(self) -> str | None:
        """The last finish reason of choice 0, or None if none was seen."""
        return self._finish_reason

    @property
    def finished(self) -> bool:
        """True once a finish reason was seen: the answer is complete even without [DONE]."""
        return self._finish_reason is not None

    @property
    def started(self) -> bool:
        """True once any text or tool-call fragment was emitted: the answer is partial now."""
        return self._started

    def feed_message(self, message: SSEMessage) -> list[StreamEvent]:
        """Parse one server-sent event; an ``error`` event raises its classified error."""
        if self._done:
            return []
        if message.event == "error":
            raise classify_error(None, message.data, provider=self._provider, secrets=self._secrets)
        return self.feed(message.data)

    def feed(self, payload: str) -> list[StreamEvent]:
        """Parse one SSE data payload."""
        if self._done or not payload:
            return []
        # Chunks are JSON objects; only other payloads pay for the strip.
        if payload[0] != "{" and payload.strip() == DONE:
            self._done = True
            return [StreamEnd(self._finish_reason or "stop")]
        try:
            chunk = parse_json(payload)
        except ValueError:
            return []
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: object) -> list[StreamEvent]:
        """Parse one already-decoded JSON chunk (or a whole non-streamed completion)."""
        out: list[StreamEvent] = []
        if self._done:
            return out
        if isinstance(chunk, dict):
            if is_error_body(chunk):
                raise classify_error(None, chunk, provider=self._provider, secrets=self._secrets)
            choices = chunk.get("choices")
            if choices:
                self._choices(choices, out)
            usage = chunk.get("usage")
            if usage:
                _usage(usage, out)
        elif isinstance(chunk, list):
            # Reduce-Stream: a list of bare deltas (chat) or bare strings (completions).
            for item in chunk:
                if isinstance(item, str):
                    if item:
                        out.append(TextDelta(item))
                elif isinstance(item, dict):
                    self._delta(item, out)
        if out and not self._started:
            self._started = any(isinstance(e, TextDelta | ToolCallDelta) for e in out)
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended: the closing ``StreamEnd`` if the answer was finished.

        Raises ``StreamCut`` when neither ``[DONE]`` nor a finish reason was seen.
        """
        if self._done:
            return []
        if self._finish_reason is None:
            raise StreamCut(
                "stream ended without [DONE] or a finish_reason", provider=self._provider
            )
        self._done = True
        return [StreamEnd(self._finish_reason)]

    def _choices(self, choices: object, out: list[StreamEvent]) -> None:
        if not isinstance(choices, list):
            return
        for choice in choices:
            # Several choices: only the first is shown. Providers that translate other APIs
            # (OhMyGPT for Claude) may send several entries that all claim index 0.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message")  # a non-streamed completion
            if isinstance(delta, dict):
                self._delta(delta, out)
            else:
                # A legacy completion (/v1/completions) carries its text on the choice itself.
                piece = choice.get("text")
                if piece and isinstance(piece, str):
                    out.append(TextDelta(piece))
            reason = choice.get("finish_reason")
            if reason and isinstance(reason, str):
                self._finish_reason = reason

    def _delta(self, delta: dict[str, object], out: list[StreamEvent]) -> None:
        content = delta.get("content")
        if content and isinstance(content, str):
            out.append(TextDelta(content))
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            _tool_calls(calls, out)


def parse_completion(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[StreamEvent]:
    """The events of a non-streamed chat or legacy completion, ending with ``StreamEnd``.

    Raises the classified ``ProviderError`` for an error body or anything that is not one.
    """
    if is_error_body(body) or not isinstance(body, dict) or "choices" not in body:
        raise classify_error(status, body, provider=provider, secrets=secrets)
    parser = OpenAIStreamParser(provider=provider, secrets=secrets)
    events = parser.feed_chunk(body)
    events.append(StreamEnd(parser.finish_reason or "stop"))
    return events


def parse_edit(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> str:
    """The edited text of a ``/v1/edits`` answer: ``choices[0].text``.

    Raises the classified ``ProviderError`` for an error body or anything without that text.
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    edited = first.get("text") if isinstance(first, dict) else None
    if is_error_body(body) or not isinstance(edited, str):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    return edited


def parse_models(body: object) -> list[ModelInfo]:
    """Models from ``{"data": [{"id", "owned_by", ...}]}`` (or a bare list); [] otherwise.

    Anthropic's list has the same ``data`` with ``display_name`` and no ``owned_by``; every
    field but ``id`` and ``owned_by`` is kept in ``extra``.
    """
    items = body.get("data") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    models: list[ModelInfo] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        owned_by = item.get("owned_by")
        extra = {k: v for k, v in item.items() if k not in ("id", "owned_by")}
        models.append(
            ModelInfo(
                id=item["id"],
                owned_by=owned_by if isinstance(owned_by, str) else None,
                extra=extra,
            )
        )
    return models


def _tool_calls(calls: list[object], out: list[StreamEvent]) -> None:
    for position, call in enumerate(calls):
        if not isinstance(call, dict):
            continue
        index = call.get("index")
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        name = function.get("name")
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            # Some gateways send the arguments of a non-streamed call as an object.
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = call.get("id")
        out.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else position,
                id=call_id if isinstance(call_id, str) and call_id else None,
                name=name if isinstance(name, str) and name else None,
                arguments=arguments or "",
            )
        )


def _usage(usage: object, out: list[StreamEvent]) -> None:
    if not isinstance(usage, dict):
        return
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if isinstance(prompt, int) or isinstance(completion, int):
        out.append(
            Usage(
                prompt_tokens=prompt if isinstance(prompt, int) else 0,
                completion_tokens=completion if isinstance(completion, int) else 0,
            )
        )
