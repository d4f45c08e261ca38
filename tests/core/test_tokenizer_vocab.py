"""The vocabulary shipped in gpt2_core/vocab: derived from OpenAI's GPT-2 ranks (../shared/vocab/gpt2.tiktoken),
byte for byte what `python -m gpt2_core.bpe_ranks` writes, with its MIT license beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2_core import bpe, bpe_ranks

RANKS = Path(__file__).resolve().parents[2].parent / "shared" / "vocab" / "gpt2.tiktoken"
VOCAB_DIR = Path(bpe.BUILTIN_DIR)


@pytest.fixture(scope="module")
def ranks():
    if not RANKS.exists():
        pytest.skip(f"{RANKS} not found")
    return bpe_ranks.load_tiktoken_ranks(RANKS)


def test_shipped_merges_are_derived_from_the_ranks(ranks, tmp_path):
    assert bpe_ranks.main([str(RANKS), str(tmp_path)]) == 0
    assert (tmp_path / "merges.txt").read_bytes() == (VOCAB_DIR / "merges.txt").read_bytes()
    assert (tmp_path / bpe.PAIRS_FILE).read_bytes() == (VOCAB_DIR / bpe.PAIRS_FILE).read_bytes()


def test_merges_start_like_gpt2():
    lines = (VOCAB_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == bpe.MERGES_HEADER and lines[-1] == ""
    assert len(lines) == 1 + 50_000 + 1
    assert lines[1:5] == ["Ġ t", "Ġ a", "h e", "i n"]


def test_builtin_tokens_equal_the_ranks(ranks):
    builtin = bpe.ByteLevelBPE.builtin()
    assert len(builtin.tokens) == len(ranks) == 50_256
    assert {bpe.byte_level_to_bytes(token): index for token, index in builtin.encoder.items()} == ranks
    assert builtin.token_bytes[15496] == b"Hello" and builtin.token_bytes[995] == b" world"
    assert builtin.merges()[:2] == [("Ġ", "t"), ("Ġ", "a")]


def test_license_ships_with_the_data():
    text = (VOCAB_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in text and "OpenAI" in text
    assert VOCAB_DIR.resolve().parent == Path(bpe.__file__).resolve().parent  # inside the package, not ../shared


def test_bad_rank_files_are_reported(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-a-line\n")
    with pytest.raises(ValueError, match="line 2"):
        bpe_ranks.load_tiktoken_ranks(bad)
    with pytest.raises(ValueError, match="0..255"):
        bpe_ranks.merges_from_ranks({b"a": 0})


def test_bad_vocab_files_are_reported(tmp_path):
    from gpt2_core import GPT2Tokenizer

    (tmp_path / "vocab.json").write_text('{"a": 0}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="vocab.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="line 2"):
        GPT2Tokenizer.from_pretrained(tmp_path)


def test_shipped_pair_table_is_derived_from_the_merges():
    import numpy as np

    from gpt2_core.bpe import PAIRS_FILE, ByteLevelBPE
    from gpt2_core.bpe_lockstep import mergeable_pairs

    shipped = np.load(VOCAB_DIR / PAIRS_FILE).astype(np.int64)
    assert shipped.tolist() == [list(p) for p in mergeable_pairs(ByteLevelBPE.builtin())]


def test_builtin_tokens_merge_to_themselves():
    """What lets the bulk path skip the vocabulary look-up of each new piece (`tokens_merge_to_themselves`)."""
    from tokenizer_cases import merge_words

    from gpt2_core.bpe import ByteLevelBPE

    builtin = ByteLevelBPE.builtin()
    assert builtin.tokens_merge_to_themselves
    tokens = list(builtin.encoder)
    assert merge_words(builtin, tokens) == [(builtin.encoder[t],) for t in tokens]
