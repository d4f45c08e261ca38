"""Training data: text files -> one uint16 token file (EOS after each document), memory-mapped, and the random
blocks a training step reads from it. Framework-neutral (numpy only), so both backends train on the same bytes.

A token file is cached beside its first input (`.<name>.<key>.tokens`, plus a `.json` saying what it holds) and
reused while the inputs (paths, sizes, modification times) and the tokenizer are unchanged. Block sampling is a
pure function of (seed, step): a resumed or a distributed run draws exactly the blocks an uninterrupted
single-process run draws, with no sampler state to save.

    >>> from gpt2_core.data import prepare_tokens, TokenBlocks
    >>> path = prepare_tokens(["corpus/*.txt"], tokenizer)                      # doctest: +SKIP
    >>> blocks = TokenBlocks(path, block_size=256)                            # doctest: +SKIP
    >>> x = blocks.batch(seed=0, step=0, rows=8)          # (8, 257) int64    # doctest: +SKIP
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .io_utils import atomic_path, atomic_write_text, read_json_object

logger = logging.getLogger(__name__)

TOKEN_DTYPE = np.uint16  # GPT-2's 50257 ids fit; half the disk and page cache of int32
FORMAT_VERSION = 1
# Long documents are encoded in pieces of about this many characters (so the tokenizer's process pool shares
# the work), cut only where the cut cannot change the ids (see _split_for_encoding).
ENCODE_CHUNK_CHARS = 1 << 20
_BINARY_PROBE_BYTES = 8192


class DataError(ValueError):
    """The training or evaluation data cannot be used (missing, empty, binary, too short): one line says why."""


def expand_paths(patterns: Sequence[str | os.PathLike], *, what: str = "--data") -> list[str]:
    """The files named by `patterns` (paths or globs), in the given order, each glob's matches sorted; a path
    listed twice is read once. DataError for a pattern that names nothing or a directory."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    if not patterns:
        raise DataError(f"{what} should name at least one text file. Received: {what}=[]")
    files: list[str] = []
    for pattern in map(os.fspath, patterns):
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True)) if glob.has_magic(pattern) \
            else [os.path.expanduser(pattern)]
        if not matches:
            raise DataError(f"{what}: no file matches {pattern!r}")
        for path in matches:
            if os.path.isdir(path):
                raise DataError(f"{what}: {path!r} is a directory; name the text files (a glob such as "
                                f"'{path.rstrip('/')}/*.txt' works)")
            if not os.path.isfile(path):
                raise DataError(f"{what}: file not found: {path!r}")
            if path not in files:
                files.append(path)
    return files


def read_text(path: str) -> str:
    """The UTF-8 text of `path`; DataError naming the file when it is binary, not UTF-8, or empty."""
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data[:_BINARY_PROBE_BYTES] or b"\0" in data:
        raise DataError(f"{path!r} looks binary (it holds NUL bytes): training data should be UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path!r} is not UTF-8 text (invalid byte at offset {e.start})") from e
    if not text.strip():
        raise DataError(f"{path!r} is empty: training data needs text")
    return text


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of what decides the ids (vocabulary, merges, added tokens): part of the cache key."""
    h = hashlib.sha256()
    h.update(json.dumps(sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])).encode())
    h.update(repr(getattr(tokenizer, "add_prefix_space", False)).encode())
    # the merges decide the ids too: a probe text's ids stand for them
    h.update(repr(tokenizer.encode("Merges decide these ids: tokenization isn't trivial, 1234.")).encode())
    return h.hexdigest()[:16]


def _inputs_fingerprint(files: Sequence[str], tokenizer_key: str) -> str:
    h = hashlib.sha256(f"v{FORMAT_VERSION} {tokenizer_key}".encode())
    for path in files:
        st = os.stat(path)
        h.update(f"\0{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_path_for(files: Sequence[str], tokenizer_key: str) -> str:
    """Where the token file of `files` lives: beside the first file, else (read-only folder) in the user cache."""
    key = _inputs_fingerprint(files, tokenizer_key)
    first = os.path.abspath(files[0])
    name = f".{os.path.basename(first)}.{key}.tokens"
    folder = os.path.dirname(first)
    if not os.access(folder, os.W_OK):
        folder = os.path.join(os.path.expanduser(os.environ.get("XDG_CACHE_HOME", "~/.cache")), "gpt2", "tokens")
        os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


def _split_for_encoding(text: str, size: int = ENCODE_CHUNK_CHARS) -> list[str]:
    """`text` in pieces of about `size` characters, each cut just after a lone newline: one with a non-space
    character on each side. GPT-2's pre-tokenizer makes such a newline a piece of its own (it joins no letter,
    digit or mark, and a whitespace run splits off its last character only when the run is longer than one),
    so encoding the pieces gives the ids of the whole. A longer run is no place to cut: "\n\n1" is "\n", "\n",
    "1" as a whole but "\n\n" (one token) once cut after the run."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = start + size
        while True:
            cut = text.find("\n", cut)
            if cut < 0 or cut + 1 >= len(text) or not (text[cut + 1].isspace() or text[cut - 1].isspace()):
                break
            cut += 1
        if cut < 0 or cut + 1 >= len(text):
            break
        pieces.append(text[start:cut + 1])
        start = cut + 1
    pieces.append(text[start:])
    return pieces


def encode_documents(texts: Sequence[str], tokenizer) -> np.ndarray:
    """The ids of `texts`, each followed by the EOS token, as one TOKEN_DTYPE array."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos_token: documents need a separator")
    if tokenizer.vocab_size > np.iinfo(TOKEN_DTYPE).max + 1 or len(tokenizer) > np.iinfo(TOKEN_DTYPE).max + 1:
        raise DataError(f"token files hold uint16 ids: the vocabulary should have at most 65536 entries. "
                        f"Received: {len(tokenizer)} entries")
    pieces, ends = [], []
    for text in texts:
        pieces.extend(_split_for_encoding(text))
        ends.append(len(pieces))
    ids = tokenizer.encode_batch(pieces)
    out, k = [], 0
    for end in ends:
        out.extend(np.asarray(piece, dtype=TOKEN_DTYPE) for piece in ids[k:end])
        out.append(np.asarray([eos], dtype=TOKEN_DTYPE))
        k = end
    return np.concatenate(out)


def prepare_tokens(patterns: Sequence[str | os.PathLike], tokenizer, *, what: str = "--data",
                   progress: bool = False) -> str:
    """Tokenize the files `patterns` name into one token file (each file a document, EOS after each) and return
    its path; an up-to-date cached file is reused as is. Every file is checked before any is encoded."""
    files = expand_paths(patterns, what=what)
    key = tokenizer_fingerprint(tokenizer)
    path = cache_path_for(files, key)
    if os.path.isfile(path) and os.path.isfile(path + ".json"):
        logger.info("using cached token file %s", path)
        return path
    texts = [read_text(f) for f in files]  # all checked before the (long) encoding starts
    from tqdm.auto import tqdm

    with tqdm(total=sum(map(len, texts)), unit="char", unit_scale=True, desc="Tokenizing", disable=not progress,
              leave=False) as bar:
        ids = encode_documents(texts, tokenizer)
        bar.update(bar.total)
    with atomic_path(path) as tmp:
        ids.tofile(tmp)
    meta = {"format": FORMAT_VERSION, "dtype": np.dtype(TOKEN_DTYPE).name, "tokens": int(ids.size),
            "documents": len(files), "files": [os.path.abspath(f) for f in files], "tokenizer": key,
            "eos_token_id": tokenizer.eos_token_id}
    atomic_write_text(path + ".json", json.dumps(meta, indent=1) + "\n")
    return path


def load_tokens(path: str) -> np.memmap:
    """The token file at `path`, memory-mapped read-only (never read whole into memory)."""
    meta = read_json_object(path + ".json")
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"{path!r} was written by another version of gpt2 (format {meta.get('format')}); "
                        "delete it to tokenize again")
    if os.path.getsize(path) != meta["tokens"] * np.dtype(TOKEN_DTYPE).itemsize:
        raise DataError(f"{path!r} is truncated: expected {meta['tokens']} tokens; delete it to tokenize again")
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


@dataclass(frozen=True)
class Split:
    """A contiguous range [start, stop) of a token file's ids."""

    tokens: np.ndarray
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[Split, Split | None]:
    """(train, val): the last `val_fraction` of the ids is the validation split (None for 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction should be in [0, 1). Received: --val-fraction={val_fraction}")
    n = len(tokens)
    cut = n - int(round(n * val_fraction))
    train = Split(tokens, 0, cut)
    return train, (Split(tokens, cut, n) if cut < n else None)


class TokenBlocks:
    """Blocks of `block_size + 1` consecutive ids (inputs and their next-token labels) from one split.

    `batch(seed, step, rows)` is a pure function: the same arguments give the same blocks, on any rank, after
    any restart. Each rank of a distributed run reads only its own rows of the global batch (`take`).
    """

    def __init__(self, split: Split, block_size: int, *, name: str = "train"):
        if len(split) < block_size + 1:
            raise DataError(f"the {name} data has {len(split)} tokens: too few for one block of --block-size "
                            f"{block_size} (+1 for the labels); give more text or a smaller --block-size")
        self.split = split
        self.block_size = block_size

    @property
    def positions(self) -> int:
        """How many distinct block starts there are."""
        return len(self.split) - self.block_size

    def starts(self, seed: int, step: int, rows: int) -> np.ndarray:
        """`rows` random block starts for step `step` of a run seeded `seed` (uniform, with replacement)."""
        rng = np.random.default_rng([seed, step])
        return rng.integers(0, self.positions, size=rows)

    def read(self, starts: np.ndarray) -> np.ndarray:
        """The blocks at `starts`: an int64 array (len(starts), block_size + 1), read from the memory map."""
        base = self.split.start
        return np.stack([np.asarray(self.split.tokens[base + s: base + s + self.block_size + 1], dtype=np.int64)
                         for s in starts])

    def batch(self, seed: int, step: int, rows: int, *, take: slice = slice(None)) -> np.ndarray:
        """The blocks of a step's global batch of `rows`, or the part `take` selects (a rank's share)."""
        return self.read(self.starts(seed, step, rows)[take])

    def sequential(self, limit: int | None = None):
        """The split cut into consecutive non-overlapping blocks (for a deterministic validation loss)."""
        count = len(self.split) // (self.block_size + 1)
        if limit is not None:
            count = min(count, limit)
        size = self.block_size + 1
        for k in range(count):
            yield self.read(np.asarray([k * size]))[0]
