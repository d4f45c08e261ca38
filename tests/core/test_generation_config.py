"""GenerationConfig (fields, defaults, checks, generation_config.json) and the numpy logits processors, against
transformers."""

import json
import os
import warnings

import numpy as np
import pytest

from gpt2_core.generation import (GENERATION_CONFIG_NAME, GenerationConfig, LogitsProcessor, decode, prepare,
                                  min_p_filter, resolve_lengths, top_k_filter, top_p_filter, typical_filter)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def test_defaults_are_transformers_effective_defaults():
    ours = GenerationConfig()
    theirs = transformers.GenerationConfig._get_default_generation_params()
    for name in ("max_length", "min_length", "do_sample", "early_stopping", "num_beams", "temperature", "top_k",
                 "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
                 "bad_words_ids", "num_return_sequences", "use_cache"):
        assert getattr(ours, name) == theirs[name], name
    assert ours.max_new_tokens is None and ours.min_new_tokens is None
    assert ours.eos_token_id is None and ours.pad_token_id is None and ours.bos_token_id is None


@pytest.mark.parametrize("kwargs,name", [
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.01), "top_p"), (dict(typical_p=0.0), "typical_p"),
    (dict(do_sample=True, temperature=0.0), "temperature"), (dict(temperature="hot"), "temperature"),
    (dict(num_beams=0), "num_beams"), (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"), (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_length=0), "max_length"), (dict(min_new_tokens=-1), "min_new_tokens"), (dict(top_k=-1), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"), (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(early_stopping="maybe"), "early_stopping"), (dict(early_stopping=1), "early_stopping"),
    (dict(eos_token_id=[]), "eos_token_id"), (dict(eos_token_id=-1), "eos_token_id"),
    (dict(pad_token_id=1.5), "pad_token_id"), (dict(bad_words_ids=[[1], []]), "bad_words_ids"),
    (dict(bad_words_ids=[1, 2]), "bad_words_ids"), (dict(do_sample="yes"), "do_sample"),
    (dict(max_time=0), "max_time"), (dict(max_time="1s"), "max_time"), (dict(min_p=1.5), "min_p"),
])
def test_bad_values_raise_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GenerationConfig(**kwargs)


def test_temperature_zero_is_fine_for_greedy_and_sampling_combinations_are_valid():
    GenerationConfig(temperature=0.0)  # unused without sampling, as transformers (which only warns)
    GenerationConfig(do_sample=True, num_return_sequences=4)
    GenerationConfig(num_beams=4, num_return_sequences=4, early_stopping="never")
    GenerationConfig(eos_token_id=[3, 4], bad_words_ids=[[1], [2, 3]])


def test_update_and_copy():
    config = GenerationConfig()
    assert config.update(top_k=5, foo=1) == {"foo": 1}
    assert config.top_k == 5
    with pytest.raises(ValueError, match="top_p"):
        config.update(top_p=2.0)
    assert config.top_p == 1.0  # a failed update changes nothing
    with pytest.raises(ValueError, match="foo"):
        config.copy(foo=1)
    assert config.copy(num_beams=3).num_beams == 3 and config.num_beams == 1


def test_json_round_trip_keeps_unknown_keys_and_is_atomic(tmp_path):
    config = GenerationConfig(max_new_tokens=30, do_sample=True, top_p=0.8, eos_token_id=[1, 2],
                              extra={"custom_thing": {"a": 1}})
    path = config.save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == [GENERATION_CONFIG_NAME]
    data = json.loads(open(path).read())
    assert data == {"max_new_tokens": 30, "do_sample": True, "top_p": 0.8, "eos_token_id": [1, 2],
                    "custom_thing": {"a": 1}}
    again = GenerationConfig.from_pretrained(tmp_path)
    assert again == config
    assert GenerationConfig.from_pretrained(tmp_path, top_p=0.5).top_p == 0.5


def test_reads_what_transformers_writes_and_the_reverse(tmp_path):
    theirs = transformers.GenerationConfig(bos_token_id=50256, eos_token_id=50256, max_length=50, do_sample=True,
                                           top_k=10, num_beams=4, num_return_sequences=2, length_penalty=0.5)
    theirs.save_pretrained(tmp_path / "a")
    ours = GenerationConfig.from_pretrained(tmp_path / "a")
    assert (ours.max_length, ours.do_sample, ours.top_k, ours.num_beams, ours.length_penalty) == (50, True, 10, 4, 0.5)
    assert ours.extra == {}  # transformers_version is file metadata
    ours.save_pretrained(tmp_path / "b")
    back = transformers.GenerationConfig.from_pretrained(tmp_path / "b")
    assert (back.max_length, back.do_sample, back.top_k, back.num_beams, back.num_return_sequences) == \
        (50, True, 10, 4, 2)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(OSError, match=GENERATION_CONFIG_NAME):
        GenerationConfig.from_pretrained(tmp_path)
    (tmp_path / GENERATION_CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        GenerationConfig.from_pretrained(tmp_path)
    (tmp_path / GENERATION_CONFIG_NAME).write_text('{"top_p": 7}')
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig.from_pretrained(tmp_path)


def test_lengths():
    # unset max_length: 20 new tokens, capped at the context (transformers 5)
    assert resolve_lengths(GenerationConfig(), 5, 1024) == (25, 0)
    assert resolve_lengths(GenerationConfig(), 1010, 1024) == (1024, 0)
    assert resolve_lengths(GenerationConfig(max_length=20), 5, 1024)[0] == 20
    assert resolve_lengths(GenerationConfig(max_new_tokens=7, max_length=9), 5, 1024)[0] == 12
    assert resolve_lengths(GenerationConfig(min_new_tokens=3), 5, 1024) == (25, 8)
    with pytest.raises(ValueError, match="max_length"):
        resolve_lengths(GenerationConfig(max_length=5), 5, 1024)
    with pytest.raises(ValueError, match="n_positions"):
        resolve_lengths(GenerationConfig(max_new_tokens=20), 1010, 1024)
    with pytest.raises(ValueError, match="n_positions"):
        resolve_lengths(GenerationConfig(), 1025, 1024)
    with pytest.raises(ValueError, match="n_positions"):
        resolve_lengths(GenerationConfig(), 1024, 1024)


# -- processors: same numbers as transformers' LogitsProcessors

def _scores(rows=4, vocab=50, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, vocab)).astype(np.float32) * 3


def _ids(rows=4, length=12, vocab=50, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, size=(rows, length))


def _theirs(processor, ids, scores):
    return processor(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()


@pytest.mark.parametrize("penalty", [1.3, 0.6])
def test_repetition_penalty(penalty):
    from transformers.generation import logits_process as lp

    ids, scores = _ids(), _scores()
    ours = LogitsProcessor(GenerationConfig(repetition_penalty=penalty), prompt_length=12, min_length=0,
                           vocab_size=50, ignore_before=np.array([0, 3, 0, 5]))
    theirs = lp.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=torch.tensor([0, 3, 0, 5]))
    np.testing.assert_array_equal(ours(ids, scores, warp=False), _theirs(theirs, ids, scores))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram(n):
    from transformers.generation import logits_process as lp

    ids, scores = _ids(vocab=6), _scores(vocab=6)  # a small vocab so n-grams repeat
    ours = LogitsProcessor(GenerationConfig(no_repeat_ngram_size=n), prompt_length=12, min_length=0, vocab_size=6,
                           ignore_before=None)
    np.testing.assert_array_equal(ours(ids, scores, warp=False),
                                  _theirs(lp.NoRepeatNGramLogitsProcessor(n), ids, scores))


def test_bad_words_and_min_length():
    from transformers.generation import logits_process as lp

    ids, scores = _ids(vocab=6), _scores(vocab=6)
    bad = [[1], [2, 3], [4, 5, 0], [5]]
    config = GenerationConfig(bad_words_ids=bad, eos_token_id=5)
    ours = LogitsProcessor(config, prompt_length=12, min_length=13, vocab_size=6, ignore_before=None)
    expected = _theirs(lp.NoBadWordsLogitsProcessor(bad, eos_token_id=5), ids, scores)
    expected = _theirs(lp.MinLengthLogitsProcessor(13, 5), ids, expected)
    np.testing.assert_array_equal(ours(ids, scores, warp=False), expected)


def test_warpers_keep_the_same_tokens():
    from transformers.generation import logits_process as lp

    ids, scores = _ids(), _scores(rows=16)
    for ours, theirs in [
        (top_k_filter(scores, 7), lp.TopKLogitsWarper(7)),
        (top_p_filter(scores, 0.7), lp.TopPLogitsWarper(0.7)),
        (top_p_filter(scores, 0.7, 3), lp.TopPLogitsWarper(0.7, min_tokens_to_keep=3)),
        (typical_filter(scores, 0.6), lp.TypicalLogitsWarper(0.6)),
        (min_p_filter(scores, 0.2), lp.MinPLogitsWarper(0.2)),
        (min_p_filter(scores, 0.9, 3), lp.MinPLogitsWarper(0.9, min_tokens_to_keep=3)),
    ]:
        expected = _theirs(theirs, ids, scores)
        np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected))
        np.testing.assert_array_equal(ours[~np.isneginf(ours)], scores[~np.isneginf(ours)])


class CountingBackend:
    """A fake model: next-token logits depend on the last token only; counts calls."""

    def __init__(self, vocab=10, seed=0):
        self.table = np.random.default_rng(seed).normal(size=(vocab, vocab)).astype(np.float32) * 4
        self.calls = 0
        self.last = None

    def prefill(self, input_ids, attention_mask):
        self.calls += 1
        self.last = input_ids[:, -1]
        return self.table[self.last]

    def step(self, tokens, attention_mask):
        self.calls += 1
        self.last = tokens
        return self.table[tokens]

    def reorder(self, index):
        pass

    def uniform(self, shape):
        return np.random.default_rng(0).random(shape)


def test_greedy_loop_stops_at_eos_and_pads():
    backend = CountingBackend()
    ids = np.array([[3], [4]])
    first = backend.table[[3, 4]].argmax(-1)
    config, ids, mask, max_length, min_length = prepare(GenerationConfig(eos_token_id=int(first[0]), pad_token_id=9,
                                                                         max_new_tokens=5),
                                                        ids, None, n_positions=100, vocab_size=10)
    out = decode(backend, config, ids, mask, max_length=max_length, min_length=min_length)
    assert out[0, 1] == first[0] and (out[0, 2:] == 9).all()  # row 0 ended at once, then padding
    eos = int(first[0])
    assert out.shape[1] == 6 or eos in out[1, 1:].tolist()  # stops early only when every row has ended
    assert backend.calls == out.shape[1] - 1  # one prefill, then one step per token but the last


def test_file_fields_we_do_not_implement_are_named_when_decoding():
    config = GenerationConfig.from_dict({"remove_invalid_values": True, "output_scores": True, "guidance_scale": 1.5,
                                         "max_new_tokens": 2})
    ids = np.array([[1, 2, 3]])
    with pytest.warns(UserWarning, match=r"ignores .*: guidance_scale=1.5, remove_invalid_values=True$"):
        prepare(config, ids, None, n_positions=16, vocab_size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say about a config without such fields
        prepare(GenerationConfig(max_new_tokens=2, extra={"output_scores": True}), ids, None, n_positions=16,
                vocab_size=10)


@pytest.mark.parametrize("beams", [1, 3])
def test_max_time_stops_after_the_token_that_passes_it(beams):
    ids = np.array([[3], [4]])
    config, ids, mask, max_length, min_length = prepare(
        GenerationConfig(max_new_tokens=6, max_time=1e-9, num_beams=beams, pad_token_id=9),
        ids, None, n_positions=100, vocab_size=10)
    out = decode(CountingBackend(), config, ids, mask, max_length=max_length, min_length=min_length)
    assert out.shape == (2, 2)  # like transformers' MaxTimeCriteria: checked after each token, so one comes
    roomy = config.copy(max_time=60.0)
    assert decode(CountingBackend(), roomy, ids, mask, max_length=max_length, min_length=min_length).shape == (2, 7)
    assert GenerationConfig.from_dict({"max_time": 2.5}).to_dict() == {"max_time": 2.5}


# -- stop strings: transformers' StopStringCriteria is the reference


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from gpt2_core import GPT2Tokenizer

    ours = GPT2Tokenizer.from_pretrained("gpt2")
    directory = tmp_path_factory.mktemp("tok")
    ours.save_pretrained(directory)
    return ours, transformers.AutoTokenizer.from_pretrained(directory)


def test_stop_strings_match_transformers_criteria(tokenizers):
    from hypothesis import given, settings, strategies as st

    from gpt2_core.generation import StopStrings
    from transformers.generation.stopping_criteria import StopStringCriteria

    ours, theirs = tokenizers
    for pieces, expected in ((["st", "op"], True), (["las", "topper"], True), (["hello", " stop"], True),
                             (["stop", "at"], False), (["st", "opera", "tion"], False)):
        ids = [i for piece in pieces for i in ours.encode(piece)]
        assert StopStrings("stop", ours)(np.array(ids)) == expected, pieces
    table = ours._bytes_table()
    ascii_ids = [i for i in range(50257) if table[i].isascii() and 0 < len(table[i]) <= 4]
    cache = {}

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.sampled_from(ascii_ids[:3000]), min_size=1, max_size=8), st.data())
    def check(ids, data):
        text = b"".join(table[i] for i in ids).decode()
        start = data.draw(st.integers(0, len(text) - 1))
        stop = text[start:start + data.draw(st.integers(1, 6))] if data.draw(st.booleans()) else \
            data.draw(st.sampled_from(["the", " a", "\n", "x", "ing", ".", "zz"]))
        if stop not in cache:
            cache[stop] = (StopStrings(stop, ours), StopStringCriteria(theirs, [stop]))
        mine, reference = cache[stop]
        assert mine(np.array(ids)) == bool(reference(torch.tensor([ids]), None)[0]), (stop, ids)

    check()


def test_stop_strings_need_a_tokenizer_and_no_beams():
    with pytest.raises(ValueError, match="tokenizer="):
        prepare(GenerationConfig(stop_strings="x", max_new_tokens=2), np.array([[1]]), None, n_positions=8,
                vocab_size=10)
    with pytest.raises(ValueError, match="beam search"):
        GenerationConfig(stop_strings=["x"], num_beams=2)
    for bad in ("", [], [""], [3]):
        with pytest.raises(ValueError, match="stop_strings"):
            GenerationConfig(stop_strings=bad)


def test_the_package_exports_it_as_transformers_does():
    import gpt2_core
    from gpt2_core import generation, streamers

    assert gpt2_core.GenerationConfig is generation.GenerationConfig  # loaded on first use (numpy)
    assert gpt2_core.TextStreamer is streamers.TextStreamer
    assert set(gpt2_core.__all__) >= {"GenerationConfig", "TextStreamer"}
    with pytest.raises(AttributeError, match="no attribute 'GenerationConfiguration'"):
        gpt2_core.GenerationConfiguration
