"""A scripted Anthropic Messages API on 127.0.0.1, for the real ``AnthropicProvider``.

    async with FakeAnthropic(api_key="sk-ant-test") as p:
        p.enqueue(*text_stream(["Hel", "lo"], input_tokens=12))
        ...  # point an AnthropicProvider at p.base_url

It is a ``FakeProvider`` (same queue, ``requests``, ``wait_for_requests``, ``models``) serving
``POST /v1/messages`` and ``GET /v1/models`` instead of the OpenAI routes. Like Anthropic it
refuses a request without ``anthropic-version`` or ``max_tokens`` (400) and, when ``api_key``
is set, one without that ``x-api-key`` (401), with Anthropic's error shape. Unscripted
requests get ``default``: an echo of the last user message. ``Delay``, ``At``, ``Raw``,
``Together``, ``Hold``, ``Cut`` and ``ErrorResponse`` steps work as in ``FakeProvider``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.provider import (
    At,
    Cut,
    Delay,
    ErrorResponse,
    FakeProvider,
    Hold,
    Raw,
    RecordedRequest,
    Together,
)


@dataclass(frozen=True, slots=True)
class MessageStart:
    """``message_start``: the message with empty content and the input usage."""

    input_tokens: int = 0
    output_tokens: int = 1


@dataclass(frozen=True, slots=True)
class BlockStart:
    """``content_block_start``: a ``text`` block, or a ``tool_use`` block with id and name."""

    index: int
    kind: str = "text"
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class BlockText:
    """``content_block_delta`` with a ``text_delta``."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class BlockJSON:
    """``content_block_delta`` with an ``input_json_delta`` fragment of a tool's input."""

    index: int
    partial_json: str


@dataclass(frozen=True, slots=True)
class BlockThinking:
    """``content_block_delta`` with a ``thinking_delta``."""

    index: int
    thinking: str


@dataclass(frozen=True, slots=True)
class BlockStop:
    """``content_block_stop``."""

    index: int


@dataclass(frozen=True, slots=True)
class MessageDelta:
    """``message_delta``: the stop reason and the cumulative output tokens."""

    stop_reason: str = "end_turn"
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class MessageStop:
    """``message_stop``."""


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """An ``error`` event mid-stream, e.g. ``overloaded_error``."""

    type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True, slots=True)
class WholeMessage:
    """A complete non-streamed ``message`` answer with one text block."""

    text: str
    stop_reason: str = "end_turn"
    usage: tuple[int, int] = (0, 0)


AnthropicStep = (
    MessageStart
    | BlockStart
    | BlockText
    | BlockJSON
    | BlockThinking
    | BlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | StreamError
    | WholeMessage
    | Delay
    | At
    | Raw
    | Together
    | Hold
    | Cut
    | ErrorResponse
)

DEFAULT_ANTHROPIC_MODELS: tuple[dict[str, object], ...] = (
    {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-3-5-haiku",
        "display_name": "Claude Haiku 3.5",
        "created_at": "2024-10-22T00:00:00Z",
    },
)


def anthropic_error(type_: str, message: str) -> dict[str, object]:
    """An error body in Anthropic's shape."""
    return {"type": "error", "error": {"type": type_, "message": message}}


def text_stream(
    pieces: Sequence[str],
    *,
    input_tokens: int = 10,
    output_tokens: int | None = None,
    stop_reason: str = "end_turn",
) -> list[AnthropicStep]:
    """A complete streamed text answer made of ``pieces``, with a ping as Anthropic sends."""
    return [
        MessageStart(input_tokens),
        BlockStart(0),
        Ping(),
        *(BlockText(0, piece) for piece in pieces),
        BlockStop(0),
        MessageDelta(stop_reason, len(pieces) if output_tokens is None else output_tokens),
        MessageStop(),
    ]


def anthropic_echo_script(request: RecordedRequest) -> list[AnthropicStep]:
    """The default answer: "echo: " + the last user message, in three pieces."""
    body = request.json if isinstance(request.json, dict) else {}
    messages = body.get("messages") or []
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    text = f"echo: {last}"
    size = -(-len(text) // 3)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    if not body.get("stream"):
        return [WholeMessage(text, usage=(len(messages), len(pieces)))]
    return text_stream(pieces, input_tokens=len(messages))


class FakeAnthropic(FakeProvider):
    """An aiohttp server speaking Anthropic's Messages and models API from scripts."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Sequence[AnthropicStep]
        | Callable[[RecordedRequest], Sequence[AnthropicStep]] = anthropic_echo_script,
        models: Sequence[dict[str, object]] | ErrorResponse | None = DEFAULT_ANTHROPIC_MODELS,
    ) -> None:
        super().__init__(models=models)
        self.api_key = api_key
        """When set, requests must carry it as ``x-api-key``."""
        self.anthropic_default = default
        self._anthropic_scripts: list[Sequence[AnthropicStep]] = []

    def add_routes(self, app: web.Application) -> None:
        """Anthropic's messages and models endpoints."""
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    @property
    def pending(self) -> int:
        """Scripts queued and not yet served."""
        return len(self._anthropic_scripts)

    def enqueue(self, *steps: Any) -> None:
        """Queue the response to the next messages request."""
        self._anthropic_scripts.append(steps)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        _, recorded = await self._record(request)
        refusal = self._refusal(recorded)
        if refusal is not None:
            return refusal
        if self._anthropic_scripts:
            script = self._anthropic_scripts.pop(0)
        elif callable(self.anthropic_default):
            script = self.anthropic_default(recorded)
        else:
            script = self.anthropic_default
        model = recorded.json.get("model", "") if isinstance(recorded.json, dict) else ""
        return await self._play_messages(request, script, str(model), recorded.at)

    def _refusal(self, recorded: RecordedRequest) -> web.Response | None:
        """Anthropic's answer to a request it refuses before reading the prompt."""
        headers = {k.lower(): v for k, v in recorded.headers.items()}
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return _json(401, anthropic_error("authentication_error", "invalid x-api-key"))
        if "anthropic-version" not in headers:
            return _json(
                400,
                anthropic_error("invalid_request_error", "anthropic-version: header is required"),
            )
        if not isinstance(recorded.json, dict) or "max_tokens" not in recorded.json:
            return _json(
                400, anthropic_error("invalid_request_error", "max_tokens: Field required")
            )
        return None

    async def _play_messages(
        self,
        request: web.Request,
        script: Sequence[AnthropicStep],
        model: str,
        started: float,
    ) -> web.StreamResponse:
        stream: web.StreamResponse | None = None
        for step in script:
            match step:
                case Delay(seconds):
                    await asyncio.sleep(seconds)
                case At(seconds):
                    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
                case Hold(event):
                    await event.wait()
                case ErrorResponse():
                    assert stream is None, f"{step!r} must come before any streamed step"
                    data = (
                        step.body if isinstance(step.body, bytes | str) else json.dumps(step.body)
                    )
                    headers = {**(step.headers or {}), "Content-Type": step.content_type}
                    return web.Response(status=step.status, body=data, headers=headers)
                case WholeMessage():
                    assert stream is None, f"{step!r} must come before any streamed step"
                    return _json(200, _whole_message(step, model))
                case Cut():
                    if request.transport is not None:
                        request.transport.abort()
                    return stream or web.Response()
                case _:
                    if stream is None:
                        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                        await stream.prepare(request)
                    parts = step.steps if isinstance(step, Together) else (step,)
                    await stream.write(b"".join(_event(part, model) for part in parts))
        if stream is None:
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
        await stream.write_eof()
        return stream


def _json(status: int, body: object) -> web.Response:
    return web.json_response(body, status=status)


def _whole_message(step: WholeMessage, model: str) -> dict[str, object]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": step.text}],
        "stop_reason": step.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": step.usage[0], "output_tokens": step.usage[1]},
    }


def sse(payload: dict[str, object]) -> bytes:
    """One server-sent event the way Anthropic frames it: the event name, then its data."""
    data = json.dumps(payload, ensure_ascii=False)
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


def _event(step: AnthropicStep, model: str) -> bytes:
    match step:
        case MessageStart(input_tokens, output_tokens):
            message: dict[str, object] = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
            return sse({"type": "message_start", "message": message})
        case BlockStart(index, kind, id_, name):
            block: dict[str, object] = {"type": kind}
            if kind == "tool_use":
                block |= {"id": id_, "name": name, "input": {}}
            elif kind == "thinking":
                block |= {"thinking": "", "signature": ""}
            else:
                block["text"] = ""
            return sse({"type": "content_block_start", "index": index, "content_block": block})
        case BlockText(index, text):
            delta: dict[str, object] = {"type": "text_delta", "text": text}
            return sse({"type": "content_block_delta", "index": index, "delta": delta})
        case BlockJSON(index, partial):
            delta = {"type": "input_json_delta", "partial_json": partial}
            return sse({"type": "content_block_delta", "index": index, "delta": delta})
        case BlockThinking(index, thinking):
            delta = {"type": "thinking_delta", "thinking": thinking}
            return sse({"type": "content_block_delta", "index": index, "delta": delta})
        case BlockStop(index):
            return sse({"type": "content_block_stop", "index": index})
        case MessageDelta(stop_reason, output_tokens):
            return sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                }
            )
        case MessageStop():
            return sse({"type": "message_stop"})
        case Ping():
            return sse({"type": "ping"})
        case StreamError(type_, text):
            return sse(anthropic_error(type_, text))
        case Raw(data):
            return data
        case _:
            raise AssertionError(f"not a streamed step: {step!r}")
