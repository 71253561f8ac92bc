"""A scripted seed-000 wrapper service on 127.0.0.1, for the real ``WrapperProvider``.

    async with FakeWrapper() as w:
        w.enqueue(Piece("你"), Piece("好"), Code("MjAy...Nw=="), End())
        ...  # point a WrapperProvider at w.base_url

Routes, as the document gives them: ``POST /openai/chat/stream`` (one JSON object a line),
``POST /openai/chat/sse`` (the same objects, as ``data:`` events unless ``sse_framing`` is
"bare", the framing its example shows), ``POST /openai/chat`` (one JSON answer), Steamship's
``POST /send`` and ``GET /openai/models`` (the document's example body unless told otherwise).

Each chat or send request takes the next queued script. Unscripted requests get an echo that
keeps conversations as the service does: a request without ``chatcode`` (or with one the
fake never gave) starts a conversation under a new chatcode, with ``initMessage`` first;
``conversations`` holds every conversation's messages, and the answer is "echo: " + the
newest user message, followed by the chatcode. ``/send`` keeps ``files`` the same way by
``fileId``. ``Delay``, ``At``, ``Raw``, ``Together``, ``Hold``, ``Cut`` and ``ErrorResponse``
steps work as in ``FakeProvider``.

``POST /openai/image`` takes the next script queued with ``enqueue_image``: an ``ImageReply``
(``{code: 0, data, message}``, ``data`` as given) or an ``ErrorResponse``. The document shows
no answer, so unscripted requests get ``data`` as a list of OpenAI-like items, ``n`` of them,
base64 or (``response_format: "url"``) links.

Legacy completions: ``POST /openai/completions/stream`` and ``/sse`` (the same line protocol,
without a chatcode) and ``POST /openai/completions`` (``CompletionAnswer``:
``{code: 0, data: [text, ...], message}``); unscripted, they echo the prompt. Edits:
``POST /openai/edits`` answers ``EditResult`` (``{code: 0, data: [text], message}``, the shape
of the document's other plain answers, as it shows none), unscripted
``"<instruction>: <input>"``. These routes take the same queue of scripts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from tests.fakes.provider import (
    At,
    Cut,
    Delay,
    ErrorResponse,
    Hold,
    Raw,
    RecordedRequest,
    Together,
    b64_item,
    url_item,
)
from tests.fakes.server import LoopbackServer


@dataclass(frozen=True, slots=True)
class Piece:
    """``{"code":0,"data":text,"message":"continue"}``: a piece of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Code:
    """``{"code":0,"data":chatcode,"message":"code"}``: the conversation's chatcode."""

    chatcode: str


@dataclass(frozen=True, slots=True)
class End:
    """``{"code":0,"data":"[DONE]","message":"end"}``."""


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """``{"code":code,"data":data,"message":"error"}``: a failure mid-stream."""

    data: object = "Request failed with status code 500"
    code: object = 1


@dataclass(frozen=True, slots=True)
class Line:
    """Any JSON object as a line (or an SSE event), e.g. a kind the document does not know."""

    payload: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """``POST /openai/chat``'s answer: ``{code: 0, data: {chatcode, role, content}, ...}``."""

    content: str
    chatcode: str = "MjAyMy0wNS0zMCAxMTowOTo1NQ=="


@dataclass(frozen=True, slots=True)
class SendAnswer:
    """Steamship's ``POST /send`` answer: ``{text, fileId}``."""

    text: str
    file_id: str = "xxx"


@dataclass(frozen=True, slots=True)
class ImageReply:
    """``POST /openai/image``'s answer: ``{"code": 0, "data": data, "message": "响应成功"}``."""

    data: object


@dataclass(frozen=True, slots=True)
class CompletionAnswer:
    """``POST /openai/completions``' answer: ``{code: 0, data: [pieces...], message}``."""

    pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EditResult:
    """``POST /openai/edits``' answer: ``{code: 0, data: [text], message}``."""

    text: str


WrapperStep = (
    Piece
    | Code
    | End
    | ErrorLine
    | Line
    | ChatAnswer
    | SendAnswer
    | CompletionAnswer
    | EditResult
    | Delay
    | At
    | Raw
    | Together
    | Hold
    | Cut
) | ErrorResponse

# GET /openai/models, the document's "成功响应示例" verbatim.
SEED_000_MODELS: dict[str, object] = {
    "code": 0,
    "data": {
        "models": ["whisper-1"],
        "suggest": {
            "chat": ["gpt-4"],
            "completions": ["text-davinci-003"],
            "edits": ["text-davinci-edit-001"],
            "audio": {"transcriptions": ["whisper-1"], "translations": ["whisper-1"]},
            "finetunes": ["davinci"],
            "embeddings": ["text-embedding-ada-002"],
            "moderations": ["text-moderation-stable"],
        },
    },
    "message": "响应成功",
}

# POST /openai/chat/stream, the document's "成功响应示例" verbatim (a chat with a chatcode).
SEED_000_CHAT_STREAM = (
    '{"code":0,"data":"你","message":"continue"}\n'
    '{"code":0,"data":"上","message":"continue"}\n'
    '{"code":0,"data":"句","message":"continue"}\n'
    '{"code":0,"data":"话","message":"continue"}\n'
    '{"code":0,"data":"说","message":"continue"}\n'
    '{"code":0,"data":"的","message":"continue"}\n'
    '{"code":0,"data":"是","message":"continue"}\n'
    '{"code":0,"data":"“","message":"continue"}\n'
    '{"code":0,"data":"我","message":"continue"}\n'
    '{"code":0,"data":"上","message":"continue"}\n'
    '{"code":0,"data":"句","message":"continue"}\n'
    '{"code":0,"data":"话","message":"continue"}\n'
    '{"code":0,"data":"说","message":"continue"}\n'
    '{"code":0,"data":"的","message":"continue"}\n'
    '{"code":0,"data":"是","message":"continue"}\n'
    '{"code":0,"data":"什","message":"continue"}\n'
    '{"code":0,"data":"么","message":"continue"}\n'
    '{"code":0,"data":"喵","message":"continue"}\n'
    '{"code":0,"data":"~","message":"continue"}\n'
    '{"code":0,"data":"”","message":"continue"}\n'
    '{"code":0,"data":"MjAyMy0wNS0zMCAxMDo1MDozNw==","message":"code"}\n'
    '{"code":0,"data":"[DONE]","message":"end"}\n'
    "\n"
).encode()
SEED_000_CHAT_STREAM_TEXT = "你上句话说的是“我上句话说的是什么喵~”"
SEED_000_CHATCODE = "MjAyMy0wNS0zMCAxMDo1MDozNw=="

# POST /openai/completions/stream, the document's example verbatim: no chatcode line.
SEED_000_COMPLETIONS_STREAM = (
    b'{"code":0,"data":"\\n","message":"continue"}\n'
    b'{"code":0,"data":"\\n","message":"continue"}\n'
    b'{"code":0,"data":"This","message":"continue"}\n'
    b'{"code":0,"data":" is","message":"continue"}\n'
    b'{"code":0,"data":" a","message":"continue"}\n'
    b'{"code":0,"data":" test","message":"continue"}\n'
    b'{"code":0,"data":".","message":"continue"}\n'
    b'{"code":0,"data":"[DONE]","message":"end"}\n'
    b"\n"
)
SEED_000_COMPLETIONS_TEXT = "\n\nThis is a test."

Route = Literal["stream", "sse", "plain", "steamship"]


def chatcode_for(number: int) -> str:
    """A chatcode shaped like the document's: base64 of a timestamp-like text."""
    return base64.b64encode(f"2023-05-30 11:{number // 60:02d}:{number % 60:02d}".encode()).decode()


class FakeWrapper(LoopbackServer):
    """An aiohttp server speaking seed 000's chat, send and models API from scripts."""

    def __init__(
        self,
        *,
        models: Mapping[str, object] | ErrorResponse | None = SEED_000_MODELS,
        sse_framing: Literal["data", "bare"] = "data",
        stream_content_type: str = "application/octet-stream",
    ) -> None:
        super().__init__()
        self.models = models
        """What GET /openai/models answers: a body, an ErrorResponse, or None for a 404."""
        self.sse_framing = sse_framing
        """How /openai/chat/sse frames a line: as a ``data:`` event, or bare like /stream."""
        self.stream_content_type = stream_content_type
        """The Content-Type of /openai/chat/stream (the document does not give one)."""
        self.requests: list[RecordedRequest] = []
        self.conversations: dict[str, list[dict[str, str]]] = {}
        """chatcode -> the messages of that conversation, initMessage first, answers included."""
        self.files: dict[str, list[str]] = {}
        """Steamship fileId -> the texts sent and answered in that conversation."""
        self._scripts: deque[Sequence[WrapperStep]] = deque()
        self._image_scripts: deque[ImageReply | ErrorResponse] = deque()
        self._arrived = asyncio.Condition()

    def add_routes(self, app: web.Application) -> None:
        """The document's chat variants, Steamship's /send, and the models list."""
        app.router.add_post("/openai/chat/stream", self._stream)
        app.router.add_post("/openai/chat/sse", self._sse)
        app.router.add_post("/openai/chat", self._plain)
        app.router.add_post("/send", self._send)
        app.router.add_get("/openai/models", self._models)
        app.router.add_post("/openai/image", self._image)
        app.router.add_post("/openai/completions/stream", self._completions_stream)
        app.router.add_post("/openai/completions/sse", self._completions_sse)
        app.router.add_post("/openai/completions", self._completions_plain)
        app.router.add_post("/openai/edits", self._edits)

    @property
    def base_url(self) -> str:
        """The service root, as the document's ``http://127.0.0.1:3000``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def pending(self) -> int:
        """Scripts queued and not yet served."""
        return len(self._scripts)

    def enqueue(self, *steps: WrapperStep) -> None:
        """Queue the response to the next chat or send request."""
        self._scripts.append(steps)

    def enqueue_image(self, step: ImageReply | ErrorResponse) -> None:
        """Queue the response to the next ``/openai/image`` request."""
        self._image_scripts.append(step)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests arrived; return them all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return list(self.requests)

    # --- the default, conversation-keeping echo ---------------------------------------------

    def echo_chat(self, body: object, route: Route) -> list[WrapperStep]:
        """Answer a chat request as the service would, keeping its conversation."""
        fields = body if isinstance(body, dict) else {}
        chatcode = fields.get("chatcode")
        if not isinstance(chatcode, str) or chatcode not in self.conversations:
            chatcode = chatcode_for(len(self.conversations) + 1)
            init = fields.get("initMessage")
            self.conversations[chatcode] = [dict(init)] if isinstance(init, dict) else []
        history = self.conversations[chatcode]
        messages = fields.get("messages") or []
        history.extend(dict(m) for m in messages if isinstance(m, dict))
        last = next(
            (m.get("content", "") for m in reversed(history) if m.get("role") == "user"), ""
        )
        answer = f"echo: {last}"
        history.append({"role": "assistant", "content": answer})
        if route == "plain":
            return [ChatAnswer(answer, chatcode)]
        size = -(-len(answer) // 3)
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        return [*(Piece(p) for p in pieces), Code(chatcode), End()]

    def echo_send(self, body: object) -> list[WrapperStep]:
        """Answer Steamship's /send, keeping the conversation under its fileId."""
        fields = body if isinstance(body, dict) else {}
        file_id = fields.get("inputFileId")
        if not isinstance(file_id, str) or file_id not in self.files:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = []
        text = str(fields.get("text", ""))
        answer = f"echo: {text}"
        self.files[file_id] += [text, answer]
        return [SendAnswer(answer, file_id)]

    def echo_completion(self, body: object, route: Route) -> list[WrapperStep]:
        """Complete a prompt with "echo: " + the prompt."""
        fields = body if isinstance(body, dict) else {}
        answer = f"echo: {fields.get('prompt', '')}"
        half = len(answer) // 2
        if route == "plain":
            return [CompletionAnswer((answer,))]
        return [Piece(answer[:half]), Piece(answer[half:]), End()]

    # --- routes -------------------------------------------------------------------------------

    async def _completions_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, "stream")

    async def _completions_sse(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, "sse")

    async def _completions_plain(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, "plain")

    async def _completion(self, request: web.Request, route: Route) -> web.StreamResponse:
        recorded = await self._record(request)
        if self._scripts:
            script: Sequence[WrapperStep] = self._scripts.popleft()
        else:
            script = self.echo_completion(recorded.json, route)
        return await self._play(request, script, route, recorded.at)

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self._scripts:
            script: Sequence[WrapperStep] = self._scripts.popleft()
        else:
            fields = recorded.json if isinstance(recorded.json, dict) else {}
            script = [EditResult(f"{fields.get('instruction', '')}: {fields.get('input', '')}")]
        return await self._play(request, script, "plain", recorded.at)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "stream")

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "sse")

    async def _plain(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "plain")

    async def _send(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "steamship")

    async def _chat(self, request: web.Request, route: Route) -> web.StreamResponse:
        recorded = await self._record(request)
        if self._scripts:
            script: Sequence[WrapperStep] = self._scripts.popleft()
        elif route == "steamship":
            script = self.echo_send(recorded.json)
        else:
            script = self.echo_chat(recorded.json, route)
        return await self._play(request, script, route, recorded.at)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        step = self._image_scripts.popleft() if self._image_scripts else None
        if isinstance(step, ErrorResponse):
            return _response(step)
        if step is None:
            fields = recorded.json if isinstance(recorded.json, dict) else {}
            count = int(fields.get("n", 1))
            if fields.get("response_format") == "url":
                item = url_item("https://images.example/generated.png")
            else:
                item = b64_item()
            step = ImageReply([item] * count)
        return web.json_response({"code": 0, "data": step.data, "message": "响应成功"})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if self.models is None:
            raise web.HTTPNotFound()
        if isinstance(self.models, ErrorResponse):
            return _response(self.models)
        return web.json_response(dict(self.models))

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            request.method, request.path, dict(request.headers), body, time.monotonic()
        )
        self.requests.append(recorded)
        async with self._arrived:
            self._arrived.notify_all()
        return recorded

    async def _play(
        self, request: web.Request, script: Sequence[WrapperStep], route: Route, started: float
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
                    return _response(step)
                case ChatAnswer(content, chatcode):
                    assert stream is None, f"{step!r} must come before any streamed step"
                    data = {"chatcode": chatcode, "role": "assistant", "content": content}
                    return web.json_response({"code": 0, "data": data, "message": "响应成功"})
                case CompletionAnswer(pieces):
                    assert stream is None, f"{step!r} must come before any streamed step"
                    body = {"code": 0, "data": list(pieces), "message": "响应成功"}
                    return web.json_response(body)
                case EditResult(text):
                    assert stream is None, f"{step!r} must come before any streamed step"
                    return web.json_response({"code": 0, "data": [text], "message": "响应成功"})
                case SendAnswer(text, file_id):
                    assert stream is None, f"{step!r} must come before any streamed step"
                    return web.json_response({"text": text, "fileId": file_id})
                case Cut():
                    if request.transport is not None:
                        request.transport.abort()
                    return stream or web.Response()
                case _:
                    if stream is None:
                        stream = await self._open_stream(request, route)
                    parts = step.steps if isinstance(step, Together) else (step,)
                    await stream.write(b"".join(self._frame(part, route) for part in parts))
        if stream is None:
            stream = await self._open_stream(request, route)
        await stream.write_eof()
        return stream

    async def _open_stream(self, request: web.Request, route: Route) -> web.StreamResponse:
        content_type = "text/event-stream" if route == "sse" else self.stream_content_type
        stream = web.StreamResponse(headers={"Content-Type": content_type})
        await stream.prepare(request)
        return stream

    def _frame(self, step: WrapperStep, route: Route) -> bytes:
        if isinstance(step, Raw):
            return step.data
        line = json.dumps(_line(step), ensure_ascii=False)
        if route == "sse" and self.sse_framing == "data":
            return f"data: {line}\n\n".encode()
        return f"{line}\n".encode()


def _line(step: WrapperStep) -> Mapping[str, object]:
    match step:
        case Piece(text):
            return {"code": 0, "data": text, "message": "continue"}
        case Code(chatcode):
            return {"code": 0, "data": chatcode, "message": "code"}
        case End():
            return {"code": 0, "data": "[DONE]", "message": "end"}
        case ErrorLine(data, code):
            return {"code": code, "data": data, "message": "error"}
        case Line(payload):
            return payload
        case _:
            raise AssertionError(f"not a streamed step: {step!r}")


def _response(step: ErrorResponse) -> web.Response:
    body: Any = step.body
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body, ensure_ascii=False).encode()
    headers = {**(step.headers or {}), "Content-Type": step.content_type}
    return web.Response(status=step.status, body=body, headers=headers)
