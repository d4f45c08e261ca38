"""GPT-2's byte-level alphabet: each of the 256 byte values spelled as one printable character.

BPE tokens are strings in this alphabet ("Ġworld" is b" world"), which is how vocab.json and merges.txt write them.
"""

from __future__ import annotations


def bytes_to_unicode() -> list[str]:
    """GPT-2's printable spelling of the 256 byte values: list index = byte, item = one character.

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, NBSP, soft hyphen) are moved to
    U+0100.. in byte order, so every token is a readable string without spaces (space is "Ġ", newline "Ċ").
    """
    chars: list[str | None] = [None] * 256
    for b in (*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)):
        chars[b] = chr(b)
    shifted = 0
    for b in range(256):
        if chars[b] is None:
            chars[b] = chr(0x100 + shifted)
            shifted += 1
    return chars  # type: ignore[return-value]


BYTE_CHARS = bytes_to_unicode()
# Token ids 0..255 of GPT-2 are the byte tokens in this order: printable bytes first, then the shifted ones.
BYTE_TOKEN_ORDER = sorted(range(256), key=lambda b: ord(BYTE_CHARS[b]))
# str.translate tables: Latin-1 character (= one byte) -> byte-level character, and back.
_LATIN1_TO_BYTE_LEVEL = "".join(BYTE_CHARS)
BYTE_LEVEL_TO_LATIN1 = {ord(c): b for b, c in enumerate(BYTE_CHARS)}


def to_byte_level(text: str) -> str:
    """The byte-level spelling of `text`'s UTF-8 bytes ("Hello world" -> "HelloĠworld")."""
    return text.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)


def to_byte_level_bytes(data: bytes) -> str:
    """The byte-level spelling of `data`."""
    return data.decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)


def byte_level_to_bytes(token: str) -> bytes:
    """Inverse of `to_byte_level`; characters outside the byte alphabet stand for their own UTF-8 bytes."""
    try:
        return token.translate(BYTE_LEVEL_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:  # an added token's text, e.g. "<pad> ü"
        return b"".join(bytes([BYTE_LEVEL_TO_LATIN1[ord(c)]]) if ord(c) in BYTE_LEVEL_TO_LATIN1
                        else c.encode("utf-8") for c in token)
