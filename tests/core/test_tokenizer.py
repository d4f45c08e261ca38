"""GPT2Tokenizer: ids equal tiktoken's GPT-2 encoding, round trips, caches, the call API and loading.

The reference is tiktoken built offline from ../shared/vocab/gpt2.tiktoken with the r50k pattern.
transformers comparisons live in test_tokenizer_hf.py, the shipped vocabulary in test_tokenizer_vocab.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2_core import BatchEncoding, GPT2Tokenizer, hub
from gpt2_core.bpe import BUILTIN_DIR, GPT2_PATTERN, ByteLevelBPE, _split_units, to_byte_level
from gpt2_core.bpe_bulk import _LockstepMerger

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"
EOS = 50256

tiktoken = pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def reference():
    """tiktoken's GPT-2 encoding, built from the shared rank file (tiktoken cannot download here)."""
    from tiktoken.load import load_tiktoken_bpe

    path = SHARED / "vocab" / "gpt2.tiktoken"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(path)),
                             special_tokens={"<|endoftext|>": EOS})


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


def corpus(name: str) -> str:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- exact ids
def test_known_ids(tok):
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.encode("Hello, my dog is cute") == [15496, 11, 616, 3290, 318, 13779]
    assert tok.encode(" Hello world") == [18435, 995]
    assert tok.encode("a<|endoftext|>b") == [64, EOS, 65]


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


# A text strategy that hits GPT-2's pattern where it is subtle: whitespace runs before words and at the end,
# contractions, digits, punctuation runs, emoji and every Unicode category (surrogates excluded).
_FRAGMENT_LIST = [" ", "  ", "   ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u3000", "\xa0", "\u2028",
                              "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", "123", " 4567", "½", "²",
                              "😀", "🤗🤗", "👨‍👩‍👧", "é", "é", "中文", "ß", "ǅ", "\x00", "\x1c", "\x01", "...",
                              "<|endoftext|>", "<|endoftext", "ĠĊ"]
_FRAGMENTS = st.sampled_from(_FRAGMENT_LIST)
# Code points unassigned in this Python's Unicode tables ("Cn") are left out: the ones assigned since (Unicode 15-17)
# are the measured, documented divergence between `regex` and tiktoken (bench_tokenizer.py --unicode).
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=12), _FRAGMENTS),
                max_size=24).map("".join)


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


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_hypothesis_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.convert_tokens_to_string(tok.tokenize(text)) == text


def test_units_cut_where_pieces_cannot_cross():
    text = "a  b\n   c\t d \xa0 e\u3000 f \n\n x  "
    units = _split_units(text)
    assert " ".join(units).replace("\x01", " ") == text
    # every cut space is followed by a non-whitespace character
    pos = len(units[0])
    for unit in units[1:]:
        assert text[pos] == " " and not text[pos + 1].isspace()
        pos += 1 + len(unit)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_units_have_the_pieces_of_the_text(text):
    """The invariant the unit cache rests on: a text's pieces are its first unit's, then those of " " + unit."""
    pieces = regex.compile(GPT2_PATTERN).findall
    units = [u.replace("\x01", " ") for u in _split_units(text)]
    if "\x01" not in text:
        assert pieces(units[0]) + [p for u in units[1:] for p in pieces(" " + u)] == pieces(text)


def test_cached_equals_uncached(reference):
    text = corpus("man_en.txt")[:300_000] + corpus("multi_A_3M.txt")[:300_000]
    fresh = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    expected = reference.encode_ordinary(text)
    assert fresh.encode(text) == expected  # cold: bulk path
    assert fresh.encode(text) == expected  # warm
    words = [line for line in text.split("\n") if line][:2000]
    fresh.reset_caches()
    assert [fresh.encode(w) for w in words] == [reference.encode_ordinary(w) for w in words]  # unit by unit


def _random_text(seed: int, size: int) -> str:
    """Fragments that stress the pattern, random words in several scripts and random code points."""
    import random

    rng = random.Random(seed)
    fragments = [f for f in _FRAGMENT_LIST if f != "\x01"]  # a placeholder character sends text to the piece path
    fragments += [" ", "  ", "\n", "\n    ", "\t", ",", ".", "(", ")", "'s", "'ll", " 2024", "—", "…"]
    alphabets = ["abcdefghijklmnopqrstuvwxyz", "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω",
                 "的一是不了人我在有他这为之大来以个中上们", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "अआइईउऊएऐओऔकखगघचछजझ"]
    out: list[str] = []
    while size > 0:
        roll = rng.random()
        if roll < 0.6:
            letters = rng.choice(alphabets)
            out.append(" " + "".join(rng.choice(letters) for _ in range(rng.randint(1, 14))))
        elif roll < 0.9:
            out.append(rng.choice(fragments))
        else:
            out.append("".join(chr(rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x3000, 0x9FFF),
                                               rng.randint(0x1F300, 0x1FAFF)])) for _ in range(rng.randint(1, 4))))
        size -= len(out[-1])
    return "".join(out)


@pytest.mark.parametrize("bulk", [False, True])
def test_bulk_path_on_random_text(reference, monkeypatch, bulk):
    """A long new text goes through the bulk path (array cuts, hash indexes, batch merges), or one unit at a time
    when the bulk path is off; a vocabulary not known to merge its tokens to themselves looks its pieces up
    first."""
    from gpt2_core import bpe as bpe_module

    if not bulk:
        monkeypatch.setattr(bpe_module, "_BULK_MIN_CHARS", float("inf"))
    text = _random_text(seed=7 + bulk, size=200_000)
    fresh = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    assert fresh.encode(text) == reference.encode_ordinary(text)
    assert (fresh._bulk is not None) == bulk
    assert fresh.encode(text) == reference.encode_ordinary(text)  # warm


def test_bulk_path_text_merge_on_random_text(reference):
    """The builtin vocabulary's bulk path: pieces merged from their UTF-8 bytes with no vocabulary look-up."""
    fresh = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    fresh._tokens_merge_to_themselves = True
    fresh._pairs_file = ByteLevelBPE.builtin()._pairs_file
    text = _random_text(seed=11, size=200_000) + " " + "é" * 300 + " " + "ab" * 200 + " x"  # two long words
    assert fresh.encode(text) == reference.encode_ordinary(text)
    assert fresh._bulk is not None
    assert fresh.encode(text) == reference.encode_ordinary(text)  # warm


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_piece_starts_equal_the_pattern(tok, text):
    """The bulk path's cut by array operations (`_piece_starts`) starts a piece exactly where GPT2_PATTERN does."""
    np = pytest.importorskip("numpy")
    from gpt2_core.bpe_bulk import _piece_starts

    cp = np.array(list(map(ord, text)), dtype=np.uint32)
    expected = [match.start() for match in regex.finditer(GPT2_PATTERN, text)]
    assert _piece_starts(np, cp, tok.bpe._bulk_encoder(0)._classes(cp)).tolist() == expected


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
    bpe = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    for seed in (1, 2, 1):  # new, new, warm
        text = _random_text(seed=seed, size=10_000)
        assert bpe.encode(text) == reference.encode_ordinary(text)


def test_bulk_caches_are_bounded(reference, monkeypatch):
    """Past a bound, the bulk caches are emptied before the next chunk of text."""
    from gpt2_core import bpe_bulk as bpe_module

    monkeypatch.setattr(bpe_module, "_CHUNK_CHARS", 10_000)
    for name in ("BULK_UNITS", "BULK_PIECES", "BULK_CHARS", "BULK_IDS"):
        monkeypatch.setattr(bpe_module, name, 5_000)
    bpe = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    text = _random_text(seed=13, size=300_000)
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

    bpe = ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))
    text = _random_text(seed=17, size=50_000)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate, as before
        bpe.encode(text + "\ud800")
    assert bpe.encode(text) == reference.encode_ordinary(text)
    # threads: one at a time in the bulk caches, the others take the unit path
    texts = [_random_text(seed=seed, size=50_000) for seed in range(20, 24)]
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, bpe.encode(texts[k]))) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[k] for k in range(4)] == [reference.encode_ordinary(t) for t in texts]
    copy = pickle.loads(pickle.dumps(bpe))  # the numpy machinery is left behind and rebuilt
    assert copy._bulk is None and copy.encode(text) == reference.encode_ordinary(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_hypothesis_text_merge_equals_the_one_word_merge(tok, pieces):
    pieces = [p for p in pieces if not any(0xD800 <= ord(c) < 0xE000 for c in p)] or ["a"]
    merger = tok.bpe._merger()
    assert merger.merge_text(pieces) == [tok.bpe.bpe(to_byte_level(p)) for p in pieces]


def test_lockstep_merge_equals_the_one_word_merge(tok):
    bpe = tok.bpe
    words = [to_byte_level(w) for w in _random_text(seed=3, size=30_000).split(" ") if len(w) > 1]
    words += ["a" * 300, "ab" * 200, "ĠĠ" * 150, "Ã" * 257, "x1y2" * 60, "ĠÐ¿ÑĢÐ¸Ð²ÐµÑĤ", "Ġthe", "ab"]
    assert bpe.bpe_many(words) == list(map(bpe.bpe, words))  # the Python loop (small batch)
    assert _LockstepMerger(bpe).merge(words) == list(map(bpe.bpe, words))


def test_lockstep_merge_with_ids_out_of_rank_order(tok):
    """A vocabulary whose ids do not follow merge order (ranks and ids differ)."""
    vocab = {token: (index * 7919) % 50257 for token, index in tok.bpe.encoder.items()}  # a permutation
    permuted, _ = ByteLevelBPE.from_vocab(vocab, tok.bpe.merges())
    assert permuted.ranks is not permuted.encoder
    words = [to_byte_level(w) for w in _random_text(seed=5, size=20_000).split(" ") if len(w) > 1]
    expected = [tuple(vocab[tok.bpe.tokens[i]] for i in ids) for ids in map(tok.bpe.bpe, words)]
    assert list(map(permuted.bpe, words)) == expected
    assert _LockstepMerger(permuted).merge(words) == expected


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


# -------------------------------------------------------------------------------------------- decoding
def test_decode_cut_characters_gives_replacement_characters(tok):
    ids = tok.encode("🤗 é 中")
    for end in range(len(ids) + 1):
        text = tok.decode(ids[:end])
        assert isinstance(text, str)
    assert tok.decode(tok.encode("🤗")[:1]) == "\ufffd"
    assert tok.decode([447, 447, 995]) == "\ufffd\ufffd world"
    assert tok.decode([447], errors="ignore") == ""
    with pytest.raises(UnicodeDecodeError):
        tok.decode([447], errors="strict")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, EOS), max_size=40))
def test_decode_never_raises(tok, ids):
    assert isinstance(tok.decode(ids), str)
    assert isinstance(tok.batch_decode([ids, ids[:3]]), list)


def test_decode_inputs(tok):
    np = pytest.importorskip("numpy")
    ids = [15496, EOS, 995]
    assert tok.decode(ids) == "Hello<|endoftext|> world"
    assert tok.decode(ids, skip_special_tokens=True) == "Hello world"
    assert tok.decode(np.array(ids)) == tok.decode(ids)
    assert tok.decode(15496) == "Hello"
    assert tok.batch_decode(np.array([[15496, 995], [995, 995]])) == ["Hello world", " world world"]
    with pytest.raises(ValueError, match="50257"):
        tok.decode([50257])
    with pytest.raises(ValueError, match="-1"):
        tok.decode([-1])
    assert tok.decode([15496, 13], clean_up_tokenization_spaces=True) == "Hello."


# ------------------------------------------------------------------------------------------------- API
def test_vocabulary_properties(tok):
    assert len(tok) == tok.vocab_size == 50257
    vocab = tok.get_vocab()
    assert len(vocab) == 50257 and vocab["<|endoftext|>"] == EOS and vocab["Ġworld"] == 995
    assert (tok.eos_token, tok.bos_token, tok.unk_token) == ("<|endoftext|>",) * 3
    assert (tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (EOS,) * 3
    assert tok.pad_token is None and tok.pad_token_id is None
    assert tok.model_max_length == 1024 and tok.padding_side == "right" and tok.truncation_side == "right"
    assert tok.add_prefix_space is False and tok.clean_up_tokenization_spaces is False
    assert tok.tokenize("Hello world") == ["Hello", "Ġworld"]
    assert tok.convert_tokens_to_ids(["Hello", "Ġworld", "not-a-token"]) == [15496, 995, EOS]
    assert tok.convert_ids_to_tokens([15496, EOS]) == ["Hello", "<|endoftext|>"]
    assert tok.convert_ids_to_tokens(995) == "Ġworld"
    assert tok.convert_tokens_to_string(["Hello", "Ġworld", "Ċ"]) == "Hello world\n"
    assert tok.all_special_tokens == ["<|endoftext|>"] and tok.all_special_ids == [EOS]


def test_padding_needs_a_pad_token():
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    with pytest.raises(ValueError, match=r"tokenizer.pad_token = tokenizer.eos_token"):
        tok(["a", "b c"], padding=True)
    tok.pad_token = tok.eos_token
    out = tok(["a", "b c"], padding=True)
    assert out.input_ids == [[64, EOS], [65, 269]] and out.attention_mask == [[1, 0], [1, 1]]


def test_call_shapes_and_tensors():
    np = pytest.importorskip("numpy")
    tok = GPT2Tokenizer.from_pretrained("gpt2", pad_token="<|endoftext|>")
    single = tok("Hello world")
    assert isinstance(single, BatchEncoding) and single.input_ids == single["input_ids"] == [15496, 995]
    assert set(single) == {"input_ids", "attention_mask"}
    arrays = tok("Hello world", return_tensors="np")
    assert arrays["input_ids"].shape == (1, 2) and arrays["input_ids"].dtype == np.int64
    left = tok(["Hello world", "Hi"], padding="max_length", max_length=4, padding_side="left", return_tensors="np")
    assert left.input_ids.tolist() == [[EOS, EOS, 15496, 995], [EOS, EOS, EOS, 17250]]
    assert left.attention_mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match="padding"):
        tok(["Hello world", "Hi"], return_tensors="np")
    truncated = tok(["a b c d e", "x"], truncation=True, max_length=2)
    assert truncated.input_ids == [[64, 275], [87]]
    tok.truncation_side = "left"
    assert tok("a b c d e", truncation=True, max_length=2).input_ids == [288, 304]
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="jax")
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="maybe")
    assert tok([]) == {"input_ids": [], "attention_mask": []}


def test_return_tensors_pt():
    torch = pytest.importorskip("torch")
    tok = GPT2Tokenizer.from_pretrained("gpt2", pad_token="<|endoftext|>")
    out = tok(["Hello world", "Hi"], padding=True, return_tensors="pt").to("cpu")
    assert out.input_ids.dtype == torch.long and out.input_ids.tolist() == [[15496, 995], [17250, EOS]]
    assert tok.decode(out.input_ids[0]) == "Hello world"


def test_added_tokens_split_text():
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    assert tok.add_tokens(["<new>", "foo", " bar", "<new>"]) == 3
    assert len(tok) == 50259  # "foo" is already a token: it keeps its id
    assert tok.convert_tokens_to_ids(["<new>", " bar", "foo"]) == [50257, 50258, 21943]
    assert tok.encode("x<new>foox bar barfoo") == [87, 50257, 21943, 87, 50258, 50258, 21943]
    assert tok.decode(tok.encode("x<new>foox bar barfoo")) == "x<new>foox bar barfoo"
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 1
    assert tok.pad_token_id == 50259 and len(tok) == 50260
    assert tok.decode([50259, 64, EOS], skip_special_tokens=True) == "a"
    assert tok("a", padding="max_length", max_length=3).input_ids == [64, 50259, 50259]


def test_parallel_batch_equals_serial(tok):
    texts = corpus("multi_A_3M.txt").split("\n")[:3000] + ["<|endoftext|> x", "", " "]
    serial = [tok.encode(t) for t in texts]
    parallel_tok = GPT2Tokenizer.from_pretrained("gpt2")
    parallel_tok.parallel_min_chars = 1
    try:
        assert parallel_tok.encode_batch(texts) == serial
        assert parallel_tok(texts)["input_ids"] == serial
        parallel_tok.add_tokens(["zzqq"])  # the pool is rebuilt for the new vocabulary
        assert parallel_tok.encode_batch(["azzqqb", "c"]) == [[64, 50257, 65], [66]]
    finally:
        parallel_tok.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=60), st.integers(1, 40))
def test_parallel_chunks_keep_every_text_in_order(texts, count):
    from gpt2_core.tokenizer import _chunks

    chunks = _chunks(texts, count)
    assert [t for chunk in chunks for t in chunk] == texts and all(chunks)


# --------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2",
                                  "openai-community/gpt2", "openai-community/gpt2-xl", "distilbert/distilgpt2"])
def test_presets_load_offline(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = GPT2Tokenizer.from_pretrained(name, cache_dir=tmp_path)
    assert tok.encode("Hello world") == [15496, 995] and tok.model_max_length == 1024


def test_other_names_go_through_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.ModelNotFoundError):
        GPT2Tokenizer.from_pretrained("someone/not-gpt2", cache_dir=tmp_path)
    with pytest.raises(hub.ModelNotFoundError):
        GPT2Tokenizer.from_pretrained(str(tmp_path / "missing" / "dir"))
    with pytest.raises(OSError, match="tokenizer.json or vocab.json"):
        GPT2Tokenizer.from_pretrained(str(tmp_path))


def test_files_in_a_preset_named_directory_win(tmp_path, monkeypatch):
    saved = GPT2Tokenizer.from_pretrained("gpt2")
    saved.add_tokens(["<zz>"])
    saved.save_pretrained(tmp_path / "gpt2")
    monkeypatch.chdir(tmp_path)
    assert GPT2Tokenizer.from_pretrained("gpt2").encode("a<zz>") == [64, 50257]


def test_preset_from_the_hf_cache_wins(tmp_path, hub_server, monkeypatch):
    saved = GPT2Tokenizer.from_pretrained("gpt2", model_max_length=77)
    saved.save_pretrained(tmp_path / "files")
    hub_server.add("openai-community/gpt2", tmp_path / "files")
    hub_server.patch(monkeypatch, cache_dir=tmp_path / "cache")
    hub.resolve_file("openai-community/gpt2", "tokenizer_config.json")  # download into the cache
    assert GPT2Tokenizer.from_pretrained("openai-community/gpt2").model_max_length == 77


def test_save_and_load_round_trip(tmp_path):
    tok = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)
    tok.add_tokens(["<a>", "é!"])
    tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<x>"]})
    files = tok.save_pretrained(tmp_path)
    assert sorted(Path(f).name for f in files) == ["merges.txt", "special_tokens_map.json", "tokenizer.json",
                                                    "tokenizer_config.json", "vocab.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 50257 and vocab["<|endoftext|>"] == EOS
    text = "Hello<a>é! <pad><x> world"
    for source in (tmp_path, ):
        loaded = GPT2Tokenizer.from_pretrained(source)
        assert loaded.encode(text) == tok.encode(text)
        assert (loaded.pad_token, loaded.add_prefix_space, len(loaded)) == ("<pad>", True, len(tok))
        assert loaded.additional_special_tokens == ["<x>"]
    (tmp_path / "tokenizer.json").unlink()  # vocab.json + merges.txt + tokenizer_config.json
    assert GPT2Tokenizer.from_pretrained(tmp_path).encode(text) == tok.encode(text)


def test_from_pretrained_is_lean():
    """No huggingface_hub, numpy, torch or tensorflow import for a preset (from_pretrained stays ~20 ms)."""
    code = textwrap.dedent("""
        import sys
        from gpt2_core import GPT2Tokenizer
        tok = GPT2Tokenizer.from_pretrained("gpt2")
        tok.pad_token = tok.eos_token
        tok(["a", "b c"], padding=True, return_offsets_mapping=True)
        tok.decode(tok.encode("x"))
        print(" ".join(sorted(m for m in ("huggingface_hub", "numpy", "torch", "tensorflow") if m in sys.modules)))
    """)
    env = {"HF_HUB_CACHE": "/nonexistent-cache", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
