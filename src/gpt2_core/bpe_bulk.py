"""The numpy paths of the byte-level BPE: many new words merged in lockstep, and the bulk encoder for long texts.

`ByteLevelBPE` (gpt2_core.bpe) encodes a text unit by unit through dict caches: a word seen before costs one
look-up, but each new word costs Python objects and a Python merge loop (about 1 MB/s). That is what a cold
encode of a long text spends its time on. This module is the cold path for long texts:

- `_LockstepMerger` merges many words at once, one numpy round per merge step for all of them, with the same
  results as the one-word loop (pair ranks in a hash table built from the shipped `vocab/pairs.npy`, or from
  `mergeable_pairs`).
- `_BulkEncoder` makes no Python object per word: a text is cut into units and pieces by array operations on its
  code points, they are looked up in exact hash indexes (`_SequenceIndex`), and all new pieces of a text are
  merged together by the lockstep merger.

numpy costs ~0.1 s to import, so `ByteLevelBPE` takes these paths only where they pay for it
(`_BULK_MIN_CHARS*`, `_LOCKSTEP_MIN_BYTES*` in gpt2_core.bpe), and imports this module on first use:
`import gpt2_core` loads neither this module nor numpy. This module imports gpt2_core.bpe, never the other way
round at import time.
"""

from __future__ import annotations

from itertools import accumulate, chain
from typing import TYPE_CHECKING

import regex

from .bpe import _BYTE_LEVEL_TO_LATIN1, BYTE_CHARS, to_byte_level

if TYPE_CHECKING:
    from .bpe import ByteLevelBPE


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
        _fill_slots(np, self.table, self.mask, packed, self._slots(packed >> _RANK_BITS))

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
# Texts are encoded in chunks of about _CHUNK_CHARS characters; the caches hold at most BULK_UNITS units,
# BULK_PIECES pieces, BULK_CHARS characters of both and BULK_IDS ids (~150 MB at worst), plus one chunk's worth:
# past a bound, they are emptied before the next chunk.
_CHUNK_CHARS = 1 << 21
BULK_UNITS, BULK_PIECES, BULK_CHARS, BULK_IDS = 1 << 20, 1 << 20, 1 << 23, 1 << 23
_LONG_UNIT = 1 << 10  # characters; a longer unit (a run of letters without spaces...) is encoded alone, uncached
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


def _fill_slots(np, table, mask, values, slot) -> None:
    """Write each of `values` (distinct, none -1) into `table` (open addressing, -1: empty) at the first empty slot
    from `slot` on, all at once: values racing for one free slot are all written, the last write wins it, and the
    others probe on."""
    todo = np.arange(len(values))
    while len(todo):
        free = table[slot] == -1
        table[slot[free]] = values[todo[free]]
        won = np.zeros(len(todo), dtype=bool)
        won[free] = table[slot[free]] == values[todo[free]]
        todo, slot = todo[~won], (slot[~won] + 1) & mask


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
        _fill_slots(self.np, self.slots, self.mask, entries, self._slots(self.hash.values[entries]))


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


def _to_byte_level_many(texts: list[str]) -> list[str]:
    """`to_byte_level` of each text, with one translation of their concatenation."""
    joined = to_byte_level("".join(texts))
    sizes = map(len, texts)
    if len(joined) != sum(map(len, texts)):  # not all ASCII: cut at UTF-8 byte counts
        sizes = map(len, map(str.encode, texts))
    ends = list(accumulate(sizes))
    return list(map(joined.__getitem__, map(slice, chain((0,), ends), ends)))
