"""Pure image plumbing: request bodies, every answer shape the seeds allow, data URLs."""

from __future__ import annotations

import base64

import pytest

from bot.errors import ContentRejected, Unavailable
from bot.providers.base import GeneratedImage, ImageEditRequest, ImageRequest
from bot.providers.images import (
    data_url,
    edit_fields,
    generation_body,
    parse_images,
    sniff_image,
    split_data_url,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"
JPEG = b"\xff\xd8\xff\xe0" + b"pixels"
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 "
PNG_B64 = base64.b64encode(PNG).decode()


def test_generation_body_leaves_unset_options_out() -> None:
    request = ImageRequest(model="dall-e-3", prompt="a fox")
    assert generation_body(request) == {"model": "dall-e-3", "prompt": "a fox", "n": 1}


def test_generation_body_carries_every_set_option_and_can_omit_the_model() -> None:
    request = ImageRequest(
        model="m", prompt="a fox", n=2, size="512x512", response_format="url", user="u1"
    )
    assert generation_body(request, with_model=False) == {
        "prompt": "a fox",
        "n": 2,
        "size": "512x512",
        "response_format": "url",
        "user": "u1",
    }


def test_edit_fields_are_text_and_leave_the_image_to_the_file_part() -> None:
    request = ImageEditRequest(model="dall-e-2", prompt="add a hat", image=PNG, n=1)
    assert edit_fields(request) == {"prompt": "add a hat", "model": "dall-e-2", "n": "1"}


def test_openai_b64_answer_gives_bytes_and_revised_prompt() -> None:
    body = {"created": 1, "data": [{"b64_json": PNG_B64, "revised_prompt": "A red fox."}]}
    assert parse_images(body) == [GeneratedImage(data=PNG, revised_prompt="A red fox.")]


def test_openai_url_answer_gives_the_url() -> None:
    body = {"created": 1, "data": [{"url": "https://cdn.example/a.png"}, {"url": "https://b"}]}
    assert [i.url for i in parse_images(body)] == ["https://cdn.example/a.png", "https://b"]


@pytest.mark.parametrize(
    "data",
    [
        [{"b64_json": PNG_B64}],
        {"created": 1, "data": [{"b64_json": PNG_B64}]},
        [PNG_B64],
        [f"data:image/png;base64,{PNG_B64}"],
        PNG_B64,
    ],
    ids=["items", "whole-openai-answer", "bare-base64", "data-url", "one-string"],
)
def test_wrapper_answer_data_may_be_items_an_answer_or_bare_strings(data: object) -> None:
    body = {"code": 0, "data": data, "message": "响应成功"}
    assert parse_images(body) == [GeneratedImage(data=PNG)]


def test_wrapper_answer_with_bare_urls() -> None:
    body = {"code": 0, "data": ["https://cdn.example/1.png"], "message": "响应成功"}
    assert parse_images(body) == [GeneratedImage(url="https://cdn.example/1.png")]


def test_base64_wrapped_at_76_columns_is_read() -> None:
    wrapped = "\n".join(PNG_B64[i : i + 4] for i in range(0, len(PNG_B64), 4))
    assert parse_images({"data": [{"b64_json": wrapped}]}) == [GeneratedImage(data=PNG)]


def test_prose_that_happens_to_be_base64_is_no_image() -> None:
    with pytest.raises(Unavailable):
        parse_images({"code": 0, "data": ["abcd"], "message": "ok"})


def test_content_policy_refusal_is_content_rejected() -> None:
    body = {
        "error": {
            "code": "content_policy_violation",
            "message": "Your request was rejected as a result of our safety system.",
            "param": None,
            "type": "invalid_request_error",
        }
    }
    with pytest.raises(ContentRejected):
        parse_images(body, status=400)


def test_wrapper_error_answer_raises_its_classified_error() -> None:
    body = {"code": 1, "data": "Request failed with status code 503", "message": "error"}
    with pytest.raises(Unavailable):
        parse_images(body, status=200)


def test_answer_without_any_image_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        parse_images({"created": 1, "data": []}, status=200)


def test_sniff_image_knows_png_jpeg_webp_and_calls_the_rest_jpeg() -> None:
    assert sniff_image(PNG) == ("image/png", "png")
    assert sniff_image(JPEG) == ("image/jpeg", "jpg")
    assert sniff_image(WEBP) == ("image/webp", "webp")
    assert sniff_image(b"???") == ("image/jpeg", "jpg")


def test_data_url_round_trips() -> None:
    url = data_url(PNG)
    assert url.startswith("data:image/png;base64,")
    assert split_data_url(url) == ("image/png", PNG_B64)
    assert split_data_url("https://example.com/a.png") is None
    assert split_data_url("data:text/plain,hello") is None


def test_gpt_image_moderation_refusal_is_content_rejected() -> None:
    body = {
        "error": {
            "code": "moderation_blocked",
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
        }
    }
    with pytest.raises(ContentRejected):
        parse_images(body, status=400)
