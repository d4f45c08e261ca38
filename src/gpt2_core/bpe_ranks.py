"""tiktoken rank files to the shipped vocabulary: `vocab/merges.txt` and `vocab/pairs.npy`.

    python -m gpt2_core.bpe_ranks RANKS.tiktoken OUT_DIR
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from .bpe import _NO_RANK, MERGES_HEADER, PAIRS_FILE, ByteLevelBPE, to_byte_level_bytes
from .bpe_lockstep import mergeable_pairs


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
    """`python -m gpt2_core.bpe_ranks gpt2.tiktoken OUT_DIR`: write OUT_DIR/merges.txt and OUT_DIR/pairs.npy (how the
    shipped vocabulary was made)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m gpt2_core.bpe_ranks RANKS.tiktoken OUT_DIR\n")
        return 2
    merges = merges_from_ranks(load_tiktoken_ranks(argv[0]))
    os.makedirs(argv[1], exist_ok=True)
    write_merges(merges, os.path.join(argv[1], "merges.txt"))
    bpe = ByteLevelBPE.from_merges_text("\n".join(f"{a} {b}" for a, b in merges))
    write_pairs(bpe, os.path.join(argv[1], PAIRS_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
