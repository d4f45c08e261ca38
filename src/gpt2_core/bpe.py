"""Byte-level BPE for GPT-2: the vocabulary files, the pre-tokenization pattern and a cached encoder.

Ids equal tiktoken's "gpt2" encoding (the r50k pattern with OpenAI's ranks): text is cut into pieces by
`GPT2_PATTERN`, each piece's UTF-8 bytes are merged pairwise, always merging the adjacent pair whose
concatenation has the lowest rank (leftmost on ties), and each final part is a token id.

The shipped vocabulary is one file, `vocab/merges.txt` (the transformers format). It is all we need: the 256 byte
tokens come first in GPT-2's byte order, then merge k makes token 256 + k, then `<|endoftext|>` is 50256. It is
derived from OpenAI's ranks by `gpt2_core.bpe_ranks` (run `python -m gpt2_core.bpe_ranks RANKS.tiktoken OUT_DIR`).

Unicode: letters and numbers are whatever the `regex` module's tables say. tiktoken's Rust regex carries older
tables, so characters assigned after Unicode 16 split differently: with regex 2026.5.9 and tiktoken 0.14 that is
4,657 code points (all new in Unicode 17, e.g. CJK Extension J U+323B0..U+33479; none assigned in Unicode 14;
`python bench/bench_tokenizer.py --unicode` lists them). We follow `regex` rather than freeze a table of
exceptions: the choice costs nothing on text written before 2025 and follows Unicode as `regex` updates.

Speed: a text is cut into "units" -- a word with the space before it and any whitespace after it: the text is
cut before every space followed by a non-whitespace character, where a piece always starts -- and units are
cached, so a word seen before costs one look-up. Short texts go unit by unit through dict caches of tuples
(`_split_units`: str.replace / str.split, C speed). Long texts take the bulk path (`gpt2_core.bpe_bulk`), which
makes no Python object per word: units and pieces are found by array operations on the text's code points, looked
up in exact hash indexes, and all new pieces of a text are merged together, in lockstep with numpy. Every cache is
bounded (`UNIT_CACHE_*`, `PIECE_CACHE_*`, `bpe_bulk.BULK_*`: a few hundred MB at worst).
"""

from __future__ import annotations

import gc
import heapq
import operator
import os
import re
import sys
import threading
from contextlib import contextmanager
from itertools import accumulate, islice, repeat
from typing import TYPE_CHECKING, Iterable, Mapping

import regex

if TYPE_CHECKING:
    from .bpe_bulk import _BulkEncoder, _LockstepMerger

# OpenAI's GPT-2 pre-tokenization pattern (tiktoken's r50k_base `pat_str`, same matches as the original
# `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same pattern for stdlib `re` with ASCII classes: on pure-ASCII text it cuts exactly like GPT2_PATTERN
# (\s here is [ \t\n\r\f\v], Unicode White_Space restricted to ASCII) and runs about twice as fast as `regex`.
_ASCII_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""
_PIECES = regex.compile(GPT2_PATTERN)
_ASCII_PIECES = re.compile(_ASCII_PATTERN, re.ASCII)

# Unicode White_Space, which is what `\s` means to `regex` and to tiktoken (Python's str.isspace adds \x1c-\x1f).
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
              "\u2028\u2029\u202f\u205f\u3000")
_WS_NOT_SPACE_ASCII = "\t\n\x0b\x0c\r"
_WS_NON_ASCII = WHITESPACE[6:]

MERGES_HEADER = "#version: 0.2"
EOS_TOKEN = "<|endoftext|>"
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab")
PAIRS_FILE = "pairs.npy"  # `mergeable_pairs` of merges.txt (python -m gpt2_core.bpe_ranks writes both)


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
_BYTE_LEVEL_TO_LATIN1 = {ord(c): b for b, c in enumerate(BYTE_CHARS)}


def to_byte_level(text: str) -> str:
    """The byte-level spelling of `text`'s UTF-8 bytes ("Hello world" -> "HelloĠworld")."""
    return text.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)


def byte_level_to_bytes(token: str) -> bytes:
    """Inverse of `to_byte_level`; characters outside the byte alphabet stand for their own UTF-8 bytes."""
    try:
        return token.translate(_BYTE_LEVEL_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:  # an added token's text, e.g. "<pad> ü"
        return b"".join(bytes([_BYTE_LEVEL_TO_LATIN1[ord(c)]]) if ord(c) in _BYTE_LEVEL_TO_LATIN1
                        else c.encode("utf-8") for c in token)


def to_byte_level_bytes(data: bytes) -> str:
    return data.decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)


class _BoundedCache(dict):
    """A dict that computes missing values and stays bounded: two generations of at most `max_entries` entries
    and `max_chars` key characters each. When the young one fills up it becomes the old one (the previous old
    one is dropped); a key found in the old generation is moved back to the young one. Hits are plain C dict
    lookups, so `map(cache.__getitem__, keys)` runs at C speed. Keys longer than `max_key` are never stored."""

    __slots__ = ("compute", "max_entries", "max_chars", "max_key", "chars", "old")

    def __init__(self, compute, *, max_entries: int, max_chars: int, max_key: int):
        super().__init__()
        self.compute = compute
        self.max_entries, self.max_chars, self.max_key = max_entries, max_chars, max_key
        self.chars = 0
        self.old: dict = {}

    def __missing__(self, key):
        value = self.old.get(key)
        if value is None:
            value = self.compute(key)
        size = len(key)
        if size <= self.max_key:
            if len(self) >= self.max_entries or self.chars + size > self.max_chars:
                self.old = dict(self)
                self.clear()
                self.chars = 0
            self[key] = value
            self.chars += size
        return value

    def add_many(self, keys: list, values: list) -> None:
        keys, values = keys[:self.max_entries], values[:self.max_entries]
        size = sum(map(len, keys))
        if len(self) + len(keys) > self.max_entries or self.chars + size > self.max_chars:
            self.old = dict(self)
            self.clear()
            self.chars = 0
        self.update(zip(keys, values))
        self.chars += size

    def reset(self) -> None:
        self.clear()
        self.old = {}
        self.chars = 0


# Cache bounds (per generation; at most twice this is held). Units are a word with the space before it (and any
# whitespace after it), so 2**18 of them cover the distinct words of several MB of text; pieces are what BPE sees.
UNIT_CACHE_ENTRIES, UNIT_CACHE_CHARS, UNIT_MAX_CHARS = 1 << 18, 1 << 22, 256
PIECE_CACHE_ENTRIES, PIECE_CACHE_CHARS, PIECE_MAX_CHARS = 1 << 17, 1 << 21, 256

# Texts from _BULK_MIN_CHARS characters on take the bulk path (`bpe_bulk._BulkEncoder`) if numpy is loaded already,
# else from _BULK_MIN_CHARS_WITHOUT_NUMPY on (its import costs ~0.1 s: what the unit path spends on ~100 KB of new
# text). The bulk path's chunk size and cache bounds (`BULK_*`) are in bpe_bulk.
_BULK_MIN_CHARS, _BULK_MIN_CHARS_WITHOUT_NUMPY = 1 << 13, 1 << 17
# One long text at a time goes through the bulk caches (they are not thread-safe); a long text that finds them in
# use takes the unit path instead of waiting (so a process forked while they were in use never waits either).
_BULK_LOCK = threading.Lock()
_SHORT_TEXT = 256  # characters
_PLACEHOLDER = "\x01"  # stands for a space followed by whitespace, so that split(" ") does not cut there
_NO_RANK = 1 << 62
_LONG_WORD = 128  # byte-level characters; longer words use the O(n log n) heap merge
# Lockstep numpy merging pays for its import (~0.1 s) from about this many bytes of words to merge (the Python
# loop merges ~1 MB/s); when numpy is loaded already it is the faster one from a few KB on.
_LOCKSTEP_MIN_BYTES, _LOCKSTEP_MIN_BYTES_NUMPY_LOADED = 1 << 18, 1 << 12


class ByteLevelBPE:
    """GPT-2's byte-level BPE over a vocabulary of byte-level token strings.

    `encoder` maps the byte-level spelling of each mergeable token (the 256 bytes and every merge result) to its
    id; `merges` (pairs, in rank order) decide the merge order. When `merges` is None the ids are the ranks
    (GPT-2's files: id order is merge order). Special tokens like `<|endoftext|>` are not here: they are the
    tokenizer's added tokens.

        >>> bpe = ByteLevelBPE.builtin()
        >>> bpe.encode("Hello world")
        [15496, 995]
    """

    def __init__(self, encoder: dict[str, int], *, ranks: dict[str, int] | None = None,
                 merges: list[tuple[str, str]] | None = None, merges_text: str | None = None):
        self.encoder = encoder
        size = max(encoder.values()) + 1 if encoder else 0
        self.tokens: list[str | None] = [None] * size
        for token, index in encoder.items():
            self.tokens[index] = token
        missing = [c for c in BYTE_CHARS if c not in encoder]
        if missing:
            raise ValueError(f"The vocabulary lacks byte tokens {missing[:8]!r}: a byte-level BPE needs all 256")
        self.ranks = encoder if ranks is None else ranks
        self._merge_pairs = merges
        self._merges_text = merges_text
        self._token_bytes: list[bytes] | None = None
        self._lockstep: _LockstepMerger | None = None  # built on the first large batch of new words
        self._bulk: _BulkEncoder | None = None  # built on the first long text
        self._pairs_file: str | None = None  # a saved `mergeable_pairs` table (the shipped vocabulary's)
        # True when merging any token's bytes gives back that token, so the batch merge needs no vocabulary
        # look-up first (GPT-2's vocabulary; unknown for others, which then look every new piece up)
        self._tokens_merge_to_themselves = False
        self.units = _BoundedCache(self._encode_unit, max_entries=UNIT_CACHE_ENTRIES,
                                   max_chars=UNIT_CACHE_CHARS, max_key=UNIT_MAX_CHARS)
        self.pieces = _BoundedCache(self._encode_piece, max_entries=PIECE_CACHE_ENTRIES,
                                    max_chars=PIECE_CACHE_CHARS, max_key=PIECE_MAX_CHARS)

    def __getstate__(self) -> dict:
        # the numpy machinery holds the numpy module, which does not pickle; it is rebuilt on first use
        return {**self.__dict__, "_lockstep": None, "_bulk": None}

    # ----------------------------------------------------------------------------------------------- loading
    _builtin: "ByteLevelBPE | None" = None

    @classmethod
    def builtin(cls) -> "ByteLevelBPE":
        """The GPT-2 vocabulary shipped in the package (shared: its caches serve every tokenizer using it)."""
        if cls._builtin is None:
            with open(os.path.join(BUILTIN_DIR, "merges.txt"), encoding="utf-8") as f:
                cls._builtin = cls.from_merges_text(f.read())
            cls._builtin._pairs_file = os.path.join(BUILTIN_DIR, PAIRS_FILE)
            cls._builtin._tokens_merge_to_themselves = True  # checked by tests/core/test_tokenizer_vocab.py
        return cls._builtin

    @classmethod
    def from_merges_text(cls, text: str) -> "ByteLevelBPE":
        """A vocabulary whose ids follow merge order (GPT-2's): 256 byte tokens, then one token per merge."""
        body = text.split("\n", 1)[1] if text.startswith("#version") else text
        body = body.rstrip("\n")
        # Each merge line is "left right" and byte-level tokens never hold a space: dropping the spaces spells the
        # merged tokens in id order, with no Python loop.
        merged = body.replace(" ", "").split("\n") if body else []
        tokens = [BYTE_CHARS[b] for b in BYTE_TOKEN_ORDER] + merged
        encoder = dict(zip(tokens, range(len(tokens))))
        if len(encoder) != len(tokens):
            raise ValueError("merges.txt produces the same token twice; its ids cannot follow merge order")
        return cls(encoder, merges_text=body)

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], merges: list[tuple[str, str]],
                   ) -> tuple["ByteLevelBPE", dict[str, int]]:
        """The BPE of a vocab.json + merges.txt pair, and the vocabulary entries that are neither a byte nor a
        merge result (`<|endoftext|>` for GPT-2): those are the tokenizer's added tokens."""
        ranks: dict[str, int] = {}
        for number, (left, right) in enumerate(merges):
            if left not in vocab or right not in vocab or left + right not in vocab:
                raise ValueError(f"Merge {number + 1} ({left!r} {right!r}) uses or makes a token that is not in "
                                 "the vocabulary")
            ranks.setdefault(left + right, 256 + number)
        mergeable = set(BYTE_CHARS).union(ranks)
        encoder = {token: index for token, index in vocab.items() if token in mergeable}
        extra = {token: index for token, index in vocab.items() if token not in mergeable}
        same_order = all(encoder[token] == rank for token, rank in ranks.items())
        return cls(encoder, ranks=None if same_order else ranks, merges=list(merges)), extra

    def merges(self) -> list[tuple[str, str]]:
        """The merge pairs in rank order (what merges.txt lists)."""
        if self._merge_pairs is None:
            lines = self._merges_text.split("\n") if self._merges_text else []
            self._merge_pairs = [tuple(line.split(" ")) for line in lines]  # type: ignore[misc]
        return self._merge_pairs  # type: ignore[return-value]

    def merges_text(self) -> str:
        """merges.txt content, header included."""
        if self._merges_text is None:
            self._merges_text = "\n".join(f"{a} {b}" for a, b in self.merges())
        return f"{MERGES_HEADER}\n{self._merges_text}\n"

    @property
    def token_bytes(self) -> list[bytes]:
        """Bytes of each token id (built on first decode: most programs that only encode never need it)."""
        if self._token_bytes is None:
            tokens = [t if t is not None else "" for t in self.tokens]
            try:
                blob = "".join(tokens).translate(_BYTE_LEVEL_TO_LATIN1).encode("latin-1")
                ends = list(accumulate(map(len, tokens)))
                self._token_bytes = [blob[e - len(t):e] for t, e in zip(tokens, ends)]
            except UnicodeEncodeError:  # a token outside the byte alphabet (a special token in the vocab)
                self._token_bytes = list(map(byte_level_to_bytes, tokens))
        return self._token_bytes

    # ---------------------------------------------------------------------------------------------- encoding
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, special tokens treated as ordinary text (tiktoken's `encode_ordinary`)."""
        if len(text) >= _BULK_MIN_CHARS and _BULK_LOCK.acquire(blocking=False):
            try:
                bulk = self._bulk_encoder(len(text))
                if bulk is not None:
                    return bulk.encode(text)
            finally:
                _BULK_LOCK.release()
        if len(text) < _SHORT_TEXT or _PLACEHOLDER in text:
            # short: the unit split costs more than it saves; a placeholder in the text: the piece path is exact
            return self._encode_pieces(text)
        units = _split_units(text)
        cache = self.units
        ids = self._encode_pieces(units[0].replace(_PLACEHOLDER, " ")) if units[0] else []
        # list.extend returns None, so any() drives the extends to the end at C speed (faster than list(chain))
        any(map(ids.extend, map(cache.__getitem__, islice(units, 1, None))))
        return ids

    def _encode_pieces(self, text: str) -> list[int]:
        ids: list[int] = []
        pattern = _ASCII_PIECES if text.isascii() else _PIECES
        any(map(ids.extend, map(self.pieces.__getitem__, pattern.findall(text))))
        return ids

    def _encode_unit(self, unit: str) -> tuple[int, ...]:
        # A unit is the text after a cut space: " " + unit, placeholders back to spaces.
        if unit.isascii() and unit.isalpha():  # " word": one piece, no pattern needed
            return self._encode_piece(" " + unit)
        return tuple(self._encode_pieces(" " + unit.replace(_PLACEHOLDER, " ")))

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        word = to_byte_level(piece)
        token = self.encoder.get(word)
        return (token,) if token is not None else self.bpe(word)

    def _bulk_encoder(self, size: int) -> "_BulkEncoder | None":
        """The bulk path for a text of `size` characters, if it should take it: when numpy is loaded already, or
        when the text is long enough to pay for its import (and the vocabulary suits the lockstep merger)."""
        if self._bulk is None:
            if "numpy" not in sys.modules and size < _BULK_MIN_CHARS_WITHOUT_NUMPY:
                return None
            from .bpe_bulk import _BulkEncoder

            merger = self._merger()
            if not merger.usable:
                return None
            self._bulk = _BulkEncoder(self, merger)
        return self._bulk

    @staticmethod
    def _use_lockstep(size: int) -> bool:
        return size >= _LOCKSTEP_MIN_BYTES or (size >= _LOCKSTEP_MIN_BYTES_NUMPY_LOADED and "numpy" in sys.modules)

    def _merger(self) -> "_LockstepMerger":
        if self._lockstep is None:
            from .bpe_bulk import _LockstepMerger

            self._lockstep = _LockstepMerger(self)
        return self._lockstep

    def _pair_table(self):
        """`mergeable_pairs` as an (n, 3) numpy array: the shipped file when there is one."""
        import numpy as np

        from .bpe_bulk import mergeable_pairs

        if self._pairs_file is not None:
            try:
                return np.load(self._pairs_file)
            except (OSError, ValueError):  # not installed with the package: work it out
                pass
        return np.array(mergeable_pairs(self), dtype=np.int64).reshape(-1, 3)

    def bpe_many(self, words: list[str]) -> list[tuple[int, ...]]:
        """`bpe` of many byte-level words: lockstep numpy merges when there are enough bytes to pay for them."""
        if self._use_lockstep(sum(map(len, words))) and self._merger().usable:
            return self._lockstep.merge(words)
        return list(map(self.bpe, words))

    def bpe(self, word: str) -> tuple[int, ...]:
        """Merge the byte-level characters of one piece; returns the ids of the final parts."""
        parts = self._merge_long(word) if len(word) > _LONG_WORD else self._merge(word)
        return tuple(map(self.encoder.__getitem__, parts))

    def _merge(self, word: str) -> list[str]:
        parts = list(word)
        if len(parts) < 2:
            return parts
        get = self.ranks.get
        # rank of each adjacent pair's concatenation (_NO_RANK when it is not a token)
        pair_ranks = list(map(get, map(operator.add, parts, islice(parts, 1, None)), repeat(_NO_RANK)))
        best = min(pair_ranks)
        while best != _NO_RANK:
            i = pair_ranks.index(best)  # leftmost of the lowest rank
            merged = parts[i] + parts[i + 1]
            parts[i:i + 2] = (merged,)
            del pair_ranks[i]
            if i:
                pair_ranks[i - 1] = get(parts[i - 1] + merged, _NO_RANK)
            if i < len(pair_ranks):
                pair_ranks[i] = get(merged + parts[i + 1], _NO_RANK)
            elif not pair_ranks:
                break
            best = min(pair_ranks)
        return parts

    def _merge_long(self, word: str) -> list[str]:
        """The same merges for long words in O(n log n): a heap of (rank, position) over a linked list."""
        get = self.ranks.get
        parts: list[str | None] = list(word)
        n = len(parts)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap = [(r, i, parts[i] + parts[i + 1]) for i in range(n - 1)  # type: ignore[operator]
                if (r := get(parts[i] + parts[i + 1])) is not None]  # type: ignore[operator]
        heapq.heapify(heap)
        while heap:
            rank, i, merged = heapq.heappop(heap)
            j = nxt[i]
            left = parts[i]
            if left is None or j >= n or left + parts[j] != merged:  # type: ignore[operator]
                continue  # stale: one side changed since this pair was pushed
            parts[i] = merged
            parts[j] = None
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                p = prv[i]
                candidate = parts[p] + merged  # type: ignore[operator]
                if (r := get(candidate)) is not None:
                    heapq.heappush(heap, (r, p, candidate))
            if nxt[i] < n:
                candidate = merged + parts[nxt[i]]  # type: ignore[operator]
                if (r := get(candidate)) is not None:
                    heapq.heappush(heap, (r, i, candidate))
        return [p for p in parts if p is not None]

    def encode_with_offsets(self, text: str, start: int = 0) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and the (start, end) character span of each token in `text` (shifted by `start`).

        Like transformers' fast tokenizer: a token holding part of a multi-byte character spans that character.
        """
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        lengths = [len(t) if t is not None else 0 for t in self.tokens]
        pattern = _ASCII_PIECES if text.isascii() else _PIECES
        for match in pattern.finditer(text):
            piece = match.group()
            piece_ids = self.pieces[piece]
            ids += piece_ids
            base = start + match.start()
            if piece.isascii():
                ends = list(accumulate(lengths[i] for i in piece_ids))
                offsets += [(base + e - lengths[i], base + e) for i, e in zip(piece_ids, ends)]
                continue
            # character index of each UTF-8 byte of the piece
            byte_char = [k for k, ch in enumerate(piece) for _ in range(len(ch.encode("utf-8")))]
            pos = 0
            for i in piece_ids:
                end = pos + lengths[i]
                offsets.append((base + byte_char[pos], base + byte_char[end - 1] + 1))
                pos = end
        return ids, offsets

    def reset_caches(self) -> None:
        self.units.reset()
        self.pieces.reset()
        self._bulk = None  # rebuilt on the next long text (a long text being encoded keeps the old one)

    # ---------------------------------------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(map(self.token_bytes.__getitem__, ids))


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while making ~1e5 tuples or lists that form no cycle (batch encoding):
    each collection would scan the young ones again, and the many survivors trigger full collections over every
    cache entry; that took half of a batch's unpacking."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _split_units(text: str) -> list[str]:
    """Cut `text` before every space that is followed by a non-whitespace character.

    Such a space always starts a piece (" word", " 42", " (": GPT-2's pattern takes it with the character after
    it), so no piece crosses it: the pieces of the text are the pieces of units[0] followed by the pieces of
    " " + unit for each later unit -- which makes units cacheable. The other spaces (all but the last of a run, a
    space before a newline) belong to whitespace pieces: they become a placeholder first so that split(" ") leaves
    them inside their unit. "Followed by whitespace" is marked on the reversed text, where it reads "preceded by"
    and str.replace, scanning left to right, carries the mark along a run of spaces. Only str methods run here:
    C speed, no regex.
    """
    r = text[::-1].replace("  ", " " + _PLACEHOLDER)
    for ws in _WS_NOT_SPACE_ASCII:
        if ws in r:
            r = r.replace(ws + " ", ws + _PLACEHOLDER)
    if not r.isascii():
        for ws in _WS_NON_ASCII:
            if ws in r:
                r = r.replace(ws + " ", ws + _PLACEHOLDER)
    # no two spaces are adjacent now, so one pass marks the rest of every run
    r = r.replace(_PLACEHOLDER + " ", _PLACEHOLDER + _PLACEHOLDER)
    units = r[::-1].split(" ")
    if len(text) > 1 and text[-1] == " " and text[-2] in WHITESPACE:
        # a final space after whitespace is no cut: it ends the text's last whitespace piece
        units.pop()
        units[-1] += _PLACEHOLDER
    return units
