"""Pure: /image arguments into a prompt and options; captions within Telegram's limit."""

from __future__ import annotations

import pytest

from bot.config import ImagesConfig
from bot.errors import InputError
from bot.image_options import (
    ImageOptions,
    image_caption,
    parse_image_command,
    truncate_utf16,
)
from bot.streaming.render import utf16_len

DEFAULTS = ImagesConfig(size="1024x1024", count=1, max_count=4)


def problem(argument: str) -> InputError:
    with pytest.raises(InputError) as caught:
        parse_image_command(argument, DEFAULTS)
    return caught.value


def test_a_bare_prompt_takes_the_configured_defaults() -> None:
    assert parse_image_command("a red fox", DEFAULTS) == ImageOptions("a red fox", "1024x1024", 1)


@pytest.mark.parametrize(
    "argument",
    [
        "--size 512x512 --n 2 a red fox",
        "--n=2 --size=512x512 a red fox",
        "-s 512X512 -n 2 a red fox",
        "—size 512×512 —n 2 a red fox",
        "--size 512*512 --n 2   a red fox",
    ],
)
def test_options_before_the_prompt_in_every_spelling(argument: str) -> None:
    assert parse_image_command(argument, DEFAULTS) == ImageOptions("a red fox", "512x512", 2)


def test_auto_size_and_dashes_inside_the_prompt_stay_prompt() -> None:
    options = parse_image_command("--size auto a fox -- running --n fast", DEFAULTS)
    assert options == ImageOptions("a fox -- running --n fast", "auto", 1)


def test_multiline_prompt_keeps_its_lines() -> None:
    assert parse_image_command("--n 2 line one\nline two", DEFAULTS).prompt == (
        "line one\nline two"
    )


def test_missing_prompt_asks_for_one_and_names_the_maximum() -> None:
    for argument in ("", "   ", "--n 2"):
        error = problem(argument)
        assert (error.key, error.params) == ("image.usage", {"max": 4})


@pytest.mark.parametrize("value", ["0", "5", "two", "-1", "1.5"])
def test_count_outside_one_to_max_is_refused(value: str) -> None:
    error = problem(f"--n {value} a fox")
    assert (error.key, error.params) == ("image.bad_count", {"value": value, "max": 4})


@pytest.mark.parametrize("value", ["big", "1024", "1024x", "x1024", "1024x1024x2"])
def test_malformed_size_is_refused(value: str) -> None:
    error = problem(f"--size {value} a fox")
    assert (error.key, error.params) == ("image.bad_size", {"value": value})


def test_unknown_option_and_missing_value_are_named() -> None:
    assert (problem("--quality hd a fox").key, problem("--quality hd a fox").params) == (
        "image.unknown_option",
        {"option": "--quality"},
    )
    assert problem("--size").key == "image.missing_value"


def test_truncate_counts_utf16_units_and_marks_the_cut() -> None:
    text = "😀" * 600  # 1200 UTF-16 units
    cut = truncate_utf16(text, 1024)
    assert utf16_len(cut) <= 1024
    assert cut.endswith("…")
    assert truncate_utf16("short", 1024) == "short"


def test_caption_adds_the_revised_prompt_when_it_differs_and_fits() -> None:
    caption = image_caption("a fox", "A red fox in deep snow.", "Revised prompt:")
    assert caption == "a fox\n\nRevised prompt: A red fox in deep snow."
    assert image_caption("a fox", "a fox", "Revised prompt:") == "a fox"


def test_caption_drops_the_revised_prompt_that_does_not_fit_and_cuts_a_long_prompt() -> None:
    long_prompt = "fox " * 400
    caption = image_caption(long_prompt, "A revised prompt.", "Revised prompt:")
    assert "Revised" not in caption
    assert utf16_len(caption) <= 1024
    assert caption.endswith("…")
