"""The provider contract and the value types that cross it.

An adapter turns one request into HTTP and the answer into typed events; retries, routing
and persistence belong to the service. Adapters never import ``telegram``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the prompt."""

    role: Role
    content: str


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
    breaks after it started.
    """

    name: str

    @abstractmethod
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``."""

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """Return the models the provider reports; an empty list if it has no such endpoint."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the adapter holds; the shared HTTP session is closed by its owner."""
