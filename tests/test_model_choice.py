"""Pure parts of the model choice: resolution, what may be chosen, and /models' parsing and text."""

from __future__ import annotations

from bot.config import ModelsConfig, SuggestionsConfig
from bot.errors import ErrorKind
from bot.handlers.models import (
    MODELS_PREFIX,
    ChooseChat,
    Listing,
    ResetDefault,
    SetDefault,
    Show,
    UnknownRole,
    Usage,
    button_data,
    model_of_button,
    name_list,
    parse_arguments,
    render_listing,
)
from bot.model_choice import (
    admin_choices,
    choosable_chat_models,
    match_model,
    resolve_model,
    suggestions,
)
from bot.providers.catalogue import ProviderModels

MODELS = ModelsConfig(chat="base", images="dall-e-3")
WRAPPER = ProviderModels(
    "wrapper",
    ("whisper-1", "gpt-4"),
    {"chat": ("gpt-4",), "audio.transcriptions": ("whisper-1",), "finetunes": ("davinci",)},
)
OPENAI = ProviderModels("openai", ("gpt-4o", "gpt-4"))


def test_the_chats_choice_beats_the_admins_default_which_beats_the_config() -> None:
    assert resolve_model(MODELS, "chat", chat_choice=None, admin_default=None) == "base"
    assert resolve_model(MODELS, "chat", chat_choice=None, admin_default="admin") == "admin"
    assert resolve_model(MODELS, "chat", chat_choice="own", admin_default="admin") == "own"


def test_a_chats_choice_applies_to_the_chat_model_only() -> None:
    chosen = resolve_model(MODELS, "images", chat_choice="own", admin_default=None)
    assert chosen == "dall-e-3"
    assert resolve_model(MODELS, "images", chat_choice="own", admin_default="x") == "x"


def test_a_choice_the_configuration_no_longer_offers_falls_back_to_the_default() -> None:
    narrowed = ModelsConfig(chat="base", suggestions=SuggestionsConfig(chat=("a", "b")))
    assert resolve_model(narrowed, "chat", chat_choice="b", admin_default=None) == "b"
    assert resolve_model(narrowed, "chat", chat_choice="gone", admin_default=None) == "base"
    assert resolve_model(narrowed, "chat", chat_choice="base", admin_default="a") == "base"


def test_suggestions_merge_the_config_and_the_providers_by_capability() -> None:
    config = ModelsConfig(suggestions=SuggestionsConfig(chat=("gpt-4o",), images=("dall-e-3",)))
    merged = suggestions(config, [WRAPPER])
    assert merged["chat"] == ["gpt-4o", "gpt-4"]
    assert merged["audio"] == ["whisper-1"]
    assert merged["images"] == ["dall-e-3"]
    assert "finetunes" not in merged


def test_any_reported_model_may_be_chosen_unless_the_config_names_the_chat_models() -> None:
    assert choosable_chat_models(MODELS, [WRAPPER, OPENAI], None) == [
        "base",
        "gpt-4",
        "whisper-1",
        "davinci",
        "gpt-4o",
    ]
    assert choosable_chat_models(MODELS, [WRAPPER], "admin")[:2] == ["admin", "base"]
    narrowed = ModelsConfig(chat="base", suggestions=SuggestionsConfig(chat=("a",)))
    assert choosable_chat_models(narrowed, [WRAPPER, OPENAI], None) == ["base", "a"]


def test_admins_may_choose_any_known_model_or_anything_when_nothing_is_known() -> None:
    known = admin_choices(MODELS, "images", [OPENAI], [("local-model",)], {})
    assert known == ["dall-e-3", "local-model", "gpt-4o", "gpt-4"]
    assert admin_choices(ModelsConfig(edits=""), "edits", [], [], {}) == []


def test_a_model_name_matches_exactly_or_by_case_when_unambiguous() -> None:
    assert match_model("GPT-4o", ["gpt-4o", "gpt-4"]) == "gpt-4o"
    assert match_model("gpt-4", ["gpt-4", "GPT-4"]) == "gpt-4"
    assert match_model("Gpt-4", ["gpt-4", "GPT-4"]) is None
    assert match_model("nope", ["gpt-4"]) is None


def test_arguments_parse_into_actions() -> None:
    assert parse_arguments("") == Show()
    assert parse_arguments("chat gpt-4") == ChooseChat("gpt-4")
    assert parse_arguments("chat reset") == ChooseChat(None)
    assert parse_arguments("chat Default") == ChooseChat(None)
    assert parse_arguments("gpt-4") == ChooseChat("gpt-4")
    assert parse_arguments("set chat gpt-4") == SetDefault("chat", "gpt-4")
    assert parse_arguments("SET image-edits dall-e-2") == SetDefault("image_edits", "dall-e-2")
    assert parse_arguments("reset images") == ResetDefault("images")
    assert parse_arguments("set voice x") == UnknownRole("voice")
    for wrong in ("chat", "set chat", "reset", "chat a b", "help", "a b"):
        assert parse_arguments(wrong) == Usage(), wrong


def test_long_model_names_get_a_digest_that_finds_them_again() -> None:
    short = "gpt-4o"
    long = "accounts/fireworks/models/llama-v3p1-405b-instruct-long-context-edition"
    assert button_data(short) == f"{MODELS_PREFIX}={short}"
    data = button_data(long)
    assert len(data.encode()) <= 64
    assert model_of_button(data, [short, long]) == long
    assert model_of_button(data, [short]) is None
    assert model_of_button(button_data(short), []) == short


def test_name_lists_say_how_many_are_left_out() -> None:
    assert name_list(["a", "b"], 5, "en") == "a, b"
    assert name_list(["a", "b", "c"], 2, "en") == "a, b … and 1 more"
    assert name_list(["a", "b", "c"], 0, "zh") == "……等另外 3 个"


def test_a_listing_of_huge_lists_fits_one_message() -> None:
    names = tuple(
        f"provider-{p}/model-with-a-long-name-{i:04d}" for p in range(3) for i in range(500)
    )
    reports = [ProviderModels(f"p{i}", names) for i in range(6)]
    reports.append(ProviderModels("late", error=ErrorKind.TIMEOUT))
    listing = Listing(
        current="base",
        source="config",
        defaults={"chat": "base", "edits": ""},
        admin_set=frozenset(),
        suggested={"chat": list(names)},
        reports=reports,
        may_choose=True,
        is_admin=True,
    )
    body = render_listing(listing, "en")
    assert len(body) <= 4096
    assert "• late: did not answer in time" in body
    assert "• p5 (1500): provider-0/model-with-a-long-name-0000" in body
    assert "• edits: the chat model" in body
