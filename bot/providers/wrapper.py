"""The adapter for seed 000's wrapper service: a local server in front of OpenAI and Steamship.

``base_url`` is the service root (``http://127.0.0.1:3000``); the paths are the document's.
The service keeps each conversation itself and names it: the chatcode of ``/openai/chat``
("聊天id用于联系上下文，如果不传则开启新的会话": the chat id links the context; without it a
new conversation starts), or Steamship's ``fileId``. The adapter reports it as a
``ProviderSession`` event; the service hands it back as ``ChatRequest.session`` on the next
turn of the conversation, and only to the provider that issued it.

``wrapper_stream`` chooses the chat path:

* ``stream`` (the default): ``POST /openai/chat/stream``, one JSON object a line;
* ``sse``: ``POST /openai/chat/sse``, the same objects, bare or as ``data:`` lines;
* ``plain``: ``POST /openai/chat``, one JSON answer ``{code, data: {chatcode, role, content}}``;
* ``steamship``: ``POST /send`` with ``{text, inputFileId}``, answered by ``{text, fileId}``
  ("该平台提供了免费的gpt-4接口…但其速度很慢": free GPT-4, but slow; give it a long
  ``first_chunk`` timeout, which covers the whole answer of the non-streamed paths).

The chat body is ``{model, messages: [{role: "user", content}], chatcode?, initMessage?,
max_tokens?, temperature?}``:

* with a session, ``chatcode`` is set and ``messages`` holds only the newest user message:
  the service has the rest;
* without one, a conversation starts: ``initMessage`` is the system prompt (the persona,
  "一般用于给gpt增加人设": usually to give GPT a persona), and earlier turns the request
  carries (the chat was answered by another provider until now, or the session was lost)
  are folded into the one user message as a short transcript (``fold_prompt``), so that the
  new conversation starts with the context the user sees;
* ``max_tokens`` (the request's, else the provider's) and ``temperature`` only when set: the
  document marks every field required, ``chatcode`` included, which it also calls optional,
  so the column is not taken literally and the service's defaults apply.

Images: ``POST /openai/image`` generates them (no model: the service chooses); the answer's
``data`` is read in every shape ``bot.providers.images`` accepts. The service has no image
edit endpoint, and its chat messages are text only: a chat request carrying images raises
``Unsupported``, so that the service moves on to a provider that can see them.
Legacy completions follow the same ``wrapper_stream`` choice: ``POST
/openai/completions/stream``, ``/openai/completions/sse`` or ``/openai/completions`` (whose
answer is ``{code, data: [text, ...], message}``), with ``{model, prompt, max_tokens,
temperature?}``. Edits are ``POST /openai/edits`` with ``{model, input, instruction, n: 1,
temperature?}``. Steamship has neither: both raise ``Unsupported`` with that variant.

Steamship's ``/send`` has no system message: without a session the persona is folded into
the text along with the earlier turns. Timeouts, cut streams and error responses follow the
rules of every adapter (``bot.providers.http``); the service's error lines and bodies are
classified by ``classify_error``. The document describes no authentication; an ``api_key``,
if configured, is sent as ``Authorization: Bearer`` for a proxy in front of the service.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
from multidict import CIMultiDict

from bot.config import ProviderConfig, WrapperStream
from bot.errors import Unsupported
from bot.providers.base import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ModelInfo,
    Provider,
    StreamEvent,
)
from bot.providers.http import ProviderHTTP, Refused, bearer, request_headers
from bot.providers.images import IMAGE_ANSWER_LIMIT, generation_body, parse_images
from bot.providers.wrapper_decoder import (
    WrapperLineDecoder,
    WrapperModels,
    WrapperStreamParser,
    parse_chat_answer,
    parse_edit_answer,
    parse_send_answer,
    parse_wrapper_models,
)

logger = logging.getLogger(__name__)

DEFAULT_WRAPPER_STREAM: WrapperStream = "stream"

CHAT_PATHS: dict[WrapperStream, str] = {
    "stream": "/openai/chat/stream",
    "sse": "/openai/chat/sse",
    "plain": "/openai/chat",
    "steamship": "/send",
}
"""The path each ``wrapper_stream`` variant posts to, below the service root."""

COMPLETION_PATHS: dict[WrapperStream, str] = {
    "stream": "/openai/completions/stream",
    "sse": "/openai/completions/sse",
    "plain": "/openai/completions",
}
"""The completions path of each ``wrapper_stream`` variant; Steamship has none."""

EDITS_PATH = "/openai/edits"
MODELS_PATH = "/openai/models"
IMAGE_PATH = "/openai/image"

DEFAULT_IMAGE_SIZE = "1024x1024"
DEFAULT_IMAGE_FORMAT = "b64_json"
"""Bytes rather than a link: a link from a local service is of no use to Telegram."""

_ACCEPT: dict[WrapperStream, str] = {
    "stream": "application/x-ndjson, application/json;q=0.9, */*;q=0.8",
    "sse": "text/event-stream",
    "plain": "application/json",
    "steamship": "application/json",
}

_NOT_STREAMED: frozenset[WrapperStream] = frozenset({"plain", "steamship"})

INSTRUCTIONS_HEADING = "Instructions for this conversation:"
TRANSCRIPT_HEADING = "Our conversation so far:"
NEW_MESSAGE_HEADING = "My new message:"
SPEAKERS = {"user": "User", "assistant": "Assistant"}
"""The labels of a folded transcript (``fold_prompt``)."""

_SYSTEM_SEPARATOR = "\n\n"


class WrapperProvider(Provider):
    """Seed 000's wrapper service, reached over a shared ``aiohttp.ClientSession``."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._http = ProviderHTTP(config, session)
        self._base_url = config.base_url.rstrip("/")
        self.variant: WrapperStream = config.wrapper_stream or DEFAULT_WRAPPER_STREAM
        """The chat path in use (the ``wrapper_stream`` option)."""
        self._max_tokens = config.max_tokens
        self._chat_headers = _headers(config, _ACCEPT[self.variant])
        self._json_headers = _headers(config, "application/json")

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``; a ``ProviderSession`` names the conversation."""
        if any(m.images for m in request.messages):
            # The document's messages are text only; dropping the image silently would
            # have the model answer about a picture it never saw.
            return Refused(
                Unsupported(f"{self.name} takes no images in chat (for {request.model})")
            )
        url = self._base_url + CHAT_PATHS[self.variant]
        if self.variant == "steamship":
            body = send_body(request)
        else:
            body = chat_body(request, default_max_tokens=self._max_tokens)
        logger.debug(
            "%s: POST %s model=%s %s",
            self.name,
            url,
            request.model,
            "continuing a conversation" if request.session else "new conversation",
        )
        whole = parse_send_answer if self.variant == "steamship" else parse_chat_answer
        parser = WrapperStreamParser(provider=self.name, secrets=self._http.secrets)
        return self._http.stream(
            url,
            body,
            self._chat_headers,
            parser=parser,
            # /stream is read line by line whatever its Content-Type says.
            whole=whole if self.variant in _NOT_STREAMED else None,
            always_whole=True,
            decoder=WrapperLineDecoder(),
        )

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        """``POST {base_url}/openai/image`` with ``{prompt, n, size, response_format}``.

        The service picks the model itself ("官方不支持选择模型"), so none is sent; the
        document marks every field required, so size and format get defaults when unset.
        """
        url = self._base_url + IMAGE_PATH
        body = generation_body(request, with_model=False)
        body.setdefault("size", DEFAULT_IMAGE_SIZE)
        body.setdefault("response_format", DEFAULT_IMAGE_FORMAT)
        body.pop("user", None)
        logger.debug("%s: POST %s n=%d", self.name, url, request.n)
        status, answer = await self._http.post_whole(
            url, self._json_headers, body=body, limit=IMAGE_ANSWER_LIMIT
        )
        return parse_images(answer, status=status, provider=self.name, secrets=self._http.secrets)

    async def model_catalogue(self) -> WrapperModels:
        """``GET {base_url}/openai/models``: the models and the per-capability suggestions.

        Empty when the service has no such endpoint.
        """
        body = await self._http.get_json(self._base_url + MODELS_PATH, self._json_headers)
        if body is None:
            return WrapperModels()
        return parse_wrapper_models(body, provider=self.name, secrets=self._http.secrets)

    async def list_models(self) -> list[ModelInfo]:
        """The reported models, then those only suggested; ``extra["suggested_for"]`` on each
        suggested one names its capabilities (see ``WrapperModels``)."""
        return (await self.model_catalogue()).models

    async def suggestions(self) -> dict[str, tuple[str, ...]]:
        """The service's suggested models per capability: ``{"chat": ("gpt-4",), ...}``."""
        return (await self.model_catalogue()).suggest

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream a legacy completion over the configured variant's completions path."""
        path = COMPLETION_PATHS.get(self.variant)
        if path is None:
            return Refused(
                Unsupported(f"{self.name}: Steamship has no completions", provider=self.name)
            )
        body: dict[str, object] = {
            "model": request.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens or self._max_tokens or DEFAULT_COMPLETION_MAX_TOKENS,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        logger.debug("%s: POST %s model=%s", self.name, path, request.model)
        parser = WrapperStreamParser(provider=self.name, secrets=self._http.secrets)
        return self._http.stream(
            self._base_url + path,
            body,
            self._chat_headers,
            parser=parser,
            whole=parse_chat_answer if self.variant in _NOT_STREAMED else None,
            always_whole=True,
            decoder=WrapperLineDecoder(),
        )

    async def edit_text(self, request: EditRequest) -> str:
        """``POST /openai/edits``: ``request.input`` rewritten as the instruction says."""
        if self.variant == "steamship":
            raise Unsupported(f"{self.name}: Steamship has no edits", provider=self.name)
        body: dict[str, object] = {
            "model": request.model,
            "input": request.input,
            "instruction": request.instruction,
            "n": 1,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        logger.debug("%s: POST %s model=%s", self.name, EDITS_PATH, request.model)
        http = self._http
        deadlines = http.deadlines()
        response = await http.post(self._base_url + EDITS_PATH, body, self._json_headers, deadlines)
        async with response:
            await http.check(response, deadlines)
            answer = await http.read_json(response, deadlines.next_at)
        return parse_edit_answer(
            answer, status=response.status, provider=self.name, secrets=http.secrets
        )


def chat_body(request: ChatRequest, *, default_max_tokens: int | None) -> dict[str, object]:
    """The JSON body of ``POST /openai/chat[/stream|/sse]`` for ``request``."""
    system, turns, newest = split_prompt(request.messages)
    body: dict[str, object] = {"model": request.model}
    if request.session:
        body["chatcode"] = request.session
        content = newest
    else:
        content = fold_prompt(turns, newest)
    body["messages"] = [{"role": "user", "content": content}]
    if not request.session and system:
        body["initMessage"] = {"role": "system", "content": system}
    max_tokens = request.max_tokens if request.max_tokens is not None else default_max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def send_body(request: ChatRequest) -> dict[str, object]:
    """The JSON body of Steamship's ``POST /send`` for ``request``."""
    system, turns, newest = split_prompt(request.messages)
    if request.session:
        return {"text": newest, "inputFileId": request.session}
    return {"text": fold_prompt(turns, newest, instructions=system)}


def split_prompt(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[ChatMessage], str]:
    """The system prompt, the earlier turns, and the newest user message of a prompt.

    System messages are joined; empty turns are left out. Raises ``ValueError`` when there
    is no user message: a request without one is a bug of the caller.
    """
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None
    )
    if last_user is None:
        raise ValueError("a chat request needs a user message")
    system = _SYSTEM_SEPARATOR.join(m.content for m in messages if m.role == "system" and m.content)
    turns = [m for m in messages[:last_user] if m.role != "system" and m.content]
    return system, turns, messages[last_user].content


def fold_prompt(turns: Sequence[ChatMessage], newest: str, *, instructions: str = "") -> str:
    """One message carrying ``instructions``, the earlier ``turns`` and the ``newest`` text.

    With nothing to fold, ``newest`` as it is. Otherwise, e.g.::

        Our conversation so far:
        User: hi
        Assistant: Hello!

        My new message:
        Weather?
    """
    parts: list[str] = []
    if instructions:
        parts.append(f"{INSTRUCTIONS_HEADING}\n{instructions}")
    if turns:
        lines = [f"{SPEAKERS.get(m.role, m.role)}: {m.content}" for m in turns]
        parts.append("\n".join([TRANSCRIPT_HEADING, *lines]))
    if not parts:
        return newest
    parts.append(f"{NEW_MESSAGE_HEADING}\n{newest}")
    return "\n\n".join(parts)


def _headers(config: ProviderConfig, accept: str) -> CIMultiDict[str]:
    """A bearer key for a proxy in front of the service, then the configured headers."""
    return request_headers(config, accept, bearer(config))
