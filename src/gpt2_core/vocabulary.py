"""Vocabulary: every token of a tokenizer and its id, and the id -> token and id -> bytes tables decoding reads.

Three kinds of token share one id space: the BPE's tokens (bytes and merge results), the vocabulary file's other
entries (GPT-2's `<|endoftext|>`, 50256), and added tokens (`add_tokens`, `add_special_tokens`, or saved ones).
The vocabulary file's other entries are matched in text like added special tokens.
"""

from __future__ import annotations

from itertools import chain
from typing import Iterable, Mapping

from .added_tokens import AddedEntry, AddedTokens
from .bpe import EOS_TOKEN, ByteLevelBPE


class Vocabulary:
    """The tokens of `bpe`, the vocabulary's `extra` entries (None: GPT-2's, <|endoftext|> after the BPE tokens)
    and the `added` tokens. `version` counts the changes to how text encodes."""

    def __init__(self, bpe: ByteLevelBPE, extra: Mapping[str, int] | None, added: Iterable[AddedEntry]):
        self.bpe = bpe
        self.extra = dict(extra) if extra is not None else {EOS_TOKEN: len(bpe.tokens)}
        self.base_size = max(chain((len(bpe.tokens) - 1,), self.extra.values())) + 1  # vocab.json's
        self.added = AddedTokens(added)
        for content, index in self.extra.items():  # vocabulary entries without a merge act as specials
            self.added.setdefault(content, AddedEntry(content, index, special=True))
        self.size = max(chain((self.base_size,), (t.id + 1 for t in self.added.values())))
        self.version = 0
        self.changed()

    def changed(self) -> None:
        self.added.refresh()
        self.version += 1
        self._tokens: list[str | None] | None = None  # rebuilt on the next use
        self._bytes: list[bytes] | None = None

    def lookup(self, token: str) -> int | None:
        added = self.added.get(token)
        if added is not None:
            return added.id
        index = self.bpe.encoder.get(token)
        return index if index is not None else self.extra.get(token)

    def add(self, content: str, *, special: bool) -> bool:
        """Match `content` in text from now on (a token of the vocabulary keeps its id, a new one gets the next
        id); returns whether it was not an added token before. Adding a token again as special marks it so."""
        existing = self.added.get(content)
        if existing is not None:
            if special and not existing.special:
                self.added[content] = AddedEntry(content, existing.id, special=True)
                self.changed()
            return False
        index = self.bpe.encoder.get(content)
        if index is None:
            index = self.extra.get(content, self.size)
        self.added[content] = AddedEntry(content, index, special=special)
        self.size = max(self.size, index + 1)
        self.changed()
        return True

    def base_vocab(self) -> dict[str, int]:
        """vocab.json's content: the BPE tokens and the extra entries, in id order."""
        vocab = dict(self.bpe.encoder)
        vocab.update(self.extra)
        return dict(sorted(vocab.items(), key=lambda item: item[1]))

    def tokens(self) -> list[str | None]:
        """Token of each id (None: an id no token has)."""
        if self._tokens is None:
            table: list[str | None] = list(self.bpe.tokens) + [None] * (self.size - len(self.bpe.tokens))
            for content, index in chain(self.extra.items(), ((t.content, t.id) for t in self.added.values())):
                table[index] = content
            self._tokens = table
        return self._tokens

    def token_bytes(self) -> list[bytes]:
        """Bytes of each id: a BPE token's bytes, or an added token's text as UTF-8."""
        if self._bytes is None:
            table = list(self.bpe.token_bytes) + [b""] * (self.size - len(self.bpe.tokens))
            for content, index in self.extra.items():
                table[index] = content.encode("utf-8")
            for token in self.added.values():
                if token.id >= len(self.bpe.tokens) or self.bpe.tokens[token.id] != token.content:
                    table[token.id] = token.content.encode("utf-8")
            self._bytes = table
        return self._bytes

    def check_id(self, index: int) -> int:
        if not 0 <= index < self.size or self.tokens()[index] is None:
            raise ValueError(f"Token id {index} is not in the vocabulary (ids are 0..{self.size - 1})")
        return index

    def check_ids(self, ids: list[int]) -> None:
        if ids and (min(ids) < 0 or max(ids) >= self.size):
            bad = next(i for i in ids if not 0 <= i < self.size)
            raise ValueError(f"Token id {bad} is not in the vocabulary (ids are 0..{self.size - 1})")
