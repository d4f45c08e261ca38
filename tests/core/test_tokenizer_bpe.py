"""ByteLevelBPE: ids equal tiktoken's on the corpus, on every Unicode 14 character and on arbitrary text, by
every path (pieces, units, bulk); the lockstep merge equals the reference loop; caches stay bounded."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_cases import TEXT, corpus, fresh_bpe, merge_words, random_text, reference, tok  # noqa: F401

from gpt2_core.bpe import ByteLevelBPE
from gpt2_core.bpe_lockstep import LockstepMerger
from gpt2_core.byte_level import to_byte_level


@pytest.mark.parametrize("name", ["man_en.txt", "multi_A_3M.txt"])
def test_corpus_matches_tiktoken(tok, reference, name):
    text = corpus(name)
    # the whole file in one call, from empty caches (bulk path) and again warm
    tok.bpe.reset_caches()
    assert tok.bpe.encode(text) == reference.encode_ordinary(text)
    # chunks cut at arbitrary characters (mid-word, mid-whitespace run)
    for start in range(0, len(text), len(text) // 7):
        chunk = text[start:start + 40_009]
        assert tok.encode(chunk) == reference.encode_ordinary(chunk), start


def test_multilingual_lines_match_tiktoken(tok, reference):
    lines = corpus("multi_A_3M.txt").split("\n")
    ours = [tok.bpe.encode(line) for line in lines]
    theirs = [reference.encode_ordinary(line) for line in lines]
    bad = [line for line, a, b in zip(lines, ours, theirs) if a != b]
    assert not bad, bad[:5]


def test_unicode_14_assigned_code_points_match_tiktoken(tok, reference):
    """Every code point assigned in Unicode 14 (Python 3.11's unicodedata), in contexts that exercise letters,
    numbers, punctuation runs and contractions.

    Characters assigned later are where `regex` (newer Unicode tables) and tiktoken's Rust regex (older ones) may
    disagree; we follow `regex`. bench/bench_tokenizer.py --unicode counts them.
    """
    if unicodedata.unidata_version != "14.0.0":
        pytest.skip(f"needs Unicode 14 tables, this Python has {unicodedata.unidata_version}")
    chars = [chr(c) for c in range(0x110000)
             if not 0xD800 <= c < 0xE000 and unicodedata.category(chr(c)) != "Cn"]
    assert len(chars) == 144_697 + 65 + 137_468  # characters, controls and private use in Unicode 14.0
    # The 131,068 private-use code points of planes 15-16 all behave alike (Co: neither letter, number nor space,
    # 4 UTF-8 bytes): every 16th is enough there, and keeps this test to a few seconds.
    chars = [c for c in chars if ord(c) < 0xF0000 or ord(c) % 16 == 0]
    for start in range(0, len(chars), 4096):
        text = "\n".join(f"a{c}'s {c}{c}x {c}1" for c in chars[start:start + 4096])
        if tok.bpe.encode(text) != reference.encode_ordinary(text):
            bad = [c for c in chars[start:start + 4096]
                   if tok.bpe.encode(f"a{c}'s {c}{c}x {c}1") != reference.encode_ordinary(f"a{c}'s {c}{c}x {c}1")]
            pytest.fail(f"{len(bad)} code points differ, first: {[hex(ord(c)) for c in bad[:10]]}")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_hypothesis_matches_tiktoken_and_round_trips(tok, reference, text):
    ids = tok.bpe.encode(text)
    assert ids == reference.encode_ordinary(text)
    long = text * (300 // (len(text) + 1) + 1)  # past the short-text path: units and their cache
    assert tok.bpe.encode(long) == reference.encode_ordinary(long)
    assert tok.decode(ids) == text
    assert tok.encode(text) == reference.encode(text, allowed_special="all")
    assert tok.decode(tok.encode(text)) == text


def test_cached_equals_uncached(reference):
    text = corpus("man_en.txt")[:300_000] + corpus("multi_A_3M.txt")[:300_000]
    fresh = fresh_bpe()
    expected = reference.encode_ordinary(text)
    assert fresh.encode(text) == expected  # cold: bulk path
    assert fresh.encode(text) == expected  # warm
    words = [line for line in text.split("\n") if line][:2000]
    fresh.reset_caches()
    assert [fresh.encode(w) for w in words] == [reference.encode_ordinary(w) for w in words]  # unit by unit


@pytest.mark.parametrize("bulk", [False, True])
def test_bulk_path_onrandom_text(reference, monkeypatch, bulk):
    """A long new text goes through the bulk path (array cuts, hash indexes, batch merges), or one unit at a time
    when the bulk path is off; a vocabulary not known to merge its tokens to themselves looks its pieces up
    first."""
    from gpt2_core import bpe as bpe_module

    if not bulk:
        monkeypatch.setattr(bpe_module, "_BULK_MIN_CHARS", float("inf"))
    text = random_text(seed=7 + bulk, size=200_000)
    fresh = fresh_bpe()
    assert fresh.encode(text) == reference.encode_ordinary(text)
    assert (fresh._bulk is not None) == bulk
    assert fresh.encode(text) == reference.encode_ordinary(text)  # warm


def test_bulk_path_text_merge_onrandom_text(reference):
    """The builtin vocabulary's bulk path: pieces merged from their UTF-8 bytes with no vocabulary look-up."""
    fresh = fresh_bpe()
    fresh.tokens_merge_to_themselves = True
    fresh.pairs_file = ByteLevelBPE.builtin().pairs_file
    text = random_text(seed=11, size=200_000) + " " + "é" * 300 + " " + "ab" * 200 + " x"  # two long words
    assert fresh.encode(text) == reference.encode_ordinary(text)
    assert fresh._bulk is not None
    assert fresh.encode(text) == reference.encode_ordinary(text)  # warm


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_hypothesis_bulk_path_matches_tiktoken(tok, reference, text):
    """The bulk path on any text, short ones too (its caches are shared, so later examples find units and
    pieces of earlier ones)."""
    pytest.importorskip("numpy")
    bulk = tok.bpe._bulk_encoder(0)
    assert bulk.encode(text) == reference.encode_ordinary(text)
    long = " ".join([text, "x" + text, text + "y", text])
    assert bulk.encode(long) == reference.encode_ordinary(long)


def test_bulk_path_is_exact_when_hashes_collide(reference, monkeypatch):
    """Hashes only propose: an entry counts when its characters equal the text's. With a hash that makes nearly
    everything collide (sequences of one hash, table slots shared by most), the ids stay exact."""
    np = pytest.importorskip("numpy")
    from gpt2_core import bpe_bulk as bpe_module

    hashes = bpe_module._SequenceIndex.hashes
    monkeypatch.setattr(bpe_module._SequenceIndex, "hashes",
                        lambda self, cp, bounds: hashes(self, cp, bounds) & np.uint64(0xF000000000000003))
    bpe = fresh_bpe()
    for seed in (1, 2, 1):  # new, new, warm
        text = random_text(seed=seed, size=10_000)
        assert bpe.encode(text) == reference.encode_ordinary(text)


def test_bulk_caches_are_bounded(reference, monkeypatch):
    """Past a bound, the bulk caches are emptied before the next chunk of text."""
    from gpt2_core import bpe_bulk as bpe_module

    monkeypatch.setattr(bpe_module, "_CHUNK_CHARS", 10_000)
    for name in ("BULK_UNITS", "BULK_PIECES", "BULK_CHARS", "BULK_IDS"):
        monkeypatch.setattr(bpe_module, name, 5_000)
    bpe = fresh_bpe()
    text = random_text(seed=13, size=300_000)
    for _ in range(2):
        assert bpe.encode(text) == reference.encode_ordinary(text)
        bulk = bpe._bulk  # at most a bound and one chunk (20,000 characters at most) past it
        assert len(bulk.units) + len(bulk.pieces) < 5_000 + 2 * 20_000
        assert bulk.units.chars.size + bulk.pieces.chars.size < 5_000 + 2 * 20_000
        assert bulk.unit_ids.size + bulk.piece_ids.size < 5_000 + 2 * 4 * 20_000


def test_bulk_path_long_units_and_text_starts(reference):
    """Units longer than _LONG_UNIT go alone through the unit path; a text's first unit (no " " before it) and
    a later " " + the same word stay apart in the unit index."""
    bpe = ByteLevelBPE.builtin()
    words = " ".join(f"w{i % 997}x" for i in range(3000))
    for text in ["foo" + " foo" * 3000, " foo" * 3000, "foo" + " foo" * 3000,
                 words + " " + "é" * 5000 + " " + words + "  " + " " * 3000 + "x" + "\n" * 2000,
                 "x" * 3000 + " " + words, words + " " + "y" * 3000]:
        assert bpe.encode(text) == reference.encode_ordinary(text)


def test_bulk_path_survives_errors_threads_and_pickling(reference):
    import pickle
    import threading

    bpe = fresh_bpe()
    text = random_text(seed=17, size=50_000)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate, as before
        bpe.encode(text + "\ud800")
    assert bpe.encode(text) == reference.encode_ordinary(text)
    # threads: one at a time in the bulk caches, the others take the unit path
    texts = [random_text(seed=seed, size=50_000) for seed in range(20, 24)]
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, bpe.encode(texts[k]))) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[k] for k in range(4)] == [reference.encode_ordinary(t) for t in texts]
    copy = pickle.loads(pickle.dumps(bpe))  # the caches and the numpy machinery are left behind and rebuilt
    assert copy._bulk is None and not copy.units and copy.encode(text) == reference.encode_ordinary(text)
    builtin = ByteLevelBPE.builtin()
    assert pickle.loads(pickle.dumps(builtin)) is builtin  # a reference to the receiver's own copy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_hypothesis_lockstep_merge_of_text_equals_the_one_word_merge(tok, pieces):
    """What the bulk path calls: `merge_spans`, pieces of a text given by their lengths in characters."""
    np = pytest.importorskip("numpy")
    pieces = [p for p in pieces if not any(0xD800 <= ord(c) < 0xE000 for c in p)] or ["a"]
    lengths = np.array(list(map(len, pieces)), dtype=np.int64)
    starts, counts, flat = LockstepMerger(tok.bpe).merge_spans("".join(pieces), lengths)
    assert [tuple(flat[s:s + c].tolist()) for s, c in zip(starts, counts)] == \
        [tok.bpe.bpe(to_byte_level(p)) for p in pieces]


def test_lockstep_merge_equals_the_one_word_merge(tok):
    bpe = tok.bpe
    words = [to_byte_level(w) for w in random_text(seed=3, size=30_000).split(" ") if len(w) > 1]
    words += ["a" * 300, "ab" * 200, "ĠĠ" * 150, "Ã" * 257, "x1y2" * 60, "ĠÐ¿ÑĢÐ¸Ð²ÐµÑĤ", "Ġthe", "ab"]
    assert merge_words(bpe, words) == list(map(bpe.bpe, words))


def test_lockstep_merge_with_ids_out_of_rank_order(tok):
    """A vocabulary whose ids do not follow merge order (ranks and ids differ)."""
    vocab = {token: (index * 7919) % 50257 for token, index in tok.bpe.encoder.items()}  # a permutation
    permuted, _ = ByteLevelBPE.from_vocab(vocab, tok.bpe.merges())
    assert permuted.ranks is not permuted.encoder
    words = [to_byte_level(w) for w in random_text(seed=5, size=20_000).split(" ") if len(w) > 1]
    expected = [tuple(vocab[tok.bpe.tokens[i]] for i in ids) for ids in map(tok.bpe.bpe, words)]
    assert list(map(permuted.bpe, words)) == expected
    assert merge_words(permuted, words) == expected


def test_long_pieces_use_the_heap_merge_with_the_same_result(tok, reference):
    bpe = tok.bpe
    for word in ["a" * 129, "ab" * 200, "ĠĠ" * 300, "Ã" * 513, "x1y2" * 100]:
        assert bpe._merge_long(word) == bpe._merge(word)
    for text in ["a" * 100_000, " " * 50_000, "🤗" * 5000, "1" * 20_000, "\n" * 10_000 + "x", "ab" * 40_000,
                 ("é" * 3000 + " ") * 3]:
        assert tok.encode(text) == reference.encode_ordinary(text)


def test_caches_are_bounded(tok):
    bpe = ByteLevelBPE.builtin()
    for cache in (bpe.units, bpe.pieces):
        assert len(cache) <= cache.max_entries and len(cache.old) <= cache.max_entries
        assert cache.chars <= cache.max_chars
    small = ByteLevelBPE.from_merges_text(tok.bpe.merges_text())
    small.units.max_entries = small.pieces.max_entries = 50
    text = " ".join(f"w{i}x" for i in range(1000))
    assert small.encode(text) == tok.bpe.encode(text)
    assert small.encode(text) == tok.bpe.encode(text)
    assert len(small.units) <= 50 and len(small.units.old) <= 50 and len(small.pieces) <= 50
