"""LockstepMerger: BPE for many words at once, with numpy -- the bulk path's merge.

`ByteLevelBPE.bpe` merges one word in a Python loop (about 1 MB/s of new words). Here all new pieces of a text are
merged together, one numpy round per merge step for all of them, with the same results (a hypothesis test
checks them equal). The pair ranks come from an open-addressing hash table of every mergeable pair, built from
the shipped `vocab/pairs.npy` (or from `mergeable_pairs` for other vocabularies).
"""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

from .byte_level import BYTE_CHARS, to_byte_level_bytes

if TYPE_CHECKING:
    from .bpe import ByteLevelBPE

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


def pair_table(bpe: "ByteLevelBPE"):
    """`mergeable_pairs` as an (n, 3) numpy array: the shipped file when there is one."""
    import numpy as np

    if bpe.pairs_file is not None:
        try:
            return np.load(bpe.pairs_file)
        except (OSError, ValueError):  # not installed with the package: work it out
            pass
    return np.array(mergeable_pairs(bpe), dtype=np.int64).reshape(-1, 3)


class LockstepMerger:
    """BPE for many words at once, with numpy.

    Each round merges, in every unfinished word, its lowest-ranked pair (leftmost on ties): exactly the merge the
    one-word loop would make next, so the results are the same, while the Python overhead is paid once per round
    instead of once per merge. Words of similar length share a matrix, one column per word (column-major, so that
    the search for each word's lowest pair is one element-wise minimum over rows). A merge does not move the
    matrix: the merged token takes the left part's row, the right part's row dies, and per-word links to the
    next and previous live rows say who the neighbours are, so a round costs the minimum plus O(1) per word. Pair
    ranks come from an open-addressing hash table of all mergeable pairs, looked up with a few vectorized
    probes: no Python per pair.

    Results are "CSR" arrays (starts, counts, flat): word k's ids are flat[starts[k]:starts[k] + counts[k]].
    """

    def __init__(self, bpe: "ByteLevelBPE"):
        import numpy as np

        self.np = np
        self.one_word = bpe.bpe
        pairs = pair_table(bpe)
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

    def merge_spans(self, text: str, lengths):
        """The ids of each piece of `text`, which is cut into pieces of `lengths` characters (CSR arrays)."""
        np = self.np
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        starts = np.cumsum(lengths) - lengths
        lens = lengths
        if len(raw) != len(text):  # not all ASCII: byte lengths from where each character starts
            byte_starts = np.flatnonzero((raw & 0xC0) != 0x80)[starts]
            lens = np.diff(byte_starts, append=len(raw))
        return self.merge_bytes(raw, np.cumsum(lens) - lens, lens)

    def merge_bytes(self, raw, byte_starts, lens):
        """The ids of each word given as a span (start, length) of a byte array (uint8), as CSR arrays. Words
        longer than _LOCKSTEP_MAX_BYTES go to the one-word merge."""
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
            values = [self.one_word(to_byte_level_bytes(raw[byte_starts[k]:byte_starts[k] + lens[k]].tobytes()))
                      for k in long]
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


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def _sort_with_positions(np, values):
    """`values` (uint64) sorted with each one's position in its low bits (replacing those bits of the value):
    a plain sort (fast) instead of an argsort; ties keep their order."""
    bits = np.uint64(_bits(len(values)))
    keys = values >> bits << bits | np.arange(len(values), dtype=np.uint64)
    keys.sort()
    return keys


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

