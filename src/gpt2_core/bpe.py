"""Byte-level BPE for GPT-2: the vocabulary files, the pre-tokenization pattern and a cached encoder.

Ids equal tiktoken's "gpt2" encoding (the r50k pattern with OpenAI's ranks): text is cut into pieces by
`GPT2_PATTERN`, each piece's UTF-8 bytes are merged pairwise, always merging the adjacent pair whose
concatenation has the lowest rank (leftmost on ties), and each final part is a token id.

The shipped vocabulary is one file, `vocab/merges.txt` (the transformers format). It is all we need: the 256 byte
tokens come first in GPT-2's byte order, then merge k makes token 256 + k, then `<|endoftext|>` is 50256. It is
derived from OpenAI's ranks by `merges_from_ranks` (run `python -m gpt2_core.bpe RANKS.tiktoken OUT_DIR`).

Unicode: letters and numbers are whatever the `regex` module's tables say. tiktoken's Rust regex carries older
tables, so characters assigned after Unicode 16 split differently: with regex 2026.5.9 and tiktoken 0.14 that is
4,657 code points (all new in Unicode 17, e.g. CJK Extension J U+323B0..U+33479; none assigned in Unicode 14;
`python bench/bench_tokenizer.py --unicode` lists them). We follow `regex` rather than freeze a table of
exceptions: the choice costs nothing on text written before 2025 and follows Unicode as `regex` updates.

Speed: a text is cut into "units" -- a word with the space before it and any whitespace after it: the text is
cut before every space followed by a non-whitespace character, where a piece always starts -- and units are
cached, so a word seen before costs one look-up. Short texts go unit by unit through dict caches of tuples
(`_split_units`: str.replace / str.split, C speed). Long texts take the bulk path (`_BulkEncoder`), which makes no
Python object per word: units and pieces are found by array operations on the text's code points, looked up in
exact hash indexes (`_SequenceIndex`), and all new pieces of a text are merged together, in lockstep with numpy
(`_LockstepMerger`, its pair ranks in a hash table built from the shipped `vocab/pairs.npy`). Every cache is
bounded (`UNIT_CACHE_*`, `PIECE_CACHE_*`, `BULK_*`: a few hundred MB at worst).
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
from itertools import accumulate, chain, islice, repeat
from typing import Iterable, Mapping

import regex

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
PAIRS_FILE = "pairs.npy"  # `mergeable_pairs` of merges.txt (python -m gpt2_core.bpe writes both)


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

# Texts from _BULK_MIN_CHARS characters on take the bulk path (`_BulkEncoder`) if numpy is loaded already, else
# from _BULK_MIN_CHARS_WITHOUT_NUMPY on (its import costs ~0.1 s: what the unit path spends on ~100 KB of new
# text). The bulk path encodes a text in chunks of about _CHUNK_CHARS characters; its caches hold at most
# BULK_UNITS units, BULK_PIECES pieces, BULK_CHARS characters of both and BULK_IDS ids (~150 MB at worst), plus one
# chunk's worth: past a bound, they are emptied before the next chunk.
_BULK_MIN_CHARS, _BULK_MIN_CHARS_WITHOUT_NUMPY, _CHUNK_CHARS = 1 << 13, 1 << 17, 1 << 21
BULK_UNITS, BULK_PIECES, BULK_CHARS, BULK_IDS = 1 << 20, 1 << 20, 1 << 23, 1 << 23
_LONG_UNIT = 1 << 10  # characters; a longer unit (a run of letters without spaces...) is encoded alone, uncached
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
            self._lockstep = _LockstepMerger(self)
        return self._lockstep

    def _pair_table(self):
        """`mergeable_pairs` as an (n, 3) numpy array: the shipped file when there is one."""
        import numpy as np

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


# ------------------------------------------------------------------------------------------ batch merging
_COLUMN_BITS = 8  # a word's pair position rides in the low bits of its rank while the lowest pair is sought
_LOCKSTEP_MAX_BYTES = 1 << _COLUMN_BITS  # longer words go to the one-word merge
_NO_PAIR = (1 << (31 - _COLUMN_BITS)) - 1  # rank of a pair that makes no token (int32 with the position bits)
_PAIR_TABLE_BITS = 20  # 2**20 slots for GPT-2's 108,299 pairs
_RANK_BITS = 24  # a pair table slot holds key << _RANK_BITS | rank
_RANK_MASK = (1 << _RANK_BITS) - 1
# Word length buckets (bytes): the words of a bucket are merged together, padded to the bucket's longest.
_LENGTH_EDGES = (3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 128, 192)
_DEAD = -1  # id of a row that holds no part (merged into the part on its left, or padding)
_FIBONACCI = 0x9E3779B97F4A7C15 - (1 << 64)  # 2**64 / golden ratio, as an int64


def mergeable_pairs(bpe: "ByteLevelBPE") -> list[tuple[int, int, int]]:
    """Every (left id, right id, rank) whose two tokens spell a token together: the pairs BPE may merge.

    A token has one merge in merges.txt but can be spelled by other pairs too ("ab" + "c" and "a" + "bc"); the
    byte-level BPE merges any adjacent pair whose concatenation is a token, so all of them are listed.
    """
    get = bpe.encoder.get
    pairs = []
    for token, rank in bpe.ranks.items():
        for cut in range(1, len(token)):
            left = get(token[:cut])
            if left is not None:
                right = get(token[cut:])
                if right is not None:
                    pairs.append((left, right, rank))
    return pairs


class _LockstepMerger:
    """BPE for many words at once, with numpy.

    Each round merges, in every unfinished word, its lowest-ranked pair (leftmost on ties): exactly the merge the
    one-word loop would make next, so the results are the same, while the Python overhead is paid once per round
    instead of once per merge. Words of similar length share a matrix, one column per word (column-major, so that
    the search for each word's lowest pair is one element-wise minimum over rows). A merge does not move the
    matrix: the merged token takes the left part's row, the right part's row dies, and per-word links to the
    next and previous live rows say who the neighbours are, so a round costs the minimum plus O(1) per word. Pair
    ranks come from an open-addressing hash table of all mergeable pairs, looked up with a few vectorized
    probes: no Python per pair.

    Results are "CSR": word k's ids are flat[starts[k]:starts[k] + counts[k]] (`merge_bytes`); `merge` and
    `merge_text` turn them into one tuple per word.
    """

    def __init__(self, bpe: "ByteLevelBPE"):
        import numpy as np

        self.np = np
        self.one_word = bpe.bpe
        pairs = bpe._pair_table()
        self.stride = len(bpe.tokens)  # pair key = left * stride + right
        self.usable = (len(pairs) == 0 or int(pairs[:, 2].max()) < _NO_PAIR) and \
            self.stride ** 2 < 1 << (63 - _RANK_BITS)
        if bpe.ranks is bpe.encoder:  # ids are ranks (GPT-2's files)
            self.rank_to_id = np.arange(self.stride, dtype=np.int32)
        else:
            self.rank_to_id = np.zeros(max(bpe.ranks.values(), default=0) + 1, dtype=np.int32)
            self.rank_to_id[np.fromiter(bpe.ranks.values(), dtype=np.int64, count=len(bpe.ranks))] = \
                np.fromiter(map(bpe.encoder.__getitem__, bpe.ranks), dtype=np.int64, count=len(bpe.ranks))
        self.byte_ids = np.array([bpe.encoder[c] for c in BYTE_CHARS], dtype=np.int32)  # UTF-8 byte -> id
        # one shared int object per id: id lists and tuples made from numpy arrays point to these, not to 1e6
        # fresh ints
        self.id_objects = np.array(list(range(self.stride)), dtype=object)
        byte_of_id = np.zeros(self.stride, dtype=np.int64)
        byte_of_id[self.byte_ids] = np.arange(256)
        left, right, ranks = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), pairs[:, 2].astype(np.int32)
        # rank of each pair of bytes, at (first << 8) | second: the first round needs no hashing
        self.byte_pairs = np.full(1 << 16, _NO_PAIR, dtype=np.int32)
        small = (left < self.stride) & (right < self.stride)
        small[small] = np.isin(left[small], self.byte_ids) & np.isin(right[small], self.byte_ids)
        self.byte_pairs[byte_of_id[left[small]] << 8 | byte_of_id[right[small]]] = ranks[small]
        # open addressing, at most an eighth full (so that most look-ups, hits or misses, end at the first slot);
        # a slot holds key << _RANK_BITS | rank, where key = left * stride + right
        self.mask = (1 << _PAIR_TABLE_BITS) - 1
        while 8 * len(pairs) > self.mask:
            self.mask = 2 * self.mask + 1
        self.shift = 64 - self.mask.bit_length()
        self.table = np.full(self.mask + 1, -1, dtype=np.int64)  # -1: empty slot
        packed = (left * self.stride + right) << _RANK_BITS | ranks
        todo, slot = np.arange(len(packed)), self._slots(packed >> _RANK_BITS)
        while len(todo):
            free = self.table[slot] == -1
            self.table[slot[free]] = packed[todo[free]]  # keys racing for one free slot: the last write wins it
            won = np.zeros(len(todo), dtype=bool)
            won[free] = self.table[slot[free]] == packed[todo[free]]
            todo, slot = todo[~won], (slot[~won] + 1) & self.mask

    def _slots(self, keys):
        # Fibonacci hashing: the top bits of key * 2**64 / golden ratio (int64 products wrap, as uint64 ones do;
        # the mask drops the sign bits the arithmetic shift brings in)
        return (keys * _FIBONACCI) >> self.shift & self.mask

    def _ranks(self, left, right):
        """Rank of each pair (int64 arrays of ids); _NO_PAIR where the two spell no token."""
        keys = left * self.stride + right
        slot = self._slots(keys)
        found = self.table[slot]
        out = (found & _RANK_MASK).astype(self.np.int32)
        other = found >> _RANK_BITS != keys
        if other.any():
            out[other] = _NO_PAIR
            todo = self.np.flatnonzero(other & (found != -1))  # the slot holds another key: probe on
            while len(todo):
                slot[todo] = (slot[todo] + 1) & self.mask
                found = self.table[slot[todo]]
                hit = found >> _RANK_BITS == keys[todo]
                out[todo[hit]] = found[hit] & _RANK_MASK
                todo = todo[~hit & (found != -1)]
        return out

    def merge(self, words: list[str]) -> list[tuple[int, ...]]:
        """The ids of each byte-level word (like `ByteLevelBPE.bpe`)."""
        np = self.np
        raw = np.frombuffer("".join(words).translate(_BYTE_LEVEL_TO_LATIN1).encode("latin-1"), dtype=np.uint8)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return self.tuples(*self.merge_bytes(raw, np.cumsum(lens) - lens, lens, lambda k: self.one_word(words[k])))

    def merge_text(self, pieces: list[str]) -> list[tuple[int, ...]]:
        """The ids of each piece of text (merging the bytes of a piece that is a token must give that token)."""
        return self.tuples(*self.merge_pieces(pieces))

    def merge_pieces(self, pieces: list[str]):
        """`merge_text` as CSR arrays (starts, counts, flat ids)."""
        return self.merge_spans("".join(pieces), self.np.fromiter(map(len, pieces), dtype=self.np.int64,
                                                                   count=len(pieces)))

    def merge_spans(self, text: str, lengths):
        """The ids of each piece of `text`, which is cut into pieces of `lengths` characters (CSR arrays)."""
        np = self.np
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        starts = np.cumsum(lengths) - lengths
        lens = lengths
        if len(raw) != len(text):  # not all ASCII: byte lengths from where each character starts
            byte_starts = np.flatnonzero((raw & 0xC0) != 0x80)[starts]
            lens = np.diff(byte_starts, append=len(raw))
        return self.merge_bytes(raw, np.cumsum(lens) - lens, lens,
                                lambda k: self.one_word(to_byte_level(text[starts[k]:starts[k] + lengths[k]])))

    def tuples(self, starts, counts, flat) -> list[tuple[int, ...]]:
        """CSR arrays as one tuple of ids per word."""
        ids = self.id_objects[flat].tolist()
        return list(map(tuple, map(ids.__getitem__, map(slice, starts.tolist(), (starts + counts).tolist()))))

    def merge_bytes(self, raw, byte_starts, lens, one_word):
        """Merge words given as spans (starts, lengths) of a byte array (uint8). Returns CSR arrays
        (starts, counts, flat): word k's ids are flat[starts[k]:starts[k] + counts[k]]. Words longer than
        _LOCKSTEP_MAX_BYTES go to `one_word(k)`, which returns a tuple of ids."""
        np = self.np
        count = len(lens)
        starts, counts = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
        parts, size = [], 0  # flat ids, in the order the words finish

        def finished(numbers, lengths, ids):
            nonlocal size
            counts[numbers] = lengths
            starts[numbers] = np.cumsum(lengths) - lengths + size
            parts.append(ids)
            size += len(ids)

        short = np.flatnonzero(lens <= _LOCKSTEP_MAX_BYTES)
        order = short[(_sort_with_positions(np, lens[short].astype(np.uint64) << np.uint64(32))
                       & np.uint64(0xFFFFFFFF)).astype(np.int64)]  # by length, stable
        cuts = [0, *np.searchsorted(lens[order], _LENGTH_EDGES).tolist(), len(order)]
        for words in map(order.__getitem__, map(slice, cuts, cuts[1:])):
            if len(words):
                for numbers, lengths, ids in self._merge_bucket(raw, byte_starts[words], lens[words], words):
                    finished(numbers, lengths, ids)
        long = np.flatnonzero(lens > _LOCKSTEP_MAX_BYTES).tolist()
        if long:
            values = list(map(one_word, long))
            finished(np.array(long), np.fromiter(map(len, values), dtype=np.int64, count=len(long)),
                     np.fromiter(chain.from_iterable(values), dtype=np.int32))
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return starts, counts, flat

    def _merge_bucket(self, raw, starts, lens, numbers) -> list[tuple]:
        """Merge words of similar length. Returns, for each round where some words finished, (their word numbers,
        their id counts, their ids word after word)."""
        np = self.np
        width, count = int(lens.max()), len(lens)
        row = np.arange(width + 1, dtype=np.int32)[:, None]  # a padding row below the longest word: "past the
        real = row < lens[None, :]  # end" points there
        data = raw[np.where(real, starts[None, :] + row, 0)].astype(np.int32)
        ids = np.where(real, self.byte_ids[data], _DEAD)  # (width + 1, count): a part's id at its first row
        # keys: the rank of the pair that starts at each row, shifted, with the row in the low bits (so that the
        # minimum over rows is the leftmost lowest pair); _NO_PAIR where no pair starts
        keys = np.full((width + 1, count), _NO_PAIR << _COLUMN_BITS, dtype=np.int32)
        keys[:-1] = np.where(real[1:], self.byte_pairs[data[:-1] << 8 | data[1:]], _NO_PAIR) << _COLUMN_BITS | row[:-1]
        nxt = np.repeat(row + 1, count, axis=1)  # row of the next live part (a word's length after its last)
        prv = np.repeat(row - 1, count, axis=1)  # row of the previous live part (-1, i.e. the padding row, first)
        length = lens
        low_bits = (1 << _COLUMN_BITS) - 1
        words = np.arange(count)
        finished = []
        while True:
            best = np.minimum.reduce(keys, axis=0)
            rank = best >> _COLUMN_BITS
            live = rank != _NO_PAIR
            alive = int(np.count_nonzero(live))
            if alive == count:
                columns = words
            elif 4 * alive >= 3 * count:  # a few words are done: leave them in place for now
                columns = np.flatnonzero(live)
                best, rank = best[columns], rank[columns]
            else:  # many are done: hand them back and drop their columns
                done = np.compress(~live, ids, axis=1).T.ravel()
                finished.append((numbers[~live], np.count_nonzero(done.reshape(-1, width + 1) != _DEAD, axis=1),
                                 done[done != _DEAD]))
                if not alive:
                    return finished
                ids, keys, nxt, prv = (np.compress(live, a, axis=1) for a in (ids, keys, nxt, prv))
                numbers, length, best, rank = numbers[live], length[live], best[live], rank[live]
                count = alive
                columns = words = np.arange(count)
            # the lowest pair of each word: its left part (row `at`) becomes the merged token, the right part dies;
            # matrices are C-contiguous, so ravel() views them, with index row * count + column
            flat_ids, flat_keys, flat_nxt, flat_prv = ids.ravel(), keys.ravel(), nxt.ravel(), prv.ravel()
            at = best & low_bits
            at_index = at * count + columns
            right_index = flat_nxt[at_index] * count + columns
            token = self.rank_to_id[rank]
            flat_ids[at_index] = token
            flat_ids[right_index] = _DEAD
            flat_keys[right_index] = _NO_PAIR << _COLUMN_BITS
            after = flat_nxt[right_index]
            flat_nxt[at_index] = after
            after_index = after * count + columns
            flat_prv[after_index] = at
            before = flat_prv[at_index]
            before_index = before * count + columns  # before = -1: the padding row (a negative index wraps)
            # the new token's pairs with its neighbours (past either end: the padding, whatever the look-up says)
            ranks = self._ranks(np.concatenate([token, flat_ids[before_index]], dtype=np.int64),
                                np.concatenate([flat_ids[after_index], token]))
            flat_keys[at_index] = np.where(after < length[columns], ranks[:len(at)], _NO_PAIR) << _COLUMN_BITS | at
            flat_keys[before_index] = np.where(before >= 0, ranks[len(at):] << _COLUMN_BITS | before,
                                               _NO_PAIR << _COLUMN_BITS)


# --------------------------------------------------------------------------------------------- long texts
# Character classes of GPT2_PATTERN: a piece is a run of one of the first three (after an optional " "), or
# whitespace. _WHITESPACE is every \s but " ".
_LETTER, _NUMBER, _OTHER, _SPACE, _WHITESPACE, _UNCLASSIFIED = 0, 1, 2, 3, 4, 255
_CLASS_RUNS = regex.compile(r"(\p{L}+)|(\p{N}+)|(\s+)")
_CLASSIFY = regex.compile(r"(\p{L})|(\p{N})|(\s)|.", regex.DOTALL)
_CLASS_OF_GROUP = {1: _LETTER, 2: _NUMBER, 3: _WHITESPACE, None: _OTHER}  # match.lastindex -> class
_NOT_SPACE_AFTER = regex.compile(r" (?=\S)")
_WINDOW = 1 << 16  # characters hashed or compared at a time (small temporaries, reused from one window to the next)
_TABLE_LOAD = 2  # hash tables are kept at most half full
_HASH_BASE = 0x5BD1E9955BD1E995  # odd, so invertible modulo 2**64
_HASH_BASE_INVERSE = pow(_HASH_BASE, -1, 1 << 64)
_HASH_MIX = 0x9E3779B97F4A7C15


def _class_table(np):
    """Class of every code point of the Basic Multilingual Plane (the others are classified when first seen),
    from `regex`'s own \\p{L}, \\p{N} and \\s, so that the classes are exactly the pattern's."""
    table = np.full(0x110000, _UNCLASSIFIED, dtype=np.uint8)
    table[:0x10000] = _OTHER
    plane = np.arange(0x10000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    for match in _CLASS_RUNS.finditer(plane):
        table[match.start():match.end()] = _CLASS_OF_GROUP[match.lastindex]
    table[ord(" ")] = _SPACE
    return table


def _piece_starts(np, cp, cls):
    """Where GPT2_PATTERN's matches start in a text, given its code points and their classes (a test checks
    this against the pattern). A piece is a run of letters, of numbers, of other characters, or of whitespace,
    except that: a run of whitespace followed by text leaves its last character to the next piece (`\\s+(?!\\S)`);
    that character, if it is " ", joins the run after it (` ?\\p{L}+` ...), else it is a piece of its own; and a
    piece that starts with ' followed by s, d, m, t, ll, ve or re is that contraction alone."""
    n = len(cp)
    group = np.minimum(cls, _SPACE)  # letters, numbers, others, whitespace
    start = np.empty(n, dtype=bool)
    start[:1] = True
    np.not_equal(group[1:], group[:-1], out=start[1:])
    is_space = group == _SPACE
    before_text = is_space[:-1] & ~is_space[1:]  # whitespace, then a non-whitespace character
    start[:-1] |= before_text
    start[1:] &= ~(before_text & (cls[:-1] == _SPACE))
    quotes = np.flatnonzero(start[:-1] & (cp[:-1] == ord("'")))
    if len(quotes):
        first, second = cp[quotes + 1], cp[np.minimum(quotes + 2, n - 1)] * (quotes + 2 < n)
        size = np.where(np.isin(first, [ord(c) for c in "sdmt"]), 2, 0)
        size[((first == ord("l")) & (second == ord("l"))) | ((first == ord("v")) & (second == ord("e")))
             | ((first == ord("r")) & (second == ord("e")))] = 3
        quotes, size = quotes[size > 0], size[size > 0]
        start[quotes + 1] = False
        ends = quotes + size
        start[ends[ends < n]] = True
    return np.flatnonzero(start)


def _first_of_groups(np, hashes):
    """Group equal hashes: the position of each group's first member, groups in order of first appearance, and
    each hash's group number. (Equal top bits make a group: a hash that only shares them with another group
    gets checked against it and found different, which costs an extra round, never a wrong entry.)"""
    positions = _sort_with_positions(np, hashes)
    position = positions & np.uint64((1 << _bits(len(hashes))) - 1)
    top = positions >> np.uint64(_bits(len(hashes)))
    head = np.empty(len(hashes), dtype=bool)
    head[:1] = True
    np.not_equal(top[1:], top[:-1], out=head[1:])
    firsts = position[head]  # groups in hash order; each one's first member comes first
    order = _sort_with_positions(np, firsts << np.uint64(32)) & np.uint64((1 << _bits(len(firsts))) - 1)
    number = np.empty(len(firsts), dtype=np.int64)
    number[order] = np.arange(len(firsts))
    group = np.empty(len(hashes), dtype=np.int64)
    group[position] = number[np.cumsum(head) - 1]
    return firsts[order].astype(np.int64), group


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def _sort_with_positions(np, values):
    """`values` (uint64) sorted with each one's position in its low bits (replacing those bits of the value):
    a plain sort (fast) instead of an argsort; ties keep their order."""
    bits = np.uint64(_bits(len(values)))
    keys = values >> bits << bits | np.arange(len(values), dtype=np.uint64)
    keys.sort()
    return keys


def _equal_short(np, a, a_starts, b_starts, lengths):
    """For the sequences of `a` that fit in 8 bytes (and do not end within 8 bytes of its end), whether
    a[a_starts[k]:...] == a[b_starts[k]:...]: one 8-byte read from each start (a view of `a` with a uint64 at every
    position), masked to the length. Returns which sequences it compared, and the results."""
    per = 8 // a.itemsize  # characters in 8 bytes
    if len(a) < per:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    short = np.flatnonzero((lengths <= per) & (np.maximum(a_starts, b_starts) <= len(a) - per))
    words = np.ndarray(shape=(len(a) - per + 1,), dtype="<u8", buffer=a, strides=(a.itemsize,))
    masks = np.array([(1 << (8 * a.itemsize * size)) - 1 for size in range(per + 1)], dtype=np.uint64)
    differ = (words[a_starts[short]] ^ words[b_starts[short]]) & masks[lengths[short]]
    return short, differ == 0


def _ranges(np, starts, counts):
    """The indices of the ranges [starts[k], starts[k] + counts[k]) (counts >= 1), one after the other: a
    cumulative sum of steps of 1, with a jump at the start of each range (one array, no temporaries)."""
    ends = np.cumsum(counts)
    steps = np.ones(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    if len(steps):
        steps[0] = starts[0]
        steps[ends[:-1]] = starts[1:] - starts[:-1] - counts[:-1] + 1
        np.cumsum(steps, out=steps)
    return steps


class _Column:
    """A numpy array that grows at its end (its capacity doubles)."""

    def __init__(self, np, dtype):
        self.np, self.data, self.size = np, np.empty(1 << 12, dtype=dtype), 0

    def append(self, values) -> int:
        """Append `values`; returns the index of the first."""
        start, self.size = self.size, self.size + len(values)
        if self.size > len(self.data):
            grown = self.np.empty(max(self.size, 2 * len(self.data)), dtype=self.data.dtype)
            grown[:start] = self.data[:start]
            self.data = grown
        self.data[start:self.size] = values
        return start

    @property
    def values(self):
        return self.data[:self.size]


class _SequenceIndex:
    """An exact index of code point sequences (units, pieces), numbered in the order they are added, in numpy.

    A sequence's hash is a polynomial of its code points modulo 2**64 (`hashes`, vectorized); an open-addressing
    table maps hashes to entries, and a hash match counts only if the entry's code points equal the sequence's,
    compared one by one: sequences with equal hashes (which a text can be built to have) cost more probes, never
    a wrong entry.
    """

    def __init__(self, np):
        self.np = np
        self.chars = _Column(np, np.uint32)  # every entry's code points, one entry after the other
        self.start, self.length, self.hash = _Column(np, np.int64), _Column(np, np.int64), _Column(np, np.uint64)
        self._resize(1 << 12)
        self.powers = self.inverse_powers = np.ones(0, dtype=np.uint64)

    def __len__(self) -> int:
        return self.start.size

    def hashes(self, cp, bounds):
        """The hash of each sequence cp[bounds[k]:bounds[k + 1]] (`bounds` increase from 0 to len(cp)), a
        window at a time."""
        np = self.np
        count = len(bounds) - 1
        out = np.empty(count, dtype=np.uint64)
        k = 0
        while k < count:
            end = max(k + 1, int(np.searchsorted(bounds, bounds[k] + _WINDOW, "right")) - 1)
            local = bounds[k:end + 1] - bounds[k]
            powers, inverse_powers = self._powers(int(local[-1]))
            # prefix sums of c * base**position: a sequence's part of them, times base**-(its start), is its
            # polynomial, the sum of c * base**(position in the sequence)
            total = np.cumsum(cp[bounds[k]:bounds[end]] * powers[:local[-1]])
            before = np.where(local[:-1] > 0, total[local[:-1] - 1], 0)
            out[k:end] = (total[local[1:] - 1] - before) * inverse_powers[local[:-1]]
            k = end
        out = out * np.uint64(_HASH_MIX) + np.diff(bounds).astype(np.uint64)  # the length too
        return out ^ (out >> np.uint64(29))  # top bits (the table slot) that depend on all bits

    def _powers(self, size: int):
        if len(self.powers) < size:
            np = self.np
            size = max(size, _WINDOW)
            self.powers = np.cumprod(np.full(size, _HASH_BASE, dtype=np.uint64)) * np.uint64(_HASH_BASE_INVERSE)
            self.inverse_powers = np.cumprod(np.full(size, _HASH_BASE_INVERSE, dtype=np.uint64)) * \
                np.uint64(_HASH_BASE)
        return self.powers, self.inverse_powers

    def find(self, cp, starts, lengths, hashes):
        """The entry of each sequence cp[starts[k]:starts[k] + lengths[k]], -1 where it has none."""
        np = self.np
        found = np.full(len(starts), -1, dtype=np.int64)
        todo, slot = np.arange(len(starts)), self._slots(hashes)
        while len(todo) and len(self):
            entry, slot = self._probe(hashes[todo], lengths[todo], slot)
            hit = np.flatnonzero(entry >= 0)
            if len(hit) == len(starts):  # all of them: compare them in place (they follow one another in cp)
                same = self._equal(cp[starts[0]:], None, self.chars.values, self.start.values[entry], lengths)
            else:
                same = self._equal(cp, starts[todo[hit]], self.chars.values, self.start.values[entry[hit]],
                                   lengths[todo[hit]])
            found[todo[hit[same]]] = entry[hit[same]]
            # a different sequence with the same hash and length: probe on past it
            todo, slot = todo[hit[~same]], (slot[hit[~same]] + 1) & self.mask
        return found

    def _probe(self, hashes, lengths, slot):
        """From each slot on, the first entry with the same hash and length (-1: an empty slot came first), and
        the slot where it is."""
        np = self.np
        entry = self.slots[slot]
        todo = np.flatnonzero(entry >= 0)
        while len(todo):
            todo = todo[(self.hash.values[entry[todo]] != hashes[todo])
                        | (self.length.values[entry[todo]] != lengths[todo])]
            slot[todo] = (slot[todo] + 1) & self.mask
            entry[todo] = self.slots[slot[todo]]
            todo = todo[entry[todo] >= 0]
        return entry, slot

    def add(self, cp, starts, lengths, hashes):
        """Each sequence's entry (see `find`), adding those not there (an entry per distinct sequence, in order
        of first appearance). Returns the entries and the first new one."""
        np = self.np
        first = len(self)
        found = self.find(cp, starts, lengths, hashes)
        missing = np.flatnonzero(found < 0)
        while len(missing):
            # a new entry per distinct hash, for its first appearance ...
            leaders, group = _first_of_groups(np, hashes[missing])
            leaders = missing[leaders]
            self._insert(cp, starts[leaders], lengths[leaders], hashes[leaders])
            # ... which the sequences with that hash get if they equal it
            leader = leaders[group]
            same = missing == leader
            check = np.flatnonzero(~same & (lengths[missing] == lengths[leader]))
            same[check] = self._equal(cp, starts[missing[check]], cp, starts[leader[check]], lengths[missing[check]])
            found[missing[same]] = len(self) - len(leaders) + group[same]
            missing = missing[~same]  # one hash, different sequences: the others get entries in another round
            if len(missing):
                found[missing] = self.find(cp, starts[missing], lengths[missing], hashes[missing])
                missing = missing[found[missing] < 0]
        return found, first

    def _equal(self, a, a_starts, b, b_starts, lengths):
        """Whether a[a_starts[k]:a_starts[k] + lengths[k]] == b[b_starts[k]:b_starts[k] + lengths[k]] for each k
        (a_starts None: the sequences follow one another in `a` from 0)."""
        np = self.np
        if a is b:  # two places of one text (the repeats of a new sequence): the short ones a word at a time
            out = np.empty(len(lengths), dtype=bool)
            short, same = _equal_short(np, a, a_starts, b_starts, lengths)
            out[short] = same
            rest = np.ones(len(lengths), dtype=bool)
            rest[short] = False
            rest = np.flatnonzero(rest)
            out[rest] = self._equal_long(a, a_starts[rest], b, b_starts[rest], lengths[rest])
            return out
        return self._equal_long(a, a_starts, b, b_starts, lengths)

    def _equal_long(self, a, a_starts, b, b_starts, lengths):
        """`_equal` character by character, a window at a time."""
        np = self.np
        out = np.empty(len(lengths), dtype=bool)
        ends = np.cumsum(lengths)
        k = 0
        while k < len(lengths):
            begin = int(ends[k] - lengths[k])
            end = max(k + 1, int(np.searchsorted(ends, begin + _WINDOW, "right")))
            sizes = lengths[k:end]
            offsets = ends[k:end] - sizes - begin  # where each sequence starts in the window
            span = np.arange(int(ends[end - 1]) - begin)
            if a_starts is None:
                left = a[begin:begin + len(span)]
            else:
                left = a[np.repeat(a_starts[k:end] - offsets, sizes) + span]
            right = b[np.repeat(b_starts[k:end] - offsets, sizes) + span]
            out[k:end] = ~np.logical_or.reduceat(left != right, offsets)
            k = end
        return out

    def _insert(self, cp, starts, lengths, hashes) -> None:
        np = self.np
        first_char = self.chars.append(cp[_ranges(np, starts, lengths)])
        first = self.start.append(np.cumsum(lengths) - lengths + first_char)
        self.length.append(lengths)
        self.hash.append(hashes)
        if _TABLE_LOAD * len(self) > len(self.slots):  # keep the table at most 1 / _TABLE_LOAD full
            self._resize(2 * _TABLE_LOAD * len(self))
        else:
            self._place(np.arange(first, len(self)))

    def _resize(self, size: int) -> None:
        bits = max(12, (size - 1).bit_length())
        self.mask, self.shift = (1 << bits) - 1, 64 - bits
        self.slots = self.np.full(1 << bits, -1, dtype=self.np.int32)  # entry, -1: empty
        self._place(self.np.arange(len(self)))

    def _slots(self, hashes):
        return (hashes >> self.np.uint64(self.shift)).astype(self.np.int64)

    def _place(self, entries) -> None:
        slot = self._slots(self.hash.values[entries])
        while len(entries):
            free = self.slots[slot] == -1
            self.slots[slot[free]] = entries[free]  # entries racing for one free slot: the last write wins it
            won = self.np.zeros(len(entries), dtype=bool)
            won[free] = self.slots[slot[free]] == entries[free]
            entries, slot = entries[~won], (slot[~won] + 1) & self.mask


class _BulkEncoder:
    """Long texts, with numpy and no Python object per word. A text is cut into units -- a word with the space
    before it and any whitespace after it: the text is cut before every " " followed by a non-whitespace
    character, where a piece always starts -- and the units are looked up in an exact index of the units seen
    before (`_SequenceIndex`); the text's ids are one gather of its units' ids.

    The new units are encoded together: their concatenation is cut into pieces by array operations on its code
    points (`_piece_starts`), the pieces are looked up the same way in an index of pieces, and the new pieces
    are merged by the lockstep merger, all at once.

    The caches are bounded: when one passes its bound (`BULK_*`), all are emptied before the next chunk of text
    (texts are encoded in chunks of about _CHUNK_CHARS characters, cut between units).
    """

    def __init__(self, bpe: "ByteLevelBPE", merger: "_LockstepMerger"):
        self.np = merger.np
        self.bpe, self.merger = bpe, merger
        self.table = _class_table(self.np)
        self.reset()

    def reset(self) -> None:
        np = self.np
        self.units, self.pieces = _SequenceIndex(np), _SequenceIndex(np)
        # the ids of each entry of the indexes, as CSR columns: entry k's ids are ids[start[k]:start[k] + count[k]]
        self.unit_start, self.unit_count = _Column(np, np.int64), _Column(np, np.int64)
        self.unit_ids = _Column(np, np.int32)
        self.piece_start, self.piece_count = _Column(np, np.int64), _Column(np, np.int64)
        self.piece_ids = _Column(np, np.int32)

    def full(self) -> bool:
        return (len(self.units) > BULK_UNITS or len(self.pieces) > BULK_PIECES
                or self.units.chars.size + self.pieces.chars.size > BULK_CHARS
                or self.unit_ids.size + self.piece_ids.size > BULK_IDS)

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        parts = []
        for chunk in _text_chunks(text, _CHUNK_CHARS):
            if self.full():
                self.reset()
            try:
                parts.append(self._encode_chunk(chunk))
            except BaseException:  # an index may be half updated
                self.reset()
                raise
        ids = parts[0] if len(parts) == 1 else self.np.concatenate(parts)
        return self.merger.id_objects[ids].tolist()  # shared int objects: no new int per id

    def _code_points(self, text: str):
        """The characters of `text` as code points, in the narrowest array type that holds them all (uint8,
        uint16, uint32: the less memory, the faster)."""
        np = self.np
        if text.isascii():
            return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        data = text.encode("utf-16-le")
        if len(data) == 2 * len(text):  # no surrogate pair: one code unit per character
            return np.frombuffer(data, dtype="<u2")
        return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")

    def _classes(self, cp):
        cls = self.table[cp]
        if cp.dtype == self.np.uint32:
            unclassified = cls == _UNCLASSIFIED
            if unclassified.any():  # beyond the Basic Multilingual Plane: classify those seen, once
                new = self.np.unique(cp[unclassified])
                self.table[new] = [_CLASS_OF_GROUP[match.lastindex]
                                   for match in map(_CLASSIFY.match, map(chr, new.tolist()))]
                cls = self.table[cp]
        return cls

    def _encode_chunk(self, text: str):
        np = self.np
        cp = self._code_points(text)
        spaces = np.flatnonzero(cp[1:-1] == ord(" ")) + 1
        cuts = spaces[self._classes(cp[spaces + 1]) < _SPACE]  # before a " " followed by a non-whitespace
        bounds = np.concatenate([[0], cuts, [len(cp)]])
        long = np.flatnonzero(np.diff(bounds) > _LONG_UNIT).tolist()
        if not long:
            return self._encode_units(cp, bounds)
        parts, k = [], 0  # the runs of units between long ones, and each long one alone (the unit path)
        for j in long:
            parts.append(self._encode_units(cp, bounds[k:j + 1]))
            parts.append(np.array(self.bpe._encode_pieces(text[bounds[j]:bounds[j + 1]]), dtype=np.int32))
            k = j + 1
        parts.append(self._encode_units(cp, bounds[k:]))
        return np.concatenate(parts)

    def _encode_units(self, cp, bounds):
        """The ids of the units cp[bounds[k]:bounds[k + 1]]."""
        np = self.np
        if len(bounds) < 2:
            return np.zeros(0, dtype=np.int32)
        entries, first = self.units.add(cp, bounds[:-1], np.diff(bounds), self.units.hashes(cp, bounds))
        if first < len(self.units):
            self._add_units(first)
        return self.unit_ids.values[_ranges(np, self.unit_start.values[entries], self.unit_count.values[entries])]

    def _add_units(self, first: int) -> None:
        """Store the ids of the units from entry `first` on. They are new, in text order: only the first may lack
        its leading " ", and their concatenation cuts into the same pieces as each unit alone."""
        np = self.np
        units = self.units
        cp = units.chars.values[units.start.values[first]:]
        starts = _piece_starts(np, cp, self._classes(cp))
        bounds = np.append(starts, len(cp))
        entries, new = self.pieces.add(cp, starts, np.diff(bounds), self.pieces.hashes(cp, bounds))
        if new < len(self.pieces):
            self._add_pieces(new)
        # each unit's ids are its pieces' ids in a row
        id_counts = self.piece_count.values[entries]
        ids = self.piece_ids.values[_ranges(np, self.piece_start.values[entries], id_counts)]
        unit_starts = units.start.values[first:] - units.start.values[first]
        unit_counts = np.add.reduceat(id_counts, np.searchsorted(starts, unit_starts))
        first_id = self.unit_ids.append(ids)
        self.unit_start.append(np.cumsum(unit_counts) - unit_counts + first_id)
        self.unit_count.append(unit_counts)

    def _add_pieces(self, first: int) -> None:
        """Merge the pieces from entry `first` on (new and distinct) and store their ids."""
        np = self.np
        pieces, bpe = self.pieces, self.bpe
        text = str(memoryview(pieces.chars.values[pieces.start.values[first]:]), "utf-32-le")
        lengths = pieces.length.values[first:]
        starts, counts, ids = self.merger.merge_spans(text, lengths)
        if not bpe._tokens_merge_to_themselves:  # a piece that is a token is that token, merged or not
            ends = np.cumsum(lengths).tolist()
            words = _to_byte_level_many(list(map(text.__getitem__, map(slice, [0, *ends[:-1]], ends))))
            tokens = np.fromiter((-1 if t is None else t for t in map(bpe.encoder.get, words)),
                                 dtype=np.int64, count=len(words))
            hits = np.flatnonzero(tokens >= 0)
            starts[hits], counts[hits] = len(ids) + np.arange(len(hits)), 1
            ids = np.concatenate([ids, tokens[hits].astype(np.int32)])
        first_id = self.piece_ids.append(ids)
        self.piece_start.append(starts + first_id)
        self.piece_count.append(counts)


def _text_chunks(text: str, size: int):
    """`text` in pieces of about `size` characters, cut before a " " followed by a non-whitespace character
    (where no piece and no unit crosses)."""
    start = 0
    while len(text) - start > 2 * size:
        cut = _NOT_SPACE_AFTER.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.start()]
        start = cut.start()
    yield text[start:]


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


def _to_byte_level_many(texts: list[str]) -> list[str]:
    """`to_byte_level` of each text, with one translation of their concatenation."""
    joined = to_byte_level("".join(texts))
    sizes = map(len, texts)
    if len(joined) != sum(map(len, texts)):  # not all ASCII: cut at UTF-8 byte counts
        sizes = map(len, map(str.encode, texts))
    ends = list(accumulate(sizes))
    return list(map(joined.__getitem__, map(slice, chain((0,), ends), ends)))


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


# ------------------------------------------------------------------------------------ tiktoken rank files
def load_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a `.tiktoken` file: one `<base64 token bytes> <rank>` per line."""
    import base64

    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError as e:
                raise ValueError(f"Error parsing line {number} of {os.fspath(path)!r}: {line[:80]!r}") from e
    return ranks


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[str, str]]:
    """The merge pair of every token of rank >= 256, in rank order, as byte-level strings.

    Rank order is merge order, so running BPE on a token's bytes with only the lower ranks stops at exactly two
    parts: the pair whose merge made the token.
    """
    by_rank = sorted(ranks.items(), key=lambda item: item[1])
    if [rank for _, rank in by_rank] != list(range(len(by_rank))):
        raise ValueError("ranks should be 0..n-1 without gaps")
    if sorted(token for token, _ in by_rank[:256]) != [bytes([b]) for b in range(256)]:
        raise ValueError("ranks 0..255 should be the 256 single bytes")
    merges = []
    for token, rank in by_rank[256:]:
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            candidates = [(ranks.get(a + b, _NO_RANK), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, i = min(candidates)
            if best >= rank:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2 or ranks.get(parts[0] + parts[1]) != rank:
            raise ValueError(f"Token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
        merges.append((to_byte_level_bytes(parts[0]), to_byte_level_bytes(parts[1])))
    return merges


def to_byte_level_bytes(data: bytes) -> str:
    return data.decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)


def write_merges(merges: list[tuple[str, str]], path: str | os.PathLike) -> None:
    from .io_utils import atomic_write_text

    atomic_write_text(path, MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges))


def write_pairs(bpe: ByteLevelBPE, path: str | os.PathLike) -> None:
    """Save `mergeable_pairs(bpe)` as a .npy array of (left id, right id, rank) rows (uint16 when they fit)."""
    import numpy as np

    pairs = np.array(mergeable_pairs(bpe), dtype=np.int64).reshape(-1, 3)
    if not len(pairs) or pairs.max() < 1 << 16:
        pairs = pairs.astype(np.uint16)
    np.save(path, pairs)


def main(argv: list[str] | None = None) -> int:
    """`python -m gpt2_core.bpe gpt2.tiktoken OUT_DIR`: write OUT_DIR/merges.txt and OUT_DIR/pairs.npy (how the
    shipped vocabulary was made)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m gpt2_core.bpe RANKS.tiktoken OUT_DIR\n")
        return 2
    merges = merges_from_ranks(load_tiktoken_ranks(argv[0]))
    os.makedirs(argv[1], exist_ok=True)
    write_merges(merges, os.path.join(argv[1], "merges.txt"))
    bpe = ByteLevelBPE.from_merges_text("\n".join(f"{a} {b}" for a, b in merges))
    write_pairs(bpe, os.path.join(argv[1], PAIRS_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
