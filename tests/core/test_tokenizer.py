"""GPT2Tokenizer: the call API, added tokens, decoding, loading and saving.

Ids against tiktoken by every encoding path live in test_tokenizer_bpe.py, the pre-tokenization cuts in
test_tokenizer_pretokenize.py, worker processes in test_tokenizer_parallel.py, transformers comparisons in
test_tokenizer_hf.py, the shipped vocabulary in test_tokenizer_vocab.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_cases import EOS, tok  # noqa: F401 (fixture)

from gpt2_core import BatchEncoding, GPT2Tokenizer, hub


# ------------------------------------------------------------------------------------------- exact ids
def test_known_ids(tok):
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.encode("Hello, my dog is cute") == [15496, 11, 616, 3290, 318, 13779]
    assert tok.encode(" Hello world") == [18435, 995]
    assert tok.encode("a<|endoftext|>b") == [64, EOS, 65]


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_hypothesis_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.convert_tokens_to_string(tok.tokenize(text)) == text


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
