"""BulkEncoder: long texts with numpy, and no Python object per word -- the cold path for long texts.

`ByteLevelBPE` (gpt2_core.bpe) encodes a short text unit by unit through dict caches: a word seen before costs one
look-up, but each new word costs Python objects and a Python merge loop (about 1 MB/s). A long text comes here
instead: it is cut into units by array operations on its code points (`pretokenize.unit_cuts`), the units are
looked up in an exact hash index of the units seen before (`_SequenceIndex`), and the text's ids are one gather
of its units' ids. The new units are cut into pieces the same way (`pretokenize.piece_starts`), the pieces looked
up in a second index, and the new pieces merged all at once by the lockstep merger (gpt2_core.bpe_lockstep).

numpy costs ~0.1 s to import, so `ByteLevelBPE` comes here only where it pays for it (see gpt2_core.bpe), and
imports this module on first use: `import gpt2_core` loads neither this module nor numpy.
"""

from __future__ import annotations

from itertools import accumulate, chain
from typing import TYPE_CHECKING

from .bpe_lockstep import LockstepMerger, _bits, _fill_slots, _sort_with_positions
from .byte_level import to_byte_level
from .pretokenize import UNIT_CUT, CodePointClasses, piece_starts, unit_cuts

if TYPE_CHECKING:
    from .bpe import ByteLevelBPE

# Texts are encoded in chunks of about _CHUNK_CHARS characters; the caches hold at most BULK_UNITS units,
# BULK_PIECES pieces, BULK_CHARS characters of both and BULK_IDS ids (~150 MB at worst), plus one chunk's worth:
# past a bound, they are emptied before the next chunk.
_CHUNK_CHARS = 1 << 21
BULK_UNITS, BULK_PIECES, BULK_CHARS, BULK_IDS = 1 << 20, 1 << 20, 1 << 23, 1 << 23
_LONG_UNIT = 1 << 10  # characters; a longer unit (a run of letters without spaces...) is encoded alone, uncached
_WINDOW = 1 << 16  # characters hashed or compared at a time (small temporaries, reused from one window to the next)
_TABLE_LOAD = 2  # hash tables are kept at most half full
_HASH_BASE = 0x5BD1E9955BD1E995  # odd, so invertible modulo 2**64
_HASH_BASE_INVERSE = pow(_HASH_BASE, -1, 1 << 64)
_HASH_MIX = 0x9E3779B97F4A7C15


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
        _fill_slots(self.np, self.slots, self.mask, entries, self._slots(self.hash.values[entries]))


class BulkEncoder:
    """Long texts of one vocabulary, with numpy and no Python object per word (see the module docstring).

    The caches are bounded: when one passes its bound (`BULK_*`), all are emptied before the next chunk of text
    (texts are encoded in chunks of about _CHUNK_CHARS characters, cut between units). `usable` is False for a
    vocabulary too large for the merger's packed tables (never GPT-2's): `ByteLevelBPE` then never comes here.
    """

    def __init__(self, bpe: "ByteLevelBPE"):
        self.bpe, self.merger = bpe, LockstepMerger(bpe)
        self.np, self.usable = self.merger.np, self.merger.usable
        if self.usable:
            self.classes = CodePointClasses(self.np)
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

    def _encode_chunk(self, text: str):
        np = self.np
        cp = self._code_points(text)
        bounds = np.concatenate([[0], unit_cuts(np, cp, self.classes), [len(cp)]])
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
        starts = piece_starts(np, cp, self.classes(cp))
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
        if not bpe.tokens_merge_to_themselves:  # a piece that is a token is that token, merged or not
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
    """`text` in pieces of about `size` characters, cut where UNIT_CUT cuts (no piece and no unit crosses)."""
    start = 0
    while len(text) - start > 2 * size:
        cut = UNIT_CUT.search(text, start + size)
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
