"""ByteLevelBPE: GPT-2's byte-level BPE -- the vocabulary, the reference merge, and which path a text takes.

Ids equal tiktoken's "gpt2" encoding (the r50k pattern with OpenAI's ranks): text is cut into pieces by
`GPT2_PATTERN` (gpt2_core.pretokenize), each piece's UTF-8 bytes are merged pairwise, always merging the adjacent
pair whose concatenation has the lowest rank (leftmost on ties), and each final part is a token id.

Which path a text takes. `GPT2Tokenizer` first cuts added tokens (`<|endoftext|>`, ...) out of a text; each
segment between them comes to `ByteLevelBPE.encode`, which sends it one of three ways:

1. Long (from 8,192 characters once numpy is loaded; from 131,072 before, where the ~0.1 s import pays for
   itself): the bulk path, `BulkEncoder` (gpt2_core.bpe_bulk). A cold long text is mostly new words, which the
   other paths merge one at a time in Python (~1 MB/s); the bulk path makes no Python object per word: it finds
   units and pieces by array operations, looks them up in exact hash indexes, and merges all new pieces of the
   text at once. One thread at a time uses its caches; a long text that finds them busy takes path 3.
2. Short (under 256 characters): `split_pieces` (the pattern) and the piece cache. Cutting units first would
   cost more than it saves.
3. The rest: `split_units` (str methods only) and the unit cache. A unit (a word with the space before it and
   any whitespace after it, see gpt2_core.pretokenize) seen before costs one dict look-up, at C speed; a new
   unit is cut into pieces, which go through the piece cache.

Where a merge happens: only for a piece no cache holds. On paths 2 and 3, `_encode_piece` looks the piece up in
the vocabulary (a piece that is a token is that token) and otherwise calls `bpe`, the reference loop (`_merge`;
`_merge_long`, a heap, for pieces over 128 byte-level characters). On path 1, `LockstepMerger.merge_spans`
(gpt2_core.bpe_lockstep) merges all new pieces of a text together, one numpy round per merge step, with the
same results (pieces over 256 bytes go to `bpe`). Tests check the lockstep merge against `bpe`, and every path
against tiktoken.

Batches (`GPT2Tokenizer.encode_batch`, `tok(texts)`) take the same paths, text after text, in the calling
process; `encode_batch(texts, num_workers=n)` also uses n worker processes (gpt2_core.tokenizer_parallel). Every
cache is bounded (`UNIT_CACHE_*`, `PIECE_CACHE_*`, `bpe_bulk.BULK_*`: a few hundred MB at worst).

The shipped vocabulary is one file, `vocab/merges.txt` (the transformers format). It is all we need: the 256 byte
tokens come first in GPT-2's byte order, then merge k makes token 256 + k, then `<|endoftext|>` is 50256. It is
derived from OpenAI's ranks by `gpt2_core.bpe_ranks` (run `python -m gpt2_core.bpe_ranks RANKS.tiktoken OUT_DIR`),
which also writes `vocab/pairs.npy`, the lockstep merger's table.

Unicode: letters and numbers are whatever the `regex` module's tables say. tiktoken's Rust regex carries older
tables, so characters assigned after Unicode 16 split differently: with regex 2026.5.9 and tiktoken 0.14 that is
4,657 code points (all new in Unicode 17, e.g. CJK Extension J U+323B0..U+33479; none assigned in Unicode 14;
`python bench/bench_tokenizer.py --unicode` lists them). We follow `regex` rather than freeze a table of
exceptions: the choice costs nothing on text written before 2025 and follows Unicode as `regex` updates.
"""

from __future__ import annotations

import heapq
import operator
import os
import sys
import threading
from itertools import accumulate, islice, repeat
from typing import TYPE_CHECKING, Mapping

# byte_level_to_bytes, to_byte_level_bytes, GPT2_PATTERN and WHITESPACE are imported from here by other modules
from .byte_level import (BYTE_CHARS, BYTE_LEVEL_TO_LATIN1, BYTE_TOKEN_ORDER, byte_level_to_bytes,  # noqa: F401
                         to_byte_level, to_byte_level_bytes)
from .pretokenize import GPT2_PATTERN, PLACEHOLDER, WHITESPACE, split_pieces, split_units  # noqa: F401

if TYPE_CHECKING:
    from .bpe_bulk import BulkEncoder

MERGES_HEADER = "#version: 0.2"
EOS_TOKEN = "<|endoftext|>"
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab")
PAIRS_FILE = "pairs.npy"  # `mergeable_pairs` of merges.txt (python -m gpt2_core.bpe_ranks writes both)


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

    def reset(self) -> None:
        self.clear()
        self.old = {}
        self.chars = 0



# Cache bounds (per generation; at most twice this is held). Units are a word with the space before it (and any
# whitespace after it), so 2**18 of them cover the distinct words of several MB of text; pieces are what BPE sees.
UNIT_CACHE_ENTRIES, UNIT_CACHE_CHARS, UNIT_MAX_CHARS = 1 << 18, 1 << 22, 256
PIECE_CACHE_ENTRIES, PIECE_CACHE_CHARS, PIECE_MAX_CHARS = 1 << 17, 1 << 21, 256

# Texts from _BULK_MIN_CHARS characters on take the bulk path if numpy is loaded already, else from
# _BULK_MIN_CHARS_WITHOUT_NUMPY on (its import costs ~0.1 s: what the unit path spends on ~100 KB of new text).
_BULK_MIN_CHARS, _BULK_MIN_CHARS_WITHOUT_NUMPY = 1 << 13, 1 << 17
# One long text at a time goes through the bulk caches (they are not thread-safe); a long text that finds them in
# use takes the unit path instead of waiting (so a process forked while they were in use never waits either).
_BULK_LOCK = threading.Lock()
_SHORT_TEXT = 256  # characters
_NO_RANK = 1 << 62
_LONG_WORD = 128  # byte-level characters; longer words use the O(n log n) heap merge


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
        self.pairs_file: str | None = None  # a saved `mergeable_pairs` table (the shipped vocabulary's)
        # True when merging any token's bytes gives back that token, so the bulk path needs no vocabulary
        # look-up first (GPT-2's vocabulary; unknown for others, which then look every new piece up)
        self.tokens_merge_to_themselves = False
        self._new_caches()

    def _new_caches(self) -> None:
        self.units = _BoundedCache(self._encode_unit, max_entries=UNIT_CACHE_ENTRIES,
                                   max_chars=UNIT_CACHE_CHARS, max_key=UNIT_MAX_CHARS)
        self.pieces = _BoundedCache(self._encode_piece, max_entries=PIECE_CACHE_ENTRIES,
                                    max_chars=PIECE_CACHE_CHARS, max_key=PIECE_MAX_CHARS)
        self._bulk: BulkEncoder | None = None  # built on the first long text

    # Pickles (what spawned worker processes receive) leave the caches behind: they are rebuilt empty, and the
    # shipped vocabulary pickles as a reference to the receiver's own copy.
    def __reduce_ex__(self, protocol):
        if self is ByteLevelBPE._builtin:
            return ByteLevelBPE.builtin, ()
        return super().__reduce_ex__(protocol)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("units", "pieces", "_bulk")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._new_caches()

    # ----------------------------------------------------------------------------------------------- loading
    _builtin: "ByteLevelBPE | None" = None

    @classmethod
    def builtin(cls) -> "ByteLevelBPE":
        """The GPT-2 vocabulary shipped in the package (shared: its caches serve every tokenizer using it)."""
        if cls._builtin is None:
            with open(os.path.join(BUILTIN_DIR, "merges.txt"), encoding="utf-8") as f:
                cls._builtin = cls.from_merges_text(f.read())
            cls._builtin.pairs_file = os.path.join(BUILTIN_DIR, PAIRS_FILE)
            cls._builtin.tokens_merge_to_themselves = True  # checked by tests/core/test_tokenizer_vocab.py
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
                blob = "".join(tokens).translate(BYTE_LEVEL_TO_LATIN1).encode("latin-1")
                ends = list(accumulate(map(len, tokens)))
                self._token_bytes = [blob[e - len(t):e] for t, e in zip(tokens, ends)]
            except UnicodeEncodeError:  # a token outside the byte alphabet (a special token in the vocab)
                self._token_bytes = list(map(byte_level_to_bytes, tokens))
        return self._token_bytes

    # ---------------------------------------------------------------------------------------------- encoding
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, special tokens treated as ordinary text (tiktoken's `encode_ordinary`); the module
        docstring says which path it takes."""
        if len(text) >= _BULK_MIN_CHARS and _BULK_LOCK.acquire(blocking=False):
            try:
                bulk = self._bulk_encoder(len(text))
                if bulk is not None:
                    return bulk.encode(text)
            finally:
                _BULK_LOCK.release()
        if len(text) < _SHORT_TEXT or PLACEHOLDER in text:  # a placeholder in the text: split_units cannot tell
            return self._encode_pieces(text)
        units = split_units(text)
        cache = self.units
        ids = self._encode_pieces(units[0].replace(PLACEHOLDER, " ")) if units[0] else []
        # list.extend returns None, so any() drives the extends to the end at C speed (faster than list(chain))
        any(map(ids.extend, map(cache.__getitem__, islice(units, 1, None))))
        return ids

    def _encode_pieces(self, text: str) -> list[int]:
        ids: list[int] = []
        any(map(ids.extend, map(self.pieces.__getitem__, split_pieces(text))))
        return ids

    def _encode_unit(self, unit: str) -> tuple[int, ...]:
        # A unit is the text after a cut space: " " + unit, placeholders back to spaces.
        if unit.isascii() and unit.isalpha():  # " word": one piece, no pattern needed
            return self._encode_piece(" " + unit)
        return tuple(self._encode_pieces(" " + unit.replace(PLACEHOLDER, " ")))

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        word = to_byte_level(piece)
        token = self.encoder.get(word)
        return (token,) if token is not None else self.bpe(word)

    def _bulk_encoder(self, size: int) -> "BulkEncoder | None":
        """The bulk path for a text of `size` characters, if it should take it: when numpy is loaded already, or
        when the text is long enough to pay for its import (and the vocabulary suits the lockstep merger)."""
        if self._bulk is None:
            if "numpy" not in sys.modules and size < _BULK_MIN_CHARS_WITHOUT_NUMPY:
                return None
            from .bpe_bulk import BulkEncoder

            self._bulk = BulkEncoder(self)
        return self._bulk if self._bulk.usable else None

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
        pieces = split_pieces(text)
        for piece, base in zip(pieces, accumulate(map(len, pieces), initial=start)):
            piece_ids = self.pieces[piece]
            ids += piece_ids
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
