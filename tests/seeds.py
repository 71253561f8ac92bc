"""Payloads recorded in the seed documents, verbatim: providers' error bodies and streams."""
# ruff: noqa: E501 - the recorded payloads are copied verbatim, one line each

from __future__ import annotations

import json

import pytest

from bot.errors import (
    AuthError,
    BadRequest,
    ContentRejected,
    ModelNotFound,
    QuotaError,
    Unavailable,
)


def sse(*lines: str, newline: str = "\n") -> bytes:
    """Lines as an event stream: each followed by a blank line."""
    return "".join(f"{line}{newline}{newline}" for line in lines).encode()


# Seed 003 (Talk-Bot), the streamed answer to 1+1=?
SEED_003_STREAM = sse(
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"role":"assistant"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"1"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"+"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"1"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"="},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"2"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{"content":"。"},"index":0,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-7MCqtZcvn8rKPLlY55821IkGgfkXT","object":"chat.completion.chunk","created":1685526975,"model":"gpt-3.5-turbo-1106","system_fingerprint":"fp_eeff13170a","choices":[{"delta":{},"index":0,"finish_reason":"stop"}]}',
    "data: [DONE]",
)

# Seed 004 (OhMyGPT), Claude through the OpenAI format: text, a tool call, a usage chunk
SEED_004_TOOL_STREAM = sse(
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":"I\'ll"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" help"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" you find out"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" the current weather in Boston"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":"."},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" I"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":"\'ll"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" retrieve"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" the current"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" weather information"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" for"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":" you"},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":"."},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"toolu_01RdBwK8GsN7sm6dyDteDc3e","type":"function","function":{"name":"get_current_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"locati"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"on\\": \\"Bosto"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"n, M"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"A\\""}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":", \\"unit\\": \\"f"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ahrenh"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"eit\\"}"}}]},"logprobs":null,"finish_reason":null}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","system_fingerprint":"fp_t5VoJU6E","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}',
    'data: {"id":"chatcmpl-t5VoJU6Et68AzGIMAaDYjGydoQ8HQ","object":"chat.completion.chunk","created":1730992326,"model":"claude-3-5-haiku","choices":[],"usage":{"prompt_tokens":376,"completion_tokens":100,"total_tokens":476,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}',
    "data: [DONE]",
)

# Seed 004, Gemini vision: Chinese text, no finish_reason before [DONE]
SEED_004_VISION_STREAM = sse(
    'data: {"id":"chatcmpl-6tzfeCctklU06xs8BmDo3b1YcCold","object":"chat.completion.chunk","created":1702562069,"model":"gemini-pro-vision","choices":[{"index":0,"delta":{"role":"assistant","content":" 这是五个不同角色的表情包。他们分别是:\\n- 胡桃\\n- 宵宫\\n- 早柚\\n- 刻晴\\n- 珊瑚"},"finish_reason":null}]}',
    'data: {"id":"chatcmpl-6tzfeCctklU06xs8BmDo3b1YcCold","object":"chat.completion.chunk","created":1702562069,"model":"gemini-pro-vision","choices":[{"index":0,"delta":{"role":"assistant","content":"宫心海"},"finish_reason":null}]}',
    "data: [DONE]",
)

# Seed 002 (AI小火箭), Reduce-Stream chat
SEED_002_REDUCE_CHAT = sse(
    'data: [{"role":"assistant"}]',
    'data: [{"content":"闪"}]',
    'data: [{"content":"光"}]',
    'data: [{"content":"的"}]',
    'data: [{"content":"夜"}]',
    'data: [{"content":"晚"}]',
    'data: [{"content":"，"}]',
    "data: [{}]",
    "data: [DONE]",
)

# Seed 002, Reduce-Stream completions
SEED_002_REDUCE_COMPLETION = sse(
    'data: ["\\n"]',
    'data: ["\\n"]',
    'data: ["清"]',
    "data: [DONE]",
)


def anthropic_events(*lines: str, newline: str = "\n") -> bytes:
    """``event: <type>`` + ``data: <json>`` pairs, each followed by a blank line."""
    out = []
    for line in lines:
        kind = json.loads(line)["type"]
        out.append(f"event: {kind}{newline}data: {line}{newline}{newline}")
    return "".join(out).encode()


# The native stream behind seed 004's Claude tool example: OhMyGPT translates exactly these
# events into SEED_004_TOOL_STREAM ("content_block_delta/text_delta -> delta.content",
# "tool_use -> tool_calls, index from 1-based to 0-based", "message_delta tool_use ->
# finish_reason tool_calls", "message_stop -> usage, [DONE]").
SEED_004_NATIVE_TOOL_STREAM = anthropic_events(
    '{"type":"message_start","message":{"id":"msg_01RdBwK8GsN7sm6dyDteDc3e","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":376,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    '{"type":"ping"}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I\'ll"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" help"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" you find out"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the current weather in Boston"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"."}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" I"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\'ll"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" retrieve"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the current"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather information"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" you"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"."}}',
    '{"type":"content_block_stop","index":0}',
    '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01RdBwK8GsN7sm6dyDteDc3e","name":"get_current_weather","input":{}}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"locati"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\\": \\"Bosto"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"n, M"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"A\\""}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \\"unit\\": \\"f"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ahrenh"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"eit\\"}"}}',
    '{"type":"content_block_stop","index":1}',
    '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":100}}',
    '{"type":"message_stop"}',
)

# Seed 001 (冰橙): these come back with HTTP 200; ``codes`` is the provider's own numbering.
SEED_001_BODIES = [
    pytest.param(
        '{"codes":900,"mess":"密钥错误或已过期，请通过微信访问yewu.bcwhkj.cn个人中心获取","data":"token"}',
        AuthError,
        id="001-key-wrong-or-expired",
    ),
    pytest.param(
        '{"codes":400,"mess":"非法字符。请勿提交","data":""}',
        ContentRejected,
        id="001-illegal-content",
    ),
    pytest.param(
        '{"codes":402,"mess":"提交问题涉及内容安全，请修改问题","data":""}',
        ContentRejected,
        id="001-content-safety",
    ),
    pytest.param(
        '{"codes":300,"mess":"当前额度不足，请充值后继续使用","data":""}',
        QuotaError,
        id="001-quota",
    ),
    pytest.param(
        '{"error":{"code":502,"message":"Bad gateway.","param":null,"type":"cf_bad_gateway"}}',
        Unavailable,
        id="001-cf-bad-gateway",
    ),
]

# Seed 003 (Talk-Bot): its "异常返回示例", one body per case.
SEED_003_BODIES = [
    pytest.param(
        """{ "error": { "message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://vip.gptchatclub.com/api.", "type": "talk_api_error", "param": null, "code": "invalid_api_key" } }""",
        AuthError,
        id="003-no-key",
    ),
    pytest.param(
        """{ "error": { "message": "Incorrect API key provided: sk-1afsp*****************************************k5R2. You can find your API key at https://vip.gptchatclub.com/api.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key" } }""",
        AuthError,
        id="003-wrong-key",
    ),
    pytest.param(
        """{ "error": { "message": "Unsupported model.", "type": "talk_api_error", "param": null, "code": "invalid_model" } }""",
        ModelNotFound,
        id="003-invalid-model",
    ),
    pytest.param(
        """{ "error": { "message": "User quota is not enough.", "type": "talk_api_error", "param": null, "code": "insufficient_user_quota" } }""",
        QuotaError,
        id="003-quota",
    ),
    pytest.param(
        """{ "error": { "message": "Unsupported messages.", "type": "talk_api_error", "param": null, "code": "invalid_messages" } }""",
        BadRequest,
        id="003-invalid-messages",
    ),
    pytest.param(
        """{ "error": { "message": "Internal server error.", "type": "talk_api_error", "param": null, "code": "internal_error" } }""",
        Unavailable,
        id="003-internal-error",
    ),
]

SEED_BODIES = SEED_001_BODIES + SEED_003_BODIES
