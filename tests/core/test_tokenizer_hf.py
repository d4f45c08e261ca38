"""GPT2Tokenizer against transformers 5's GPT-2 tokenizer (the `tokenizers` backend) loaded from our saved files:
ids, masks, padding, truncation, pairs, offsets, added tokens, decoding; and our loading of its files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core import GPT2Tokenizer

transformers = pytest.importorskip("transformers")
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
EOS = 50256

TEXTS = ["Hello world", " leading space", "héllo wörld 😀 中文字符", "a  b   c\n\n d  ", "it's, they'll; we've!",
         "", " ", "1234567 89", "🤗🤗 x", "<|endoftext|> middle <|endoftext|>", "tab\there\r\nline", "\u3000 x \xa0y"]


def hf_from(directory):
    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    assert type(tok).__name__ in ("GPT2Tokenizer", "GPT2TokenizerFast")
    return tok


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(ours, transformers' tokenizer built from our saved files), both with pad_token = eos."""
    ours = GPT2Tokenizer.from_pretrained("gpt2")
    ours.pad_token = ours.eos_token
    directory = tmp_path_factory.mktemp("gpt2_tok")
    ours.save_pretrained(directory)
    return ours, hf_from(directory)


def corpus_lines(name, count):
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    lines = path.read_text(encoding="utf-8").split("\n")
    return lines[:: max(1, len(lines) // count)][:count]


def test_ids_equal_on_corpus_lines_and_chunks(pair):
    ours, hf = pair
    lines = corpus_lines("man_en.txt", 300) + corpus_lines("multi_A_3M.txt", 600) + TEXTS
    assert ours(lines)["input_ids"] == hf(lines)["input_ids"]
    chunk = "\n".join(corpus_lines("multi_A_3M.txt", 3000))
    assert ours.encode(chunk) == hf.encode(chunk)


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_padding_and_truncation(pair, side):
    ours, hf = pair
    ours.padding_side = hf.padding_side = side
    try:
        for kwargs in [dict(padding=True), dict(padding="longest", pad_to_multiple_of=8),
                       dict(padding="max_length", max_length=12), dict(truncation=True, max_length=3),
                       dict(padding=True, truncation=True, max_length=4, return_token_type_ids=True),
                       dict(padding=True, return_special_tokens_mask=True, return_length=True),
                       dict(return_attention_mask=False)]:
            a, b = ours(TEXTS, **kwargs), hf(TEXTS, **kwargs)
            assert dict(a) == dict(b), kwargs
            tensor_kwargs = {k: v for k, v in kwargs.items() if k not in ("padding", "return_length")}
            if "max_length" in kwargs:
                tensor_kwargs.update(padding="max_length", truncation=True)
            else:
                tensor_kwargs["padding"] = True
            arrays = ours(TEXTS, return_tensors="np", **tensor_kwargs)
            expected = hf(TEXTS, return_tensors="np", **tensor_kwargs)
            assert {k: v.tolist() for k, v in arrays.items()} == {k: v.tolist() for k, v in expected.items()}
    finally:
        ours.padding_side = hf.padding_side = "right"


def test_pairs_and_truncation_strategies(pair):
    ours, hf = pair
    firsts = ["one two three four five six seven", "a b", "x", "héllo 😀 wörld"]
    seconds = ["p q r s", "alpha beta gamma delta epsilon zeta eta theta", "y", "中文 字符"]
    for max_length in [2, 3, 4, 5, 7, 9, 30]:
        kwargs = dict(truncation=True, max_length=max_length, padding=True, return_token_type_ids=True,
                      return_offsets_mapping=True)
        assert dict(ours(firsts, seconds, **kwargs)) == dict(hf(firsts, seconds, **kwargs)), max_length
    for strategy in ["only_first", "only_second"]:
        kwargs = dict(truncation=strategy, max_length=9)
        assert ours(firsts[0], seconds[0], **kwargs)["input_ids"] == hf(firsts[0], seconds[0], **kwargs)["input_ids"]
    assert ours.encode("hello world", "again") == hf.encode("hello world", "again")


def test_offsets_equal(pair):
    ours, hf = pair
    texts = TEXTS + corpus_lines("multi_A_3M.txt", 200)
    for text in texts:
        assert ours(text, return_offsets_mapping=True) == dict(hf(text, return_offsets_mapping=True)), text


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_hypothesis_ids_offsets_and_decode_equal(pair, text):
    ours, hf = pair
    a, b = ours(text, return_offsets_mapping=True), hf(text, return_offsets_mapping=True)
    assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"]
    assert ours.decode(a["input_ids"]) == hf.decode(b["input_ids"]) == text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, EOS), max_size=30))
def test_hypothesis_decode_of_any_ids_equal(pair, ids):
    ours, hf = pair
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)


def test_added_tokens_pad_token_and_prefix_space_survive_saving(tmp_path):
    ours = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)
    ours.add_tokens(["<new>", " bar", "foo", "zz top"])
    ours.add_special_tokens({"pad_token": "<pad>"})
    ours.save_pretrained(tmp_path)
    hf = hf_from(tmp_path)
    assert (len(hf), hf.pad_token, hf.pad_token_id) == (len(ours), "<pad>", ours.pad_token_id)
    texts = ["x<new>foox bar barfoo", "a<pad>b <|endoftext|>zz top", "Hello world", "\nx", "é<new>"]
    for kwargs in [dict(), dict(padding=True), dict(return_offsets_mapping=True, padding=True)]:
        assert dict(ours(texts, **kwargs)) == dict(hf(texts, **kwargs)), kwargs
    ids = ours(texts)["input_ids"]
    assert ours.batch_decode(ids) == hf.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == hf.batch_decode(ids, skip_special_tokens=True)
    assert ours.tokenize(texts[0]) == hf.tokenize(texts[0])


def test_we_load_what_transformers_saves(tmp_path, pair):
    _, hf_base = pair
    hf = transformers.AutoTokenizer.from_pretrained(hf_base.name_or_path)
    hf.add_tokens(["<new>"])
    hf.add_special_tokens({"pad_token": "<pad>"})
    hf.save_pretrained(tmp_path)  # transformers 5: tokenizer.json + tokenizer_config.json only
    ours = GPT2Tokenizer.from_pretrained(tmp_path)
    texts = ["a<new>b<pad>", "Hello world<|endoftext|>"]
    assert dict(ours(texts, padding=True)) == dict(hf(texts, padding=True))
    assert (len(ours), ours.pad_token_id, ours.model_max_length) == (len(hf), hf.pad_token_id, hf.model_max_length)
