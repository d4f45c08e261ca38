"""gpt2_core.data: token files equal tiktoken's ids with EOS between documents, the cache, bad data, blocks."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core import data
from gpt2_core.tokenizer import GPT2Tokenizer

pytest.importorskip("tiktoken")
from tokenizer_cases import reference  # noqa: E402,F401  (tests/core: tiktoken built from ../shared/vocab)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EOS = 50256


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_token_file_is_tiktoken_ids_with_eos_after_each_document(tmp_path, tok, reference):
    docs = ["Hello world.\n\nA second  paragraph\twith tabs.\n", "Ünïcödé text — and digits 12345.", "short"]
    paths = [write(tmp_path / f"{k}.txt", d) for k, d in enumerate(docs)]
    path = data.prepare_tokens([str(tmp_path / "*.txt")], tok)
    expected = [i for d in docs for i in reference.encode_ordinary(d) + [EOS]]
    tokens = data.load_tokens(path)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    assert tokens.tolist() == expected
    assert os.path.dirname(path) == os.path.dirname(paths[0])  # cached beside the inputs


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \n\t\r.Z1é'\u3000")), max_size=300), st.integers(1, 40))
def test_long_documents_split_for_encoding_give_the_ids_of_the_whole(tok, text, size):
    pieces = data._split_for_encoding(text, size)
    assert "".join(pieces) == text
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)


def test_big_document_matches_tiktoken(tmp_path, tok, reference, monkeypatch):
    corpus = SHARED / "corpus" / "man_en.txt"
    if not corpus.exists():
        pytest.skip(f"{corpus} not found")
    text = corpus.read_text(encoding="utf-8")[:400_000]
    monkeypatch.setattr(data, "ENCODE_CHUNK_CHARS", 10_000)  # many pieces, encoded on every core
    ids = data.encode_documents([text], tok)
    assert ids.tolist() == reference.encode_ordinary(text) + [EOS]


def test_cache_is_reused_until_an_input_changes(tmp_path, tok):
    src = write(tmp_path / "a.txt", "one two three " * 50)
    first = data.prepare_tokens([src], tok)
    stamp = os.stat(first).st_mtime_ns
    assert data.prepare_tokens([src], tok) == first and os.stat(first).st_mtime_ns == stamp
    time.sleep(0.01)
    write(tmp_path / "a.txt", "four five six " * 60)
    second = data.prepare_tokens([src], tok)
    assert second != first
    assert data.load_tokens(second).tolist() == tok.encode("four five six " * 60) + [EOS]


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"), (b"  \n\n ", "empty"), (b"abc\x00def", "binary"), (b"caf\xe9 latin-1", "not UTF-8"),
])
def test_bad_files_are_named_in_one_error(tmp_path, tok, content, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    good = write(tmp_path / "good.txt", "fine text")
    with pytest.raises(data.DataError, match=needle) as e:
        data.prepare_tokens([good, str(bad)], tok)
    assert "bad.txt" in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.glob(".*tokens*"))  # nothing written: every file is checked first


def test_missing_files_and_globs(tmp_path, tok):
    with pytest.raises(data.DataError, match="file not found: .*nope.txt"):
        data.prepare_tokens([str(tmp_path / "nope.txt")], tok)
    with pytest.raises(data.DataError, match=r"no file matches .*\*\.md"):
        data.prepare_tokens([str(tmp_path / "*.md")], tok)
    with pytest.raises(data.DataError, match="is a directory"):
        data.prepare_tokens([str(tmp_path)], tok)
    with pytest.raises(data.DataError, match="at least one"):
        data.prepare_tokens([], tok)


def test_truncated_token_file_is_refused(tmp_path, tok):
    path = data.prepare_tokens([write(tmp_path / "a.txt", "some words " * 20)], tok)
    with open(path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(data.DataError, match="truncated"):
        data.load_tokens(path)


def test_split_and_blocks():
    tokens = np.arange(1000, dtype=np.uint16)
    train, val = data.split_tokens(tokens, 0.1)
    assert (train.start, train.stop, val.start, val.stop) == (0, 900, 900, 1000)
    assert data.split_tokens(tokens, 0.0)[1] is None
    blocks = data.TokenBlocks(train, 16)
    a = blocks.batch(seed=3, step=7, rows=6)
    assert a.shape == (6, 17) and a.dtype == np.int64
    assert np.array_equal(a, blocks.batch(seed=3, step=7, rows=6))          # a pure function of (seed, step)
    assert not np.array_equal(a, blocks.batch(seed=3, step=8, rows=6))
    assert np.all(np.diff(a, axis=1) == 1) and a.max() < 900                 # consecutive ids, inside the split
    halves = [blocks.batch(seed=3, step=7, rows=6, take=slice(r * 3, (r + 1) * 3)) for r in range(2)]
    assert np.array_equal(np.concatenate(halves), a)                          # ranks share one global batch
    vblocks = data.TokenBlocks(val, 16, name="validation")
    assert [b[0] for b in vblocks.sequential()] == [900, 917, 934, 951, 968]
    with pytest.raises(data.DataError, match="validation data has 100 tokens.*--block-size 128"):
        data.TokenBlocks(val, 128, name="validation")
