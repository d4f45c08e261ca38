"""Added tokens: strings cut out of a text before BPE, each standing for one id (`<|endoftext|>`, `[PAD]`, ...).

Like transformers: special tokens (and others marked not `normalized`) are matched first, then the others; each
pass matches leftmost-longest.
"""

from __future__ import annotations

import re


class AddedEntry:
    """An added token: its id and how it matches (specials are matched before the others)."""

    __slots__ = ("content", "id", "special", "normalized")

    def __init__(self, content: str, id: int, special: bool, normalized: bool | None = None):
        self.content, self.id, self.special = content, id, special
        self.normalized = (not special) if normalized is None else normalized

    def to_json(self) -> dict:
        return {"id": self.id, "content": self.content, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": self.normalized, "special": self.special}


class AddedTokens(dict):
    """content -> AddedEntry, and the cut of a text at them. Call `refresh()` after changing the entries."""

    def __init__(self, entries=()):
        super().__init__((entry.content, entry) for entry in entries)
        self.refresh()

    def refresh(self) -> None:
        """Compile the patterns that cut the added tokens out of a text."""
        self.passes = []
        for group in ([t for t in self.values() if not t.normalized], [t for t in self.values() if t.normalized]):
            if group:
                contents = sorted((t.content for t in group), key=len, reverse=True)  # longest first
                self.passes.append((re.compile("|".join(map(re.escape, contents))), {t.content: t for t in group}))
        self.contents = list(self)

    def split(self, text: str) -> list[str | AddedEntry]:
        """`text` cut at added tokens: strings to encode and the added tokens found, in order."""
        contents = self.contents
        if len(contents) == 1:  # GPT-2 as shipped: only <|endoftext|>
            if contents[0] not in text:
                return [text]
        elif len(contents) <= 8:  # `in` (a fast substring search) beats a regex for a few tokens
            if not any(content in text for content in contents):
                return [text]
        elif not any(pattern.search(text) for pattern, _ in self.passes):
            return [text]
        segments: list[str | AddedEntry] = [text]
        for pattern, tokens in self.passes:
            cut: list[str | AddedEntry] = []
            for segment in segments:
                if not isinstance(segment, str):
                    cut.append(segment)
                    continue
                pos = 0
                for match in pattern.finditer(segment):
                    if match.start() > pos:
                        cut.append(segment[pos:match.start()])
                    cut.append(tokens[match.group()])
                    pos = match.end()
                if pos < len(segment):
                    cut.append(segment[pos:])
            segments = cut
        return segments
