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

Speed: the text is cut into "units" -- the text between spaces that are followed by a non-space -- with
str.replace / str.split (C speed); units are cached, so warm text costs one dict lookup per word. The units of a
long new text are encoded in bulk (`_add_units`): a unit of letters is one piece as it stands, the others are cut
by the pattern (stdlib `re` with ASCII classes for ASCII units, `regex` otherwise), a second cache holds the
pieces, and all new pieces are merged together -- in lockstep with numpy when there are enough of them
(`_LockstepMerger`, its pair ranks in a hash table built from the shipped `vocab/pairs.npy`), else one word at a
time in Python. Both caches are bounded (`UNIT_CACHE_*`, `PIECE_CACHE_*`: at most 2 x 2**18 units of up to 256
characters and 2 x 2**17 pieces, i.e. a few hundred MB at worst).
"""

from __future__ import annotations

import gc
import heapq
import operator
import os
import re
import sys
from contextlib import contextmanager
from itertools import accumulate, chain, filterfalse, islice, repeat
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

# A text of more than _BULK_MIN_UNITS units whose first _BULK_SAMPLE units miss the cache _BULK_MIN_MISSES times or
# more is taken as new text: its missing units are encoded in bulk (`_add_units`).
_BULK_MIN_UNITS, _BULK_SAMPLE, _BULK_MIN_MISSES = 4096, 1024, 64
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
        self._pairs_file: str | None = None  # a saved `mergeable_pairs` table (the shipped vocabulary's)
        # True when merging any token's bytes gives back that token, so the batch merge needs no vocabulary
        # look-up first (GPT-2's vocabulary; unknown for others, which then look every new piece up)
        self._tokens_merge_to_themselves = False
        self.units = _BoundedCache(self._encode_unit, max_entries=UNIT_CACHE_ENTRIES,
                                   max_chars=UNIT_CACHE_CHARS, max_key=UNIT_MAX_CHARS)
        self.pieces = _BoundedCache(self._encode_piece, max_entries=PIECE_CACHE_ENTRIES,
                                    max_chars=PIECE_CACHE_CHARS, max_key=PIECE_MAX_CHARS)

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
        if len(text) < _SHORT_TEXT or _PLACEHOLDER in text:
            # short: the unit split costs more than it saves; a placeholder in the text: the piece path is exact
            return self._encode_pieces(text)
        units = _split_units(text)
        cache = self.units
        if len(units) > _BULK_MIN_UNITS:
            hits = sum(map(cache.__contains__, islice(units, 1, 1 + _BULK_SAMPLE)))
            if _BULK_SAMPLE - hits >= _BULK_MIN_MISSES:
                self._add_units(units)
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

    def _add_units(self, units: list[str]) -> None:
        """Encode the units of a text that are not cached yet, together.

        First sight of a long text. A unit of letters only is one piece (" " + letters): no pattern pass. The
        others are cut by the pattern one unit at a time (stdlib `re` with ASCII classes for ASCII units, `regex`
        otherwise), with C-level loops only. Then all their new pieces are encoded in one batch (`_add_pieces`),
        and each unit's ids are its pieces' ids. The text's first and last units (which may start or end
        anywhere) are left to the normal path.
        """
        cache = self.units
        new = set(islice(units, 1, len(units) - 1))
        if cache or cache.old:
            new = filterfalse(cache.old.__contains__, filterfalse(cache.__contains__, new))
        new = [u for u in new if len(u) <= cache.max_key]
        with gc_paused():
            # str.isalpha is the pattern's \p{L} (every code point is checked by a test)
            words = list(filter(str.isalpha, new))
            spelled_words = list(map(" ".__add__, words))
            others = list(filterfalse(str.isalpha, new))
            ascii_others = list(filter(str.isascii, others))
            other_others = list(filterfalse(str.isascii, others))
            piece_lists = [*map(_ASCII_PIECES.findall, map(str.replace, map(" ".__add__, ascii_others),
                                                          repeat(_PLACEHOLDER), repeat(" "))),
                           *map(_PIECES.findall, map(str.replace, map(" ".__add__, other_others),
                                                     repeat(_PLACEHOLDER), repeat(" ")))]
            distinct = set(spelled_words)
            distinct.update(chain.from_iterable(piece_lists))
            self._add_pieces(distinct)
            get = self.pieces.__getitem__
            values = list(map(get, spelled_words))  # the piece's own tuple: no new object
            values += map(tuple, map(chain.from_iterable, map(map, repeat(get), piece_lists)))
            cache.add_many(words + ascii_others + other_others, values)
            # freed before the collector runs again, so that it does not walk them
            del piece_lists, values, distinct

    def _add_pieces(self, pieces: Iterable[str]) -> None:
        """Encode the distinct pieces that are not cached yet together: the numpy batch merge when there are
        enough of them, else the vocabulary for those that are one token and the one-word merge for the others."""
        cache = self.pieces
        new = [p for p in filterfalse(cache.old.__contains__, filterfalse(cache.__contains__, pieces))
               if len(p) <= cache.max_key]
        if not new:
            return
        if self._tokens_merge_to_themselves and self._use_lockstep(sum(map(len, new))):
            merger = self._merger()
            if merger.usable:
                cache.add_many(new, merger.merge_text(new))
                return
        words = _to_byte_level_many(new)
        tokens = list(map(self.encoder.get, words))
        keys = [p for p, t in zip(new, tokens) if t is not None]
        values = [(t,) for t in tokens if t is not None]
        todo = [k for k, t in enumerate(tokens) if t is None]
        keys += map(new.__getitem__, todo)
        values += self.bpe_many(list(map(words.__getitem__, todo)))
        cache.add_many(keys, values)

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

    # ---------------------------------------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(map(self.token_bytes.__getitem__, ids))


# ------------------------------------------------------------------------------------------ batch merging
_COLUMN_BITS = 8  # a word's pair position rides in the low bits of its rank while the lowest pair is sought
_LOCKSTEP_MAX_BYTES = 1 << _COLUMN_BITS  # longer words go to the one-word merge
_NO_PAIR = (1 << (31 - _COLUMN_BITS)) - 1  # rank of a pair that makes no token (int32 with the position bits)
_PAIR_TABLE_BITS = 18  # 2**18 slots for GPT-2's 108,299 pairs: most look-ups end at the first probe
# Word length buckets (bytes): the words of a bucket are merged together, padded to the bucket's longest.
_LENGTH_EDGES = (3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 128, 192)


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
    the search for each word's lowest pair is an element-wise minimum over rows); every round removes one part
    from every live word, i.e. one row from the matrix. Pair ranks come from an open-addressing hash table of all
    mergeable pairs, looked up with a few vectorized probes: no Python per pair.
    """

    def __init__(self, bpe: "ByteLevelBPE"):
        import numpy as np

        self.np = np
        self.one_word = bpe.bpe
        pairs = bpe._pair_table()
        self.usable = len(pairs) == 0 or int(pairs[:, 2].max()) < _NO_PAIR
        self.stride = len(bpe.tokens)  # pair key = left * stride + right
        self.rank_to_id = np.zeros(max(bpe.ranks.values(), default=0) + 1, dtype=np.int32)
        self.rank_to_id[np.fromiter(bpe.ranks.values(), dtype=np.int64, count=len(bpe.ranks))] = \
            np.fromiter(map(bpe.encoder.__getitem__, bpe.ranks), dtype=np.int64, count=len(bpe.ranks))
        self.byte_ids = np.array([bpe.encoder[c] for c in BYTE_CHARS], dtype=np.int32)  # UTF-8 byte -> id
        # one shared int object per id: the result tuples point to these, not to 1e6 fresh ints (a cold encode's
        # garbage collection and its final list both touch every int object the tuples hold)
        self.id_objects = np.array(list(range(self.stride)), dtype=object)
        byte_of_id = np.zeros(self.stride, dtype=np.int64)
        byte_of_id[self.byte_ids] = np.arange(256)
        left, right, ranks = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), pairs[:, 2].astype(np.int32)
        # rank of each pair of bytes, at (first << 8) | second: the first round needs no hashing
        self.byte_pairs = np.full(1 << 16, _NO_PAIR, dtype=np.int32)
        small = (left < self.stride) & (right < self.stride)
        small[small] = np.isin(left[small], self.byte_ids) & np.isin(right[small], self.byte_ids)
        self.byte_pairs[byte_of_id[left[small]] << 8 | byte_of_id[right[small]]] = ranks[small]
        self.mask = (1 << _PAIR_TABLE_BITS) - 1
        while 2 * len(pairs) > self.mask:  # keep the table at most half full
            self.mask = 2 * self.mask + 1
        self.shift = np.uint64(64 - self.mask.bit_length())
        self.keys = np.full(self.mask + 1, -1, dtype=np.int64)  # -1: empty slot
        self.values = np.full(self.mask + 1, _NO_PAIR, dtype=np.int32)
        keys = left * self.stride + right
        todo, slot = np.arange(len(keys)), self._slots(keys)
        while len(todo):
            free = self.keys[slot] == -1
            self.keys[slot[free]] = keys[todo[free]]  # keys racing for one free slot: the last write wins it
            won = np.zeros(len(todo), dtype=bool)
            won[free] = self.keys[slot[free]] == keys[todo[free]]
            self.values[slot[won]] = ranks[todo[won]]
            todo, slot = todo[~won], (slot[~won] + 1) & self.mask

    def _slots(self, keys):
        np = self.np  # Fibonacci hashing: the top bits of key * 2**64 / golden ratio
        return ((keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> self.shift).astype(np.intp)

    def _ranks(self, left, right):
        """Rank of each pair (int32 arrays of ids); _NO_PAIR where the two spell no token."""
        np = self.np
        keys = left.astype(np.int64) * self.stride + right
        slot = self._slots(keys)
        found = self.keys[slot]
        out = self.values[slot]
        other = found != keys
        out[other] = _NO_PAIR
        todo = np.flatnonzero(other & (found != -1))  # the slot holds another key: probe on
        while len(todo):
            slot[todo] = (slot[todo] + 1) & self.mask
            found = self.keys[slot[todo]]
            hit = found == keys[todo]
            out[todo[hit]] = self.values[slot[todo[hit]]]
            todo = todo[~hit & (found != -1)]
        return out

    def merge(self, words: list[str]) -> list[tuple[int, ...]]:
        """The ids of each byte-level word (like `ByteLevelBPE.bpe`, which merges those longer than
        _LOCKSTEP_MAX_BYTES)."""
        np = self.np
        raw = np.frombuffer("".join(words).translate(_BYTE_LEVEL_TO_LATIN1).encode("latin-1"), dtype=np.uint8)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return self._merge_all(raw, lens, lambda k: self.one_word(words[k]))

    def merge_text(self, pieces: list[str]) -> list[tuple[int, ...]]:
        """The ids of each piece of text (merging the bytes of a piece that is a token must give that token)."""
        np = self.np
        raw = np.frombuffer("".join(pieces).encode("utf-8"), dtype=np.uint8)
        lens = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        if len(raw) != int(lens.sum()):  # not all ASCII: byte lengths from where each character starts
            char_at = np.flatnonzero((raw & 0xC0) != 0x80)
            byte_starts = char_at[np.cumsum(lens) - lens]
            lens = np.diff(byte_starts, append=len(raw))
        return self._merge_all(raw, lens, lambda k: self.one_word(to_byte_level(pieces[k])))

    def _merge_all(self, raw, lens, one_word) -> list[tuple[int, ...]]:
        np = self.np
        long = np.flatnonzero(lens > _LOCKSTEP_MAX_BYTES)
        values = self.merge_bytes(raw, np.cumsum(lens) - lens, lens, lens <= _LOCKSTEP_MAX_BYTES)
        for k in long.tolist():
            values[k] = one_word(k)
        return values

    def merge_bytes(self, raw, starts, lens, selected) -> list[tuple[int, ...] | None]:
        """The ids of each selected word, given all their bytes (uint8), starts and lengths (selected: at most
        _LOCKSTEP_MAX_BYTES); None for the others."""
        np = self.np
        count = len(lens)
        values: list = [None] * count
        chosen = np.flatnonzero(selected)
        if not len(chosen):
            return values
        order = chosen[np.argsort(lens[chosen], kind="stable")]
        cuts = [0, *np.searchsorted(lens[order], _LENGTH_EDGES).tolist(), len(order)]
        finished = [part for words in map(order.__getitem__, map(slice, cuts, cuts[1:])) if len(words)
                    for part in self._merge_bucket(raw, starts[words], lens[words], words)]
        numbers = np.concatenate([n for n, _, _ in finished])
        flat = self.id_objects[np.concatenate([i for _, _, i in finished])].tolist()
        ends = list(accumulate(np.concatenate([k for _, k, _ in finished]).tolist()))
        done = list(map(tuple, map(flat.__getitem__, map(slice, chain((0,), ends), ends))))
        if len(chosen) == count:
            return list(map(done.__getitem__, np.argsort(numbers, kind="stable").tolist()))
        for k, value in zip(numbers.tolist(), done):
            values[k] = value
        return values

    def _merge_bucket(self, raw, starts, lens, numbers) -> list[tuple]:
        """Merge words of similar length; returns (word numbers, their lengths, their ids word after word) for
        each round where some words finished."""
        np = self.np
        width = int(lens.max())
        row = np.arange(width)[:, None]
        real = row < lens[None, :]
        data = raw[np.where(real, starts[None, :] + row, 0)].astype(np.int32)
        ids = np.where(real, self.byte_ids[data], -1)  # -1: padding below a word's last part
        ranks = np.where(real[1:], self.byte_pairs[data[:-1] << 8 | data[1:]], _NO_PAIR)
        ranks = ranks << _COLUMN_BITS | row[:-1].astype(np.int32)  # rank, then position: leftmost on ties
        length = lens.astype(np.int64)
        finished = []
        while True:
            if len(ranks):
                best = np.minimum.reduce(ranks, axis=0)
                low = best >> _COLUMN_BITS
                over = low == _NO_PAIR
            else:  # one part left in every word
                over = np.ones(len(numbers), dtype=bool)
            if over.any():
                done = ids[:, over].T.ravel()
                finished.append((numbers[over], length[over], done[done >= 0]))
                live = ~over
                if not live.any():
                    return finished
                ids, ranks, numbers, best, low, length = (ids[:, live], ranks[:, live], numbers[live], best[live],
                                                         low[live], length[live])
            count = len(numbers)
            at = best & ((1 << _COLUMN_BITS) - 1)
            # the new token replaces the pair's left part; every part right of it moves up one row
            shifted = np.arange(len(ids) - 1)[:, None] >= at[None, :]
            ids = np.where(shifted, ids[1:], ids[:-1])
            flat_ids = ids.ravel()
            flat_ids[at * count + np.arange(count)] = self.rank_to_id[low]
            length -= 1
            ranks = np.where(shifted[:-1], ranks[1:] - 1, ranks[:-1])
            if not len(ranks):
                continue
            # the new token's pairs with its neighbours (ranks is C-contiguous: ravel is a view)
            flat_ranks = ranks.ravel()
            for first in (at, at - 1):
                words = np.flatnonzero((first >= 0) & (first + 1 < length))
                where = first[words] * count + words
                flat_ranks[where] = (self._ranks(flat_ids[where], flat_ids[where + count]) << _COLUMN_BITS
                                     | first[words])


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while making ~1e5 tuples or lists that form no cycle (bulk and batch
    encoding): each collection would scan the young ones again, and the many survivors trigger full collections
    over every cache entry; that took a quarter of a cold encode and half of a batch's unpacking."""
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
