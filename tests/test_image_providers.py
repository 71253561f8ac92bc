"""Images and vision over HTTP: the real adapters and service against the fake upstreams."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import (
    AuthError,
    BadRequest,
    ContentRejected,
    ProviderError,
    QuotaError,
    RateLimited,
    Unavailable,
    Unsupported,
)
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    GeneratedImage,
    ImageEditRequest,
    ImageRequest,
    Provider,
    StreamStart,
    TextDelta,
)
from bot.providers.images import data_url
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.service import ProviderService
from bot.providers.wrapper import WrapperProvider
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.provider import (
    FAKE_PNG,
    Delay,
    ErrorResponse,
    FakeProvider,
    ImagesAnswer,
    b64_item,
)
from tests.fakes.wrapper import FakeWrapper, ImageReply

API_KEY = "sk-test-images-0123456789"
FAST = TimeoutConfig(connect=2.0, first_chunk=2.0, idle=2.0, total=5.0)
PNG = b"\x89PNG\r\n\x1a\n" + b"a picture"
JPEG = b"\xff\xd8\xff\xe0" + b"a photo"
GENERATE = ImageRequest(model="dall-e-3", prompt="a red fox", n=1, size="1024x1024")
CONTENT_POLICY = {
    "error": {
        "code": "content_policy_violation",
        "message": "Your request was rejected as a result of our safety system.",
        "param": None,
        "type": "invalid_request_error",
    }
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def wrapper() -> AsyncIterator[FakeWrapper]:
    async with FakeWrapper() as server:
        yield server


def openai(session: aiohttp.ClientSession, base_url: str, name: str = "fake") -> Provider:
    config = ProviderConfig(name=name, base_url=base_url, api_key=API_KEY, timeouts=FAST)
    return OpenAICompatProvider(config, session)


def wrapper_provider(session: aiohttp.ClientSession, base_url: str) -> WrapperProvider:
    config = ProviderConfig(name="wrapper", kind="wrapper", base_url=base_url, timeouts=FAST)
    return WrapperProvider(config, session)


def vision_request(*images: str) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o",
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "[photo] earlier"),
            ChatMessage("assistant", "A cat."),
            ChatMessage("user", "What is this?", images),
        ),
    )


# --- openai kind: generation ----------------------------------------------------------------


async def test_generation_posts_json_with_model_prompt_n_size_and_bearer_key(fake, session) -> None:
    request = ImageRequest(
        model="dall-e-2", prompt="a fox", n=2, size="512x512", response_format="b64_json"
    )
    images = await openai(session, fake.base_url).generate_images(request)
    assert images == [GeneratedImage(data=FAKE_PNG)] * 2
    (recorded,) = fake.requests
    assert recorded.path == "/v1/images/generations"
    assert recorded.headers["Authorization"] == f"Bearer {API_KEY}"
    assert recorded.json == {
        "model": "dall-e-2",
        "prompt": "a fox",
        "n": 2,
        "size": "512x512",
        "response_format": "b64_json",
    }


async def test_gpt_image_request_without_format_leaves_it_out(fake, session) -> None:
    request = ImageRequest(model="gpt-image-1.5", prompt="a fox")
    await openai(session, fake.base_url).generate_images(request)
    assert "response_format" not in fake.requests[0].json


async def test_base64_answer_with_revised_prompt(fake, session) -> None:
    fake.enqueue_images(ImagesAnswer([b64_item(PNG, revised_prompt="A red fox in snow.")]))
    images = await openai(session, fake.base_url).generate_images(GENERATE)
    assert images == [GeneratedImage(data=PNG, revised_prompt="A red fox in snow.")]


async def test_url_answer_gives_urls_whose_bytes_the_service_can_fetch(fake, session) -> None:
    request = ImageRequest(model="dall-e-2", prompt="a fox", response_format="url")
    service = ProviderService(
        [(ProviderConfig("fake", fake.base_url), openai(session, fake.base_url))], session=session
    )
    (image,) = await service.generate_images(request)
    assert image.data is None
    assert image.url is not None
    assert image.url.startswith(fake.base_url.removesuffix("/v1"))
    assert await service.fetch_image(image.url) == FAKE_PNG


async def test_fetching_a_missing_url_is_unavailable(fake, session) -> None:
    service = ProviderService([], session=session)
    with pytest.raises(Unavailable):
        await service.fetch_image(fake.file_url("gone.png"))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, CONTENT_POLICY, ContentRejected),
        (400, {"error": {"message": "Invalid size", "type": "invalid_request_error"}}, BadRequest),
        (401, {"error": {"message": "bad key", "code": "invalid_api_key"}}, AuthError),
        (429, {"error": {"message": "quota", "code": "insufficient_quota"}}, QuotaError),
        (429, {"error": {"message": "slow down", "type": "requests"}}, RateLimited),
        (500, {"error": {"message": "boom", "type": "server_error"}}, Unavailable),
        (200, {"codes": 402, "mess": "内容安全", "data": ""}, ContentRejected),
        (502, "<html><title>Bad gateway</title></html>", Unavailable),
    ],
)
async def test_generation_errors_become_their_error_class(
    fake, session, status, body, error
) -> None:
    content_type = "text/html" if isinstance(body, str) else "application/json"
    fake.enqueue_images(ErrorResponse(status, body, content_type=content_type))
    with pytest.raises(error):
        await openai(session, fake.base_url).generate_images(GENERATE)


async def test_no_answer_within_the_first_chunk_timeout_is_a_timeout(fake, session) -> None:
    slow = TimeoutConfig(connect=2.0, first_chunk=0.2, idle=0.2, total=5.0)
    config = ProviderConfig(name="fake", base_url=fake.base_url, timeouts=slow)
    fake.enqueue_images(Delay(1.0), ImagesAnswer([b64_item()]))
    with pytest.raises(ProviderError) as caught:
        await OpenAICompatProvider(config, session).generate_images(GENERATE)
    assert caught.value.kind == "timeout"


# --- openai kind: edits ---------------------------------------------------------------------


async def test_edit_posts_multipart_with_the_image_file_and_every_field(fake, session) -> None:
    request = ImageEditRequest(
        model="dall-e-2",
        prompt="give it a hat",
        image=JPEG,
        filename="image.jpg",
        n=1,
        size="512x512",
        response_format="b64_json",
        user="u-1",
    )
    fake.enqueue_images(ImagesAnswer([b64_item(PNG)]))
    images = await openai(session, fake.base_url).edit_image(request)
    assert images == [GeneratedImage(data=PNG)]
    (recorded,) = fake.requests
    assert recorded.path == "/v1/images/edits"
    assert recorded.headers["Content-Type"].startswith("multipart/form-data")
    assert recorded.headers["Authorization"] == f"Bearer {API_KEY}"
    assert recorded.form == {
        "prompt": "give it a hat",
        "model": "dall-e-2",
        "n": "1",
        "size": "512x512",
        "response_format": "b64_json",
        "user": "u-1",
    }
    image = recorded.files["image"]
    assert (image.filename, image.content_type, image.data) == ("image.jpg", "image/jpeg", JPEG)
    assert "mask" not in recorded.files


async def test_edit_refused_by_content_policy_is_content_rejected(fake, session) -> None:
    fake.enqueue_images(ErrorResponse(400, CONTENT_POLICY))
    request = ImageEditRequest(model="dall-e-2", prompt="x", image=PNG)
    with pytest.raises(ContentRejected):
        await openai(session, fake.base_url).edit_image(request)


async def test_a_retried_edit_sends_the_whole_form_again(fake, session) -> None:
    fake.enqueue_images(ErrorResponse(503, {"error": {"message": "busy", "type": "server_error"}}))
    provider = openai(session, fake.base_url)
    config = ProviderConfig("fake", fake.base_url, retries=1)
    service = ProviderService([(config, provider)], backoff=0.01)
    request = ImageEditRequest(model="dall-e-2", prompt="a hat", image=PNG)
    assert await service.edit_image(request) == [GeneratedImage(data=FAKE_PNG)]
    assert [r.files["image"].data for r in fake.requests] == [PNG, PNG]


# --- vision bodies ------------------------------------------------------------------------


async def test_openai_vision_sends_text_and_image_url_parts_for_the_newest_message(
    fake, session
) -> None:
    url = data_url(PNG)
    events = [e async for e in openai(session, fake.base_url).stream_chat(vision_request(url))]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (
        "echo: What is this? [1 image(s)]"
    )
    messages = fake.requests[0].json["messages"]
    assert messages[1] == {"role": "user", "content": "[photo] earlier"}
    assert messages[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }


async def test_anthropic_vision_sends_base64_image_blocks_before_the_text(session) -> None:
    async with FakeAnthropic() as fake:
        config = ProviderConfig(
            name="claude", kind="anthropic", base_url=fake.base_url, timeouts=FAST
        )
        provider = AnthropicProvider(config, session)
        request = vision_request(data_url(PNG), "https://example.com/cat.jpg")
        _ = [e async for e in provider.stream_chat(request)]
        with pytest.raises(Unsupported):
            await provider.generate_images(GENERATE)
    messages = fake.requests[0].json["messages"]
    assert messages[0] == {"role": "user", "content": "[photo] earlier"}
    assert messages[2] == {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": "image/png",
                    "data": base64.b64encode(PNG).decode(),
                },
            },
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "What is this?"},
        ],
    }


async def test_anthropic_merges_a_photo_turn_into_the_text_turn_before_it(session) -> None:
    async with FakeAnthropic() as fake:
        config = ProviderConfig(
            name="claude", kind="anthropic", base_url=fake.base_url, timeouts=FAST
        )
        request = ChatRequest(
            model="claude",
            messages=(ChatMessage("user", "hi"), ChatMessage("user", "", (data_url(PNG),))),
        )
        _ = [e async for e in AnthropicProvider(config, session).stream_chat(request)]
    (turn,) = fake.requests[0].json["messages"]
    assert [block["type"] for block in turn["content"]] == ["text", "image"]


# --- wrapper kind ---------------------------------------------------------------------------


async def test_wrapper_image_posts_the_documents_fields_without_a_model(wrapper, session) -> None:
    request = ImageRequest(model="dall-e-2", prompt="A cute baby sea otter", n=2)
    images = await wrapper_provider(session, wrapper.base_url).generate_images(request)
    assert images == [GeneratedImage(data=FAKE_PNG)] * 2
    (recorded,) = wrapper.requests
    assert recorded.path == "/openai/image"
    assert recorded.json == {
        "prompt": "A cute baby sea otter",
        "n": 2,
        "size": "1024x1024",
        "response_format": "b64_json",
    }


@pytest.mark.parametrize(
    "data",
    [
        ["https://cdn.example/otter.png"],
        [{"url": "https://cdn.example/otter.png"}],
        {"created": 1, "data": [{"url": "https://cdn.example/otter.png"}]},
    ],
    ids=["bare-urls", "openai-items", "whole-openai-answer"],
)
async def test_wrapper_image_answers_in_any_shape_give_the_urls(wrapper, session, data) -> None:
    wrapper.enqueue_image(ImageReply(data))
    request = ImageRequest(model="", prompt="otter", response_format="url", size="256x256")
    images = await wrapper_provider(session, wrapper.base_url).generate_images(request)
    assert images == [GeneratedImage(url="https://cdn.example/otter.png")]
    assert wrapper.requests[0].json["response_format"] == "url"


async def test_wrapper_image_error_line_is_classified(wrapper, session) -> None:
    wrapper.enqueue_image(
        ErrorResponse(200, {"code": 1, "data": CONTENT_POLICY, "message": "error"})
    )
    with pytest.raises(ContentRejected):
        await wrapper_provider(session, wrapper.base_url).generate_images(GENERATE)


async def test_wrapper_image_500_is_unavailable(wrapper, session) -> None:
    wrapper.enqueue_image(ErrorResponse(500, "Internal Server Error", content_type="text/plain"))
    with pytest.raises(Unavailable):
        await wrapper_provider(session, wrapper.base_url).generate_images(GENERATE)


async def test_wrapper_refuses_images_in_chat_and_edits(wrapper, session) -> None:
    provider = wrapper_provider(session, wrapper.base_url)
    with pytest.raises(Unsupported):
        _ = [e async for e in provider.stream_chat(vision_request(data_url(PNG)))]
    with pytest.raises(Unsupported):
        await provider.edit_image(ImageEditRequest(model="m", prompt="x", image=PNG))
    assert wrapper.requests == []


# --- service failover ---------------------------------------------------------------------


async def test_images_fail_over_from_a_provider_without_the_endpoint(
    fake, wrapper, session
) -> None:
    edit = ImageEditRequest(model="dall-e-2", prompt="a hat", image=PNG)
    service = ProviderService(
        [
            (
                ProviderConfig("wrapper", wrapper.base_url, kind="wrapper"),
                wrapper_provider(session, wrapper.base_url),
            ),
            (ProviderConfig("fake", fake.base_url), openai(session, fake.base_url)),
        ]
    )
    assert await service.edit_image(edit) == [GeneratedImage(data=FAKE_PNG)]
    assert [r.path for r in fake.requests] == ["/v1/images/edits"]


async def test_images_fail_over_after_a_5xx_to_the_next_provider(fake, session) -> None:
    async with FakeProvider() as backup:
        fake.enqueue_images(
            ErrorResponse(503, {"error": {"message": "busy", "type": "server_error"}})
        )
        backup.enqueue_images(ImagesAnswer([b64_item(PNG)]))
        service = ProviderService(
            [
                (
                    ProviderConfig("primary", fake.base_url),
                    openai(session, fake.base_url, "primary"),
                ),
                (
                    ProviderConfig("backup", backup.base_url),
                    openai(session, backup.base_url, "backup"),
                ),
            ]
        )
        assert await service.generate_images(GENERATE) == [GeneratedImage(data=PNG)]
        assert len(fake.requests) == len(backup.requests) == 1


async def test_a_content_refusal_is_not_failed_over(fake, session) -> None:
    async with FakeProvider() as backup:
        fake.enqueue_images(ErrorResponse(400, CONTENT_POLICY))
        service = ProviderService(
            [
                (
                    ProviderConfig("primary", fake.base_url),
                    openai(session, fake.base_url, "primary"),
                ),
                (
                    ProviderConfig("backup", backup.base_url),
                    openai(session, backup.base_url, "backup"),
                ),
            ]
        )
        with pytest.raises(ContentRejected):
            await service.generate_images(GENERATE)
        assert backup.requests == []


async def test_vision_chat_fails_over_from_the_wrapper_to_a_provider_that_sees(
    fake, wrapper, session
) -> None:
    service = ProviderService(
        [
            (
                ProviderConfig("wrapper", wrapper.base_url, kind="wrapper"),
                wrapper_provider(session, wrapper.base_url),
            ),
            (ProviderConfig("fake", fake.base_url), openai(session, fake.base_url)),
        ]
    )
    events = [e async for e in service.stream_chat(vision_request(data_url(PNG)))]
    assert [e.provider for e in events if isinstance(e, StreamStart)] == ["wrapper", "fake"]
    assert "[1 image(s)]" in "".join(e.text for e in events if isinstance(e, TextDelta))
