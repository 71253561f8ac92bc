"""Pure text rules of the Bot API: UTF-16 lengths, entity checks and the HTML parse mode.

The HTML parser follows TDLib's ``parse_html`` (which the Bot API server uses), so its error
descriptions read like the real ones, byte offsets included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Entity = dict[str, Any]


def word_set(words: str) -> frozenset[str]:
    """A set of names written as one whitespace-separated string, for compact tables."""
    return frozenset(words.split())


# Entity types the Bot API accepts in `entities` (telegram.constants.MessageEntityType).
ENTITY_TYPES = word_set(
    """
    mention hashtag cashtag bot_command url email phone_number bold italic underline
    strikethrough spoiler blockquote expandable_blockquote code pre text_link text_mention
    custom_emoji date_time
    """
)

# Fields of a MessageEntity that Telegram keeps; anything else a client sends is dropped.
_ENTITY_FIELDS = (
    "type",
    "offset",
    "length",
    "url",
    "user",
    "language",
    "custom_emoji_id",
    "unix_time",
    "date_time_format",
)

_SUPPORTED_TAGS = word_set(
    """
    a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote
    """
)
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_NAMED_CHARACTER_REFERENCES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# TDLib's is_space(); the NUL stands for "end of text", which the parser treats as a space.
_SPACES = frozenset(" \t\r\n\v\f\0")
_END = "\0"


class EntityError(ValueError):
    """Entities or markup cannot be parsed; str() is the part after "can't parse entities: "."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of every Telegram offset and limit."""
    return len(text.encode("utf-16-le")) // 2


def check_entities(text: str, entities: object) -> list[Entity]:
    """Validate client-supplied entities against ``text``; return them normalized and sorted."""
    if not isinstance(entities, list):
        raise EntityError("entities must be an array of MessageEntity")
    text_length = utf16_len(text)
    checked: list[Entity] = []
    for index, entity in enumerate(entities):
        if not isinstance(entity, dict):
            raise EntityError(f"entity {index} is not an object")
        kind, offset, length = entity.get("type"), entity.get("offset"), entity.get("length")
        if kind not in ENTITY_TYPES:
            raise EntityError(f"unsupported entity type {kind!r} in entity {index}")
        if not isinstance(offset, int) or not isinstance(length, int):
            raise EntityError(f"entity {index} must have integer offset and length")
        if offset < 0 or length <= 0 or offset + length > text_length:
            raise EntityError(
                f"entity {index} ({kind}) with offset {offset} and length {length} is out of"
                f" range of the text of UTF-16 length {text_length}"
            )
        if kind == "text_link" and not entity.get("url"):
            raise EntityError(f"text_link entity {index} has no url")
        checked.append({key: entity[key] for key in _ENTITY_FIELDS if key in entity})
    return sort_entities(checked)


def sort_entities(entities: list[Entity]) -> list[Entity]:
    """Telegram's order: by offset, and an enclosing entity before the ones nested in it."""
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def strip_formatted(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Trim surrounding whitespace as Telegram does, shifting and clipping the entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    new_length = utf16_len(stripped)
    kept: list[Entity] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(new_length, entity["offset"] + entity["length"] - lead)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def parse_html(text: str) -> tuple[str, list[Entity]]:
    """Turn Telegram-flavoured HTML into plain text and entities, or raise EntityError."""
    return _HtmlParser(text).parse()


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_offset: int
    text_index: int  # index into the output pieces, for <a> without href
    expandable: bool = False


@dataclass
class _HtmlParser:
    source: str
    pos: int = 0
    pieces: list[str] = field(default_factory=list)
    utf16_offset: int = 0
    entities: list[Entity] = field(default_factory=list)
    open_tags: list[_OpenTag] = field(default_factory=list)

    def parse(self) -> tuple[str, list[Entity]]:
        while self.pos < len(self.source):
            char = self.source[self.pos]
            if char == "&":
                decoded = self._character_reference()
                if decoded is not None:
                    self._emit(decoded)
                    continue
            if char != "<":
                self._emit(char)
                self.pos += 1
            elif self._at(self.pos + 1) == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.open_tags:
            name = self.open_tags[-1].name
            raise EntityError(f'Can\'t find end tag corresponding to start tag "{name}"')
        for entity in self.entities:
            if entity["type"] == "code":
                del entity["language"]  # a Bot API code entity has no language
        return "".join(self.pieces), sort_entities(self.entities)

    def _at(self, index: int) -> str:
        return self.source[index] if index < len(self.source) else _END

    def _byte_offset(self, index: int) -> int:
        return len(self.source[:index].encode("utf-8"))

    def _emit(self, piece: str) -> None:
        self.pieces.append(piece)
        self.utf16_offset += utf16_len(piece)

    def _skip_spaces(self) -> None:
        while self.pos < len(self.source) and self.source[self.pos] in _SPACES:
            self.pos += 1

    def _character_reference(self) -> str | None:
        """Decode ``&...;`` at pos (the ``;`` is optional, as in TDLib); None leaves ``&`` as is."""
        start = end = self.pos + 1
        if self._at(start) == "#":
            end += 1
            hexadecimal = self._at(end) == "x"
            if hexadecimal:
                end += 1
            digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
            digits_start = end
            while self._at(end) in digits:
                end += 1
            number = self.source[digits_start:end]
            code = int(number, 16 if hexadecimal else 10) if number else 0
            is_surrogate = 0xD800 <= code <= 0xDFFF
            if code == 0 or code >= 0x10FFFF or end - self.pos >= 10 or is_surrogate:
                return None
            decoded = chr(code)
        else:
            while self._at(end).isascii() and self._at(end).isalpha():
                end += 1
            named = _NAMED_CHARACTER_REFERENCES.get(self.source[start:end])
            if named is None:
                return None
            decoded = named
        self.pos = end + 1 if self._at(end) == ";" else end
        return decoded

    def _start_tag(self) -> None:
        begin = self.pos
        self.pos += 1
        while self._at(self.pos) not in _SPACES and self._at(self.pos) != ">":
            self.pos += 1
        if self.pos >= len(self.source):
            raise EntityError(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
        name = self.source[begin + 1 : self.pos].lower()
        if name not in _SUPPORTED_TAGS:
            raise EntityError(
                f'Unsupported start tag "{name}" at byte offset {self._byte_offset(begin)}'
            )
        tag = _OpenTag(name, "", self.utf16_offset, len(self.pieces))
        while self._at(self.pos) != ">":
            self._skip_spaces()
            if self._at(self.pos) == ">":
                break
            self._attribute(tag, begin)
        if name == "span" and tag.argument != "spoiler":
            raise EntityError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset(begin)}'
            )
        self.pos += 1  # the closing ">"
        self.open_tags.append(tag)

    def _attribute(self, tag: _OpenTag, tag_begin: int) -> None:
        at_tag = f'the tag "{tag.name}" at byte offset {self._byte_offset(tag_begin)}'
        name_begin = self.pos
        while self._at(self.pos) not in _SPACES and self._at(self.pos) not in "=>":
            self.pos += 1
        name = self.source[name_begin : self.pos]
        if not name:
            raise EntityError(f"Empty attribute name in {at_tag}")
        self._skip_spaces()
        if self._at(self.pos) != "=":
            if tag.name == "blockquote" and name == "expandable":
                tag.expandable = True
                return
            raise EntityError(f"Expected equal sign in declaration of an attribute of {at_tag}")
        self.pos += 1
        self._skip_spaces()
        if self.pos >= len(self.source):
            raise EntityError(f"Unclosed start tag {at_tag.removeprefix('the tag ')}")
        value = self._attribute_value(tag_begin)
        if tag.name == "a" and name == "href":
            tag.argument = value
        elif tag.name == "code" and name == "class" and value.startswith("language-"):
            tag.argument = value.removeprefix("language-")
        elif tag.name == "span" and name == "class" and value.startswith("tg-"):
            tag.argument = value.removeprefix("tg-")
        elif tag.name == "tg-emoji" and name == "emoji-id":
            tag.argument = value

    def _attribute_value(self, tag_begin: int) -> str:
        quote = self.source[self.pos]
        if quote not in "'\"":
            # An unquoted value is an HTML name token, which is case-insensitive.
            token_begin = self.pos
            while self._at(self.pos).isascii() and (
                self._at(self.pos).isalnum() or self._at(self.pos) in ".-"
            ):
                self.pos += 1
            if self._at(self.pos) not in _SPACES and self._at(self.pos) != ">":
                raise EntityError(
                    f"Unexpected end of name token at byte offset {self._byte_offset(token_begin)}"
                )
            return self.source[token_begin : self.pos].lower()
        self.pos += 1
        value: list[str] = []
        while self.pos < len(self.source) and self.source[self.pos] != quote:
            if self.source[self.pos] == "&":
                decoded = self._character_reference()
                if decoded is not None:
                    value.append(decoded)
                    continue
            value.append(self.source[self.pos])
            self.pos += 1
        if self.pos >= len(self.source):
            raise EntityError(f"Unclosed start tag at byte offset {self._byte_offset(tag_begin)}")
        self.pos += 1
        return "".join(value)

    def _end_tag(self) -> None:
        begin = self.pos
        if not self.open_tags:
            raise EntityError(f"Unexpected end tag at byte offset {self._byte_offset(begin)}")
        self.pos += 2
        while self._at(self.pos) not in _SPACES and self._at(self.pos) != ">":
            self.pos += 1
        end_name = self.source[begin + 2 : self.pos]
        self._skip_spaces()
        if self._at(self.pos) != ">":
            raise EntityError(f"Unclosed end tag at byte offset {self._byte_offset(begin)}")
        self.pos += 1
        tag = self.open_tags.pop()
        # As in TDLib, "</>" closes whatever is open and the name is compared case-sensitively.
        if end_name and end_name != tag.name:
            raise EntityError(
                f"Unmatched end tag at byte offset {self._byte_offset(begin)},"
                f' expected "</{tag.name}>", found "</{end_name}>"'
            )
        length = self.utf16_offset - tag.utf16_offset
        if length > 0:
            self._add_entity(tag, length, begin)

    def _add_entity(self, tag: _OpenTag, length: int, tag_begin: int) -> None:
        offset = tag.utf16_offset
        extra: Entity = {}
        if tag.name in _SIMPLE_TAGS:
            kind = _SIMPLE_TAGS[tag.name]
        elif tag.name == "a":
            kind = "text_link"
            url = tag.argument or "".join(self.pieces[tag.text_index :])
            extra["url"] = url if "://" in url else f"http://{url}"
        elif tag.name == "tg-emoji":
            if not tag.argument.isdigit():
                raise EntityError(
                    "Invalid custom emoji identifier specified at byte offset"
                    f" {self._byte_offset(tag_begin)}"
                )
            kind = "custom_emoji"
            extra["custom_emoji_id"] = tag.argument
        elif tag.name == "blockquote":
            kind = "expandable_blockquote" if tag.expandable else "blockquote"
        elif tag.name == "code":
            # Kept until parse() ends: <pre><code class="language-x"> hands it to the pre.
            kind = "code"
            extra["language"] = tag.argument
        else:
            kind = "pre"
            last = self.entities[-1] if self.entities else None
            if (
                last
                and last["type"] == "code"
                and (last["offset"], last["length"])
                == (
                    offset,
                    length,
                )
            ):
                # <pre><code>...</code></pre> is one pre entity, with the code's language.
                self.entities.pop()
                if last["language"]:
                    extra["language"] = last["language"]
        self.entities.append({"type": kind, "offset": offset, "length": length, **extra})
