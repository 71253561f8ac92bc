"""Context building: persona first, newest history within the message and token budgets."""

from __future__ import annotations

from bot.context import build_messages, estimate_tokens, message_tokens
from bot.providers.base import ChatMessage


def turns(n: int, size: int = 10) -> list[ChatMessage]:
    return [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"{i:03d}" + "x" * size)
        for i in range(n)
    ]


def test_estimate_counts_cjk_characters_as_tokens_and_english_by_length():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("你好世界") == 4


def test_persona_comes_first_and_everything_fits_when_small():
    history = turns(5)
    messages = build_messages("Be brief.", history, max_messages=40, max_tokens=6000)
    assert messages[0] == ChatMessage("system", "Be brief.")
    assert list(messages[1:]) == history


def test_oldest_messages_are_dropped_beyond_max_messages_and_a_user_turn_starts():
    history = turns(11)
    messages = build_messages("p", history, max_messages=4, max_tokens=6000)
    kept = messages[1:]
    assert kept[-1] == history[-1]
    assert kept[0].role == "user"
    assert len(kept) <= 4


def test_token_budget_drops_old_history_but_always_keeps_the_new_message():
    history = [*turns(6, size=400), ChatMessage("user", "y" * 40_000)]
    messages = build_messages("p", history, max_messages=40, max_tokens=500)
    assert messages[-1] == history[-1]
    assert len(messages) == 2


def test_kept_history_stays_within_the_token_budget():
    history = turns(30, size=200)
    messages = build_messages("persona", history, max_messages=40, max_tokens=600)
    assert sum(message_tokens(m) for m in messages) <= 600
    assert messages[-1] == history[-1]


def test_an_image_costs_a_fixed_estimate_not_the_length_of_its_data_url() -> None:
    url = "data:image/png;base64," + "A" * 100_000
    with_image = ChatMessage("user", "what is this?", (url,))
    assert message_tokens(with_image) == message_tokens(ChatMessage("user", "what is this?")) + 765
