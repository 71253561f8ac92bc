"""A scripted OpenAI-compatible provider on 127.0.0.1, for the real adapter to talk to.

    async with FakeProvider() as p:
        p.enqueue(Role(), Chunk("Hel"), Chunk("lo"), Finish(), Done())
        ...  # point an OpenAICompatProvider at p.base_url

``Together(...)`` writes several streamed steps at once, so the client reads them in one
read; ``Hold(event)`` waits for the test to set ``event``, so what follows comes in a read of
its own.

Each chat request takes the next queued script; with none queued it gets ``p.default``,
by default an echo of the last user message, so end-to-end tests and benchmarks need not
script every turn.

The images endpoints (``POST /v1/images/generations``, JSON, and ``POST /v1/images/edits``,
multipart, recorded in ``RecordedRequest.form`` and ``.files``) take the next script queued
with ``enqueue_images``; unscripted, they answer ``n`` images of ``FAKE_PNG``, as base64 or,
when ``response_format`` is "url", as URLs of this server (``GET /files/...``).
Legacy completions (``POST /v1/completions``) and edits (``POST /v1/edits``) take the next
queued script too. A completions script is made of the same steps, written as
``text_completion`` chunks (``choices[].text``), or in seed 002's Reduce-Stream shape
(``data: ["text"]`` … ``data: [DONE]``) when the request says ``Reduce-Stream: true``;
unscripted, it echoes the prompt. An edits script is one ``EditAnswer`` or
``ErrorResponse``; unscripted, the answer is ``"<instruction>: <input>"``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from tests.fakes.server import LoopbackServer


@dataclass(frozen=True, slots=True)
class Chunk:
    """A ``chat.completion.chunk`` event whose delta carries ``text``."""

    text: str


@dataclass(frozen=True, slots=True)
class Role:
    """The role-only first chunk (``delta: {"role": "assistant"}``)."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait before the next step (before the headers, if nothing was sent yet)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class At:
    """Wait until ``seconds`` after the request was read (at once if that has passed).

    Unlike ``Delay`` it keeps a paced stream on schedule however late earlier writes were.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes written to the body verbatim."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Together:
    """Streamed steps written to the body at once, so the client reads them in one read."""

    steps: tuple[Any, ...]

    def __init__(self, *steps: Any) -> None:
        object.__setattr__(self, "steps", steps)


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait until the test sets ``event``: what follows goes out after the test has read what
    came before, so the client reads it in a read of its own."""

    event: asyncio.Event


@dataclass(frozen=True, slots=True)
class Finish:
    """A chunk with an empty delta and ``finish_reason``."""

    reason: str = "stop"


@dataclass(frozen=True, slots=True)
class UsageChunk:
    """The usage-only final chunk, ``choices: []``."""

    prompt: int
    completion: int


@dataclass(frozen=True, slots=True)
class Done:
    """``data: [DONE]``."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Drop the connection at once: no terminating chunk (no headers, if none were sent)."""


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A complete non-streamed response; ``body`` is sent as is, or as JSON if not text."""

    status: int
    body: object
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class JSONCompletion:
    """A non-streamed ``chat.completion`` answer."""

    text: str
    usage: tuple[int, int] | None = None
    finish: str = "stop"


@dataclass(frozen=True, slots=True)
class EditAnswer:
    """A ``/v1/edits`` answer: ``choices[0].text``."""

    text: str


Step = (
    Chunk
    | Role
    | Delay
    | At
    | Raw
    | Together
    | Hold
    | Finish
    | UsageChunk
    | Done
    | Cut
    | ErrorResponse
    | JSONCompletion
    | EditAnswer
)

Shape = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True)
class ImagesAnswer:
    """A 200 answer of the images endpoints: ``{"created": 0, "data": items}``."""

    items: Sequence[Mapping[str, object]]


ImageStep = Delay | Cut | ErrorResponse | ImagesAnswer

FAKE_PNG = b"\x89PNG\r\n\x1a\n" + b"fake image bytes" * 4
"""What the unscripted images endpoints answer with: PNG-signed bytes, not a real picture."""


def b64_item(data: bytes = FAKE_PNG, revised_prompt: str | None = None) -> dict[str, object]:
    """An answer item holding the image as base64."""
    item: dict[str, object] = {"b64_json": base64.b64encode(data).decode()}
    if revised_prompt is not None:
        item["revised_prompt"] = revised_prompt
    return item


def url_item(url: str, revised_prompt: str | None = None) -> dict[str, object]:
    """An answer item pointing at the image."""
    item: dict[str, object] = {"url": url}
    if revised_prompt is not None:
        item["revised_prompt"] = revised_prompt
    return item


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    at: float = 0.0
    """``time.monotonic()`` when the request had been read."""
    form: dict[str, str] = field(default_factory=dict)
    """The text fields of a multipart request."""
    files: dict[str, UploadedPart] = field(default_factory=dict)
    """The file parts of a multipart request, by field name."""


DefaultScript = Sequence[Step] | Callable[[RecordedRequest], Sequence[Step]]

DEFAULT_MODELS: tuple[dict[str, object], ...] = (
    {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"},
    {"id": "fake-model-mini", "object": "model", "created": 0, "owned_by": "fake"},
)


def echo_script(request: RecordedRequest, *, pieces: int = 3) -> list[Step]:
    """The default answer: "echo: " + the last user message, in ``pieces`` chunks."""
    body = request.json if isinstance(request.json, dict) else {}
    messages = body.get("messages") or []
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(last, list):
        # Vision content parts: echo the text parts and count the images.
        texts = [p.get("text", "") for p in last if isinstance(p, dict) and p.get("type") == "text"]
        images = sum(isinstance(p, dict) and p.get("type") == "image_url" for p in last)
        last = " ".join([*texts, f"[{images} image(s)]"])
    text = f"echo: {last}"
    size = -(-len(text) // pieces)
    parts = [text[i : i + size] for i in range(0, len(text), size)]
    usage = (sum(len(str(m.get("content", "")).split()) for m in messages), len(parts))
    if not body.get("stream"):
        return [JSONCompletion(text, usage=usage)]
    return [
        Role(),
        *(Chunk(part) for part in parts),
        Finish("stop"),
        UsageChunk(*usage),
        Done(),
    ]


def completion_echo_script(request: RecordedRequest) -> list[Step]:
    """The default completion: "echo: " + the prompt, in two chunks, with usage."""
    body = request.json if isinstance(request.json, dict) else {}
    text = f"echo: {body.get('prompt', '')}"
    half = len(text) // 2
    usage = (len(str(body.get("prompt", "")).split()), 2)
    if not body.get("stream"):
        return [JSONCompletion(text, usage=usage)]
    return [Chunk(text[:half]), Chunk(text[half:]), Finish("stop"), UsageChunk(*usage), Done()]


def edit_echo_script(request: RecordedRequest) -> list[Step]:
    """The default edit: "<instruction>: <input>", so a test sees both arrived."""
    body = request.json if isinstance(request.json, dict) else {}
    return [EditAnswer(f"{body.get('instruction', '')}: {body.get('input', '')}")]


def paced_stream(pieces: Sequence[str], seconds: float) -> list[Step]:
    """A streamed answer of ``pieces`` spread evenly over ``seconds``, the last at ``seconds``."""
    steps: list[Step] = [Role()]
    for index, piece in enumerate(pieces, start=1):
        steps += [At(seconds * index / len(pieces)), Chunk(piece)]
    return [*steps, Finish("stop"), Done()]


class FakeProvider(LoopbackServer):
    """An aiohttp server speaking the OpenAI chat and models API from scripts."""

    def __init__(
        self,
        *,
        default: DefaultScript = echo_script,
        models: Sequence[Mapping[str, object]] | ErrorResponse | None = DEFAULT_MODELS,
    ) -> None:
        super().__init__()
        self.default = default
        """The script for a chat request when none is queued: steps, or a function of it."""
        self.models: list[dict[str, object]] | ErrorResponse | None = (
            models
            if models is None or isinstance(models, ErrorResponse)
            else [dict(m) for m in models]
        )
        """What GET /v1/models answers: a list, an ErrorResponse, or None for a 404."""
        self.models_delay = 0.0
        """Seconds GET /v1/models waits before it answers (long: an endpoint that hangs)."""
        self.requests: list[RecordedRequest] = []
        self.first_chunk_at: dict[int, float] = {}
        """Index in ``requests`` -> ``time.monotonic()`` when its first Chunk was written."""
        self.ended_at: dict[int, float] = {}
        """Index in ``requests`` -> ``time.monotonic()`` when its streamed body was complete."""
        self._scripts: deque[Sequence[Step]] = deque()
        self._image_scripts: deque[Sequence[ImageStep]] = deque()
        self.served_files: dict[str, bytes] = {}
        """name -> bytes served at ``/files/<name>`` (the unscripted URL answers)."""
        self._arrived = asyncio.Condition()

    def add_routes(self, app: web.Application) -> None:
        """The OpenAI chat, models and images endpoints, and the files its URLs point at."""
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/images/edits", self._images)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/edits", self._edits)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ending in ``/v1``."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def pending(self) -> int:
        """Scripts queued and not yet served."""
        return len(self._scripts)

    def enqueue(self, *steps: Step) -> None:
        """Queue the response to the next chat request."""
        self._scripts.append(steps)

    def enqueue_stream(
        self,
        pieces: Sequence[str],
        *,
        delay: float = 0.0,
        finish: str | None = "stop",
        done: bool = True,
    ) -> None:
        """Queue a streamed answer made of ``pieces``, ``delay`` seconds apart."""
        steps: list[Step] = [Role()]
        for piece in pieces:
            if delay:
                steps.append(Delay(delay))
            steps.append(Chunk(piece))
        if finish is not None:
            steps.append(Finish(finish))
        if done:
            steps.append(Done())
        self.enqueue(*steps)

    def enqueue_images(self, *steps: ImageStep) -> None:
        """Queue the response to the next images request."""
        self._image_scripts.append(steps)

    def file_url(self, name: str) -> str:
        """The URL at which this server serves ``served_files[name]``."""
        return f"http://127.0.0.1:{self._port}/files/{name}"

    def enqueue_error(
        self, status: int, body: object, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Queue an error response with a JSON (or verbatim text) body."""
        self.enqueue(ErrorResponse(status, body, headers=headers))

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests arrived; return them all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return list(self.requests)

    async def _record(self, request: web.Request) -> tuple[int, RecordedRequest]:
        """Store the request; return its index in ``requests`` and the record."""
        form: dict[str, str] = {}
        files: dict[str, UploadedPart] = {}
        body: Any = None
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                data = await part.read(decode=True)
                if part.filename is not None:
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    files[part.name] = UploadedPart(part.filename, content_type, bytes(data))
                else:
                    form[part.name] = data.decode(part.get_charset("utf-8"))
        else:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
        recorded = RecordedRequest(
            request.method,
            request.path,
            dict(request.headers),
            body,
            time.monotonic(),
            form,
            files,
        )
        index = len(self.requests)
        self.requests.append(recorded)
        async with self._arrived:
            self._arrived.notify_all()
        return index, recorded

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        index, recorded = await self._record(request)
        if self._scripts:
            script = self._scripts.popleft()
        elif callable(self.default):
            script = self.default(recorded)
        else:
            script = self.default
        model = recorded.json.get("model", "") if isinstance(recorded.json, dict) else ""
        return await self._play(request, script, str(model), index, recorded.at)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        index, recorded = await self._record(request)
        script = self._scripts.popleft() if self._scripts else completion_echo_script(recorded)
        model = recorded.json.get("model", "") if isinstance(recorded.json, dict) else ""
        reduce = request.headers.get("Reduce-Stream", "").lower() == "true"
        shape: Shape = "completion"
        return await self._play(
            request, script, str(model), index, recorded.at, shape=shape, reduce=reduce
        )

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        index, recorded = await self._record(request)
        script = self._scripts.popleft() if self._scripts else edit_echo_script(recorded)
        model = recorded.json.get("model", "") if isinstance(recorded.json, dict) else ""
        return await self._play(request, script, str(model), index, recorded.at)

    async def _play(
        self,
        request: web.Request,
        script: Sequence[Step],
        model: str,
        index: int,
        started: float,
        *,
        shape: Shape = "chat",
        reduce: bool = False,
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
                case ErrorResponse() | JSONCompletion() | EditAnswer():
                    assert stream is None, f"{step!r} must come before any streamed step"
                    return _complete(step, model, shape)
                case Cut():
                    if request.transport is not None:
                        request.transport.abort()
                    return stream or web.Response()
                case _:
                    stream = stream or await _open_stream(request)
                    parts = step.steps if isinstance(step, Together) else (step,)
                    if shape == "chat":
                        data = b"".join(_event(part, model) for part in parts)
                    else:
                        data = b"".join(
                            _completion_event(part, model, reduce=reduce) for part in parts
                        )
                    await stream.write(data)
                    if any(isinstance(part, Chunk) for part in parts):
                        self.first_chunk_at.setdefault(index, time.monotonic())
        stream = stream or await _open_stream(request)
        await stream.write_eof()
        self.ended_at[index] = time.monotonic()
        return stream

    async def _images(self, request: web.Request) -> web.StreamResponse:
        _, recorded = await self._record(request)
        script = (
            self._image_scripts.popleft()
            if self._image_scripts
            else [ImagesAnswer(self._default_images(recorded))]
        )
        for step in script:
            match step:
                case Delay(seconds):
                    await asyncio.sleep(seconds)
                case Cut():
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response()
                case ErrorResponse():
                    return _complete(step, "")
                case ImagesAnswer(items):
                    return web.json_response({"created": 0, "data": [dict(i) for i in items]})
        raise AssertionError(f"an images script must end in an answer: {script!r}")

    def _default_images(self, recorded: RecordedRequest) -> list[dict[str, object]]:
        fields: Mapping[str, object] = (
            recorded.json if isinstance(recorded.json, dict) else recorded.form
        )
        count = int(str(fields.get("n", 1)))
        if fields.get("response_format") != "url":
            return [b64_item() for _ in range(count)]
        items = []
        for _ in range(count):
            name = f"image-{len(self.served_files) + 1}.png"
            self.served_files[name] = FAKE_PNG
            items.append(url_item(self.file_url(name)))
        return items

    async def _file(self, request: web.Request) -> web.StreamResponse:
        data = self.served_files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if self.models_delay:
            await asyncio.sleep(self.models_delay)
        if self.models is None:
            raise web.HTTPNotFound()
        if isinstance(self.models, ErrorResponse):
            return _complete(self.models, "")
        return web.json_response({"object": "list", "data": self.models})


async def _open_stream(request: web.Request) -> web.StreamResponse:
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await stream.prepare(request)
    return stream


def _chunk(model: str, choices: list[dict[str, object]], **extra: object) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": choices,
        **extra,
    }
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _event(step: Step, model: str) -> bytes:
    match step:
        case Chunk(text):
            delta: dict[str, object] = {"content": text}
        case Role():
            delta = {"role": "assistant", "content": ""}
        case Finish(reason):
            return _chunk(model, [{"index": 0, "delta": {}, "finish_reason": reason}])
        case UsageChunk(prompt, completion):
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            return _chunk(model, [], usage=usage)
        case Done():
            return b"data: [DONE]\n\n"
        case Raw(data):
            return data
        case _:
            raise AssertionError(f"not a streamed step: {step!r}")
    return _chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}])


def _completion_event(step: Step, model: str, *, reduce: bool) -> bytes:
    """A step of a ``/v1/completions`` stream, in the standard or the Reduce-Stream shape."""
    match step:
        case Chunk(text):
            if reduce:
                return b"data: " + json.dumps([text], ensure_ascii=False).encode() + b"\n\n"
            choice: dict[str, object] = {"text": text, "index": 0, "finish_reason": None}
        case Finish(reason):
            if reduce:
                return b""
            choice = {"text": "", "index": 0, "finish_reason": reason}
        case Role():
            return b""  # completions have no role chunk
        case UsageChunk() if reduce:
            return b""
        case _:
            return _event(step, model)
    payload = {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [choice],
    }
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _complete(
    step: ErrorResponse | JSONCompletion | EditAnswer, model: str, shape: Shape = "chat"
) -> web.Response:
    if isinstance(step, EditAnswer):
        return web.json_response(
            {
                "object": "edit",
                "created": 0,
                "choices": [{"text": step.text, "index": 0}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )
    if isinstance(step, JSONCompletion) and shape == "completion":
        choice = {"text": step.text, "index": 0, "logprobs": None, "finish_reason": step.finish}
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": model,
                "choices": [choice],
            }
        )
    if isinstance(step, JSONCompletion):
        body: dict[str, object] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": step.text},
                    "finish_reason": step.finish,
                }
            ],
        }
        if step.usage is not None:
            prompt, completion = step.usage
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return web.json_response(body)
    if isinstance(step.body, bytes):
        data = step.body
    elif isinstance(step.body, str):
        data = step.body.encode()
    else:
        data = json.dumps(step.body, ensure_ascii=False).encode()
    headers = {**(step.headers or {}), "Content-Type": step.content_type}
    return web.Response(status=step.status, body=data, headers=headers)
