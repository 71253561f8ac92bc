"""Pure parser of Anthropic's Messages API answers: server-sent events in, ``StreamEvent`` out.

A stream (docs.anthropic.com "Streaming Messages"; our reference, section B7) is
``message_start`` (the input usage), then per content block ``content_block_start``,
``content_block_delta``… and ``content_block_stop``, then ``message_delta`` (the stop reason
and the *cumulative* output usage) and ``message_stop``. ``ping`` may come anywhere.

* ``text_delta`` gives ``TextDelta``. A ``tool_use`` block gives ``ToolCallDelta`` values, the
  id and name from its start and the arguments from its ``input_json_delta`` fragments,
  numbered by tool call (0 for the first ``tool_use`` block whatever its block index), as
  OhMyGPT numbers them when it translates this stream into OpenAI's (seed 004).
* Thinking, signature and citation deltas, ``ping``, and event types we do not know are
  ignored ("your code should handle unknown event types gracefully").
* An ``error`` event, e.g. ``{"type": "error", "error": {"type": "overloaded_error"}}``,
  raises the classified ``ProviderError`` (``overloaded_error`` is ``Unavailable``).
* ``message_stop`` gives ``Usage`` (input tokens, cache reads and writes included, and the last
  output count), then ``StreamEnd`` with the stop reason in OpenAI's words: ``end_turn``,
  ``stop_sequence`` and ``pause_turn`` are "stop"; ``max_tokens`` and
  ``model_context_window_exceeded`` are "length"; ``tool_use`` is "tool_calls"; any other
  reason is passed on as it is.
* The stop reason ``refusal`` raises ``ContentRejected`` as soon as it arrives: the model
  declined, and the text before it must not be stored as a complete answer.

Where the stream ends: ``StreamEnd`` comes once, at ``message_stop``, and nothing after it
is parsed. When the body ends after a stop reason but without ``message_stop``, ``close()``
still emits the usage and ``StreamEnd``; without a stop reason it raises ``StreamCut``.
"""

from __future__ import annotations

import json

from bot.errors import ContentRejected, StreamCut
from bot.providers.base import StreamEnd, StreamEvent, TextDelta, ToolCallDelta, Usage
from bot.providers.classify import classify_error, is_error_body
from bot.providers.decoders import SSEMessage, parse_json

STOP_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}
"""Anthropic's stop reasons in the finish-reason words of ``StreamEnd``."""

REFUSAL = "refusal"

_INPUT_USAGE_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

# Event types of the stream; an unknown one is ignored unless it is an error body.
_KNOWN = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)


class AnthropicStreamParser:
    """State machine over the events of one Anthropic Messages stream."""

    __slots__ = (
        "_done",
        "_input_tokens",
        "_output_tokens",
        "_provider",
        "_secrets",
        "_started",
        "_stop_reason",
        "_tools",
    )

    def __init__(self, *, provider: str | None = None, secrets: tuple[str, ...] = ()) -> None:
        self._provider = provider
        self._secrets = secrets
        self._done = False
        self._started = False
        self._stop_reason: str | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._tools: dict[int, int] = {}
        """Block index of each ``tool_use`` block -> its tool call number."""

    @property
    def done(self) -> bool:
        """True once ``message_stop`` was seen (or ``close()`` ended the stream)."""
        return self._done

    @property
    def finished(self) -> bool:
        """True once a stop reason was seen: the answer is complete."""
        return self._stop_reason is not None

    @property
    def started(self) -> bool:
        """True once any text or tool-call fragment was emitted: the answer is partial now."""
        return self._started

    @property
    def stop_reason(self) -> str | None:
        """Anthropic's stop reason as sent, or None if none was seen."""
        return self._stop_reason

    def feed_message(self, message: SSEMessage) -> list[StreamEvent]:
        """Parse one server-sent event; the ``type`` in its data wins over the event name."""
        if self._done or not message.data:
            return []
        try:
            data = parse_json(message.data)
        except ValueError:
            if message.event == "error":
                raise self._error(message.data) from None
            return []
        return self.feed_event(data, message.event)

    def feed_event(self, data: object, name: str | None = None) -> list[StreamEvent]:
        """Parse one already-decoded event; ``name`` is the SSE event name, if any."""
        out: list[StreamEvent] = []
        if self._done or not isinstance(data, dict):
            return out
        kind = data.get("type")
        if not isinstance(kind, str):
            kind = name or ""
        if kind == "error" or (kind not in _KNOWN and is_error_body(data)):
            raise self._error(data)
        if kind == "content_block_delta":  # nearly every event: tested first
            self._block_delta(data, out)
        elif kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                self._usage(message.get("usage"))
        elif kind == "content_block_start":
            self._block_start(data, out)
        elif kind == "message_delta":
            self._message_delta(data)
        elif kind == "message_stop":
            out += self._end()
        if not self._started and any(isinstance(e, TextDelta | ToolCallDelta) for e in out):
            self._started = True
        return out

    def close(self) -> list[StreamEvent]:
        """The body ended: the usage and ``StreamEnd`` if a stop reason was seen.

        Raises ``StreamCut`` when neither ``message_stop`` nor a stop reason came.
        """
        if self._done:
            return []
        if self._stop_reason is None:
            raise StreamCut(
                "stream ended without message_stop or a stop_reason", provider=self._provider
            )
        return self._end()

    def _block_start(self, data: dict[str, object], out: list[StreamEvent]) -> None:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if text and isinstance(text, str):
                out.append(TextDelta(text))
        elif kind == "tool_use":
            number = self._tools.setdefault(index, len(self._tools))
            call_id = block.get("id")
            name = block.get("name")
            out.append(
                ToolCallDelta(
                    index=number,
                    id=call_id if isinstance(call_id, str) and call_id else None,
                    name=name if isinstance(name, str) and name else None,
                )
            )

    def _block_delta(self, data: dict[str, object], out: list[StreamEvent]) -> None:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text and isinstance(text, str):
                out.append(TextDelta(text))
        elif kind == "input_json_delta":
            index = data.get("index")
            partial = delta.get("partial_json")
            if isinstance(index, int) and partial and isinstance(partial, str):
                number = self._tools.setdefault(index, len(self._tools))
                out.append(ToolCallDelta(index=number, arguments=partial))

    def _message_delta(self, data: dict[str, object]) -> None:
        self._usage(data.get("usage"))
        delta = data.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if not reason or not isinstance(reason, str):
            return
        if reason == REFUSAL:
            self._done = True
            raise ContentRejected("stop_reason: refusal", provider=self._provider)
        self._stop_reason = reason

    def _usage(self, usage: object) -> None:
        """Take the counts of a usage object; later counts replace earlier ones (cumulative)."""
        if not isinstance(usage, dict):
            return
        inputs = [usage.get(key) for key in _INPUT_USAGE_KEYS]
        if isinstance(inputs[0], int):
            total = sum(n for n in inputs if isinstance(n, int))
            # message_delta may repeat the input count; a gateway's 0 there is not a new count.
            if total or self._input_tokens is None:
                self._input_tokens = total
        output = usage.get("output_tokens")
        if isinstance(output, int):
            self._output_tokens = output

    def _end(self) -> list[StreamEvent]:
        self._done = True
        out: list[StreamEvent] = []
        if self._input_tokens is not None or self._output_tokens is not None:
            out.append(Usage(self._input_tokens or 0, self._output_tokens or 0))
        out.append(StreamEnd(finish_reason(self._stop_reason)))
        return out

    def _error(self, body: object) -> Exception:
        return classify_error(None, body, provider=self._provider, secrets=self._secrets)


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic's stop reason in the words of ``StreamEnd``; "stop" when there is none."""
    if stop_reason is None:
        return "stop"
    return STOP_REASONS.get(stop_reason, stop_reason)


def parse_message(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[StreamEvent]:
    """The events of a whole (non-streamed) ``message``, ending with ``StreamEnd``.

    Raises the classified ``ProviderError`` for an error body or anything that is not a
    message, and ``ContentRejected`` for a refusal.
    """
    if (
        is_error_body(body)
        or not isinstance(body, dict)
        or body.get("type") != "message"
        or not isinstance(body.get("content"), list)
    ):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    parser = AnthropicStreamParser(provider=provider, secrets=secrets)
    events = parser.feed_event({"type": "message_start", "message": {"usage": body.get("usage")}})
    for index, block in enumerate(body["content"]):
        events += parser.feed_event(
            {"type": "content_block_start", "index": index, "content_block": block}
        )
        if isinstance(block, dict) and block.get("type") == "tool_use":
            # A whole message carries the tool's input as an object, not as JSON fragments.
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events += parser.feed_event(
                {"type": "content_block_delta", "index": index, "delta": delta}
            )
    events += parser.feed_event(
        {"type": "message_delta", "delta": {"stop_reason": body.get("stop_reason") or "end_turn"}}
    )
    events += parser.feed_event({"type": "message_stop"})
    return events
