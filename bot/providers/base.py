"""The provider contract and the value types that cross it.

An adapter turns one request into HTTP and the answer into typed events; retries, routing
and persistence belong to the service. Adapters never import ``telegram``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import Unsupported

Role = Literal["system", "user", "assistant"]

Capability = Literal["chat", "completions", "edits", "images", "audio", "embeddings", "moderations"]
"""What a model is for, in the words of seed 000's ``suggest`` and of ``models:`` in config."""

CAPABILITIES: tuple[Capability, ...] = (
    "chat",
    "completions",
    "edits",
    "images",
    "audio",
    "embeddings",
    "moderations",
)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the prompt; ``images`` are data: or https: URLs sent with a user turn."""

    role: Role
    content: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, independent of any provider's wire format."""

    model: str
    messages: tuple[ChatMessage, ...]
    user: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    # The provider's own id for this conversation (see ProviderSession), if it keeps one.
    session: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A legacy text completion (``/v1/completions``): the model continues ``prompt``."""

    model: str
    prompt: str
    user: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


DEFAULT_COMPLETION_MAX_TOKENS = 1024
"""Sent when neither the request nor the provider sets ``max_tokens``: the legacy
completions endpoint otherwise stops after 16 tokens."""


@dataclass(frozen=True, slots=True)
class EditRequest:
    """A text edit (``/v1/edits``): ``input`` rewritten as ``instruction`` says."""

    model: str
    input: str
    instruction: str
    user: str | None = None
    temperature: float | None = None


ImageFormat = Literal["url", "b64_json"]


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Image generation; ``response_format`` None leaves it to the provider (GPT image models)."""

    model: str
    prompt: str
    n: int = 1
    size: str | None = None
    response_format: ImageFormat | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ImageEditRequest:
    """An image edit: ``image`` (PNG or JPEG bytes) changed as ``prompt`` says."""

    model: str
    prompt: str
    image: bytes = field(repr=False)
    filename: str = "image.png"
    mask: bytes | None = field(default=None, repr=False)
    n: int = 1
    size: str | None = None
    response_format: ImageFormat | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image of an answer: its bytes, or a URL where the provider put it."""

    data: bytes | None = field(default=None, repr=False)
    url: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with the same index belong together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one answer, as the provider reported it or as we estimated it."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The provider finished the answer; ``reason`` is its finish reason ("stop", "length")."""

    reason: str = "stop"


@dataclass(frozen=True, slots=True)
class ProviderSession:
    """A provider that keeps the context itself names the conversation; send it next turn."""

    value: str


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Emitted by the service, not adapters: which provider serves the answer."""

    provider: str
    model: str


StreamEvent = StreamStart | TextDelta | ToolCallDelta | Usage | ProviderSession | StreamEnd


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model a provider reports as available."""

    id: str
    owned_by: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)


class Provider(ABC):
    """One upstream LLM service.

    ``stream_chat`` yields events and ends with ``StreamEnd`` when the answer is finished;
    it raises a ``ProviderError`` subclass on failure and ``StreamCut`` when the stream
    breaks after it started. The other capabilities are optional: an adapter without the
    endpoint raises ``Unsupported``, and the service moves on to another provider.
    """

    name: str

    @abstractmethod
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``."""

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """Return the models the provider reports; an empty list if it has no such endpoint."""

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream a legacy text completion, with the same events as ``stream_chat``."""
        raise Unsupported(f"{self.name} has no completions endpoint (for {request.model})")

    async def edit_text(self, request: EditRequest) -> str:
        """Return ``request.input`` edited by the provider's edits endpoint."""
        raise Unsupported(f"{self.name} has no edits endpoint (for {request.model})")

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        """Generate images for ``request.prompt``."""
        raise Unsupported(f"{self.name} has no image generation endpoint (for {request.model})")

    async def edit_image(self, request: ImageEditRequest) -> list[GeneratedImage]:
        """Return ``request.image`` edited as ``request.prompt`` says."""
        raise Unsupported(f"{self.name} has no image edit endpoint (for {request.model})")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the adapter holds; the shared HTTP session is closed by its owner."""
