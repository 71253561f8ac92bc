"""Pure: which photo size is fetched, which captions are questions, what history keeps."""

from __future__ import annotations

from dataclasses import dataclass

from bot.providers.base import ChatMessage, ChatRequest
from bot.vision import (
    MAX_IMAGE_BYTES,
    photo_question,
    pick_photo_size,
    stored_text,
    with_images,
)


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    file_size: int | None


def test_the_largest_photo_size_within_the_limit_is_picked() -> None:
    sizes = [Size(90, 90, 2_000), Size(800, 800, 90_000), Size(2560, 2560, MAX_IMAGE_BYTES + 1)]
    assert pick_photo_size(sizes) == Size(800, 800, 90_000)
    assert pick_photo_size([Size(90, 90, None), Size(320, 320, None)]) == Size(320, 320, None)


def test_no_size_is_picked_when_every_one_is_too_large() -> None:
    assert pick_photo_size([Size(90, 90, 50)], limit=10) is None


def test_every_addressed_photo_is_a_question_even_without_caption() -> None:
    assert photo_question("what is this?", addressed=True) == "what is this?"
    assert photo_question(None, addressed=True) == ""


def test_otherwise_only_a_chat_caption_is_addressed_to_the_bot() -> None:
    assert photo_question("look at my cat", addressed=False) is None
    assert photo_question("/chat what breed?", addressed=False) == "what breed?"
    assert photo_question("/chat@test_llm_bot what breed?", addressed=False) == "what breed?"
    assert photo_question("/chatter", addressed=False) is None


def test_the_stored_turn_is_text_with_a_photo_marker() -> None:
    assert stored_text("what is this?", ("data:image/png;base64,AA==",)) == "[photo] what is this?"
    assert stored_text("", ("data:image/png;base64,AA==",)) == "[photo]"
    assert stored_text("plain", ()) == "plain"
    assert stored_text("which?", ("data:,a", "data:,b")) == "[2 photos] which?"


def test_only_the_newest_message_carries_the_images_and_it_loses_the_marker() -> None:
    request = ChatRequest(
        model="m",
        messages=(
            ChatMessage("system", "be brief"),
            ChatMessage("user", "[photo] earlier"),
            ChatMessage("assistant", "a cat"),
            ChatMessage("user", "[photo] and this?"),
        ),
    )
    sent = with_images(request, "and this?", ("data:image/png;base64,AA==",))
    assert [m.images for m in sent.messages] == [(), (), (), ("data:image/png;base64,AA==",)]
    assert sent.messages[-1].content == "and this?"
    assert sent.messages[1].content == "[photo] earlier"
    assert with_images(request, "x", ()) is request
