"""Splitting rendered answers into Telegram messages: block boundaries, UTF-16, entities."""

from __future__ import annotations

from bot.streaming.render import Entity, Rendered, render_markdown, utf16_len
from bot.streaming.split import split_rendered


def test_short_text_is_one_part():
    rendered = Rendered("hello", (Entity("bold", 0, 5),))
    assert split_rendered(rendered) == [rendered]


def test_long_text_splits_at_paragraph_breaks_within_the_limit():
    paragraphs = [f"paragraph {i} " + "word " * 60 for i in range(40)]
    text = "\n\n".join(paragraphs)
    parts = split_rendered(Rendered(text), limit=1000)
    assert all(utf16_len(p.text) <= 1000 for p in parts)
    assert all(p.text.endswith("\n\n") or p is parts[-1] for p in parts)
    assert "".join(p.text for p in parts) == text


def test_limit_is_counted_in_utf16_units_so_emoji_never_overflow():
    text = "😀" * 3000  # 6000 UTF-16 units, no spaces to cut at
    parts = split_rendered(Rendered(text), limit=4096)
    assert [utf16_len(p.text) for p in parts] == [4096, 1904]
    assert "".join(p.text for p in parts) == text


def test_code_block_spanning_a_split_is_closed_and_reopened_with_its_language():
    code = "\n".join(f"print({i})" for i in range(400))
    rendered = render_markdown("Intro\n\n```python\n" + code + "\n```\n\nOutro")
    parts = split_rendered(rendered, limit=1500)
    assert len(parts) >= 3
    pre = [[e for e in p.entities if e.type == "pre"] for p in parts]
    assert all(len(entities) == 1 for entities in pre[:-1])
    assert {e.language for entities in pre for e in entities} == {"python"}
    for part, entities in zip(parts, pre, strict=True):
        for e in entities:
            assert e.offset + e.length <= utf16_len(part.text)


def test_a_paragraph_break_inside_code_is_not_taken_as_a_paragraph():
    code = "line\n\nline\n" * 50
    rendered = Rendered("x" * 10 + "\n" + code, (Entity("pre", 11, len(code)),))
    parts = split_rendered(rendered, limit=300)
    # Cuts inside the code block fall after a single line break, never leaving a blank
    # line as the first line of the next part.
    assert all(not p.text.startswith("\n") for p in parts)


def test_entities_are_clipped_and_shifted_into_each_part():
    text = "a" * 50 + "b" * 50
    parts = split_rendered(Rendered(text, (Entity("bold", 40, 20),)), limit=50)
    assert parts[0].entities == (Entity("bold", 40, 10),)
    assert parts[1].entities == (Entity("bold", 0, 10),)


def test_rendering_any_prefix_of_markdown_never_raises_and_keeps_offsets_in_range():
    markdown = (
        "# Title\n\nSome **bold** and _italic_ and `code` and [a link](http://e.x).\n\n"
        "> quote\n\n- one\n- two\n\n```js\nconsole.log('hi')\n```\n\n中文 **粗体** 😀 done."
    )
    for end in range(len(markdown) + 1):
        rendered = render_markdown(markdown[:end])
        length = utf16_len(rendered.text)
        for e in rendered.entities:
            assert e.offset >= 0, (end, e)
            assert e.offset + e.length <= length, (end, e)
