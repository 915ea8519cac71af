"""Token estimates for requests whose provider reports no usage."""

from webapp.core.token_estimate import IMAGE_TOKENS, MESSAGE_OVERHEAD, prompt_tokens, text_tokens


def test_latin_text_is_about_four_characters_a_token() -> None:
    assert text_tokens("") == 0
    assert text_tokens("abcd") == 1
    assert text_tokens("abcde") == 2
    assert text_tokens("x" * 400) == 100


def test_cjk_characters_count_one_token_each() -> None:
    assert text_tokens("你好世界") == 4
    assert text_tokens("こんにちは") == 5
    assert text_tokens("안녕") == 2
    assert text_tokens("你好 ok") == 2 + 1  # two ideographs, then " ok" (3 chars → 1 token)


def test_a_request_counts_messages_parts_tool_calls_and_tool_schemas() -> None:
    messages = [
        {"role": "system", "content": "x" * 40},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "y" * 8},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        },
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "calc", "arguments": '{"e": "1+1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "2"},
    ]
    expected = 4 * MESSAGE_OVERHEAD + 10 + 2 + IMAGE_TOKENS + 1 + 3 + 1
    assert prompt_tokens(messages) == expected
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {}}}]
    assert prompt_tokens(messages, tools) > expected
