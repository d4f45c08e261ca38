"""The decoding loop (generation.prepare and decode) on a fake backend: checks before any model work, eos and
padding, max_time, stop strings against transformers' StopStringCriteria, the plain-greedy fast-path test, and the
names `gpt2_core.generation` has always exported."""

import warnings

import numpy as np
import pytest

from gpt2_core.generation import GenerationConfig, decode, is_plain_greedy, prepare

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


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
    table = ours.token_bytes()
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


def test_ids_outside_the_vocabulary_and_a_missing_eos_raise_in_prepare():
    ids = np.array([[1, 2, 3]])
    for name, value in [("suppress_tokens", [3, 10]), ("begin_suppress_tokens", [12]), ("forced_bos_token_id", 10),
                        ("forced_eos_token_id", [1, 11]), ("sequence_bias", [[[1, 10], 1.0]])]:
        with pytest.raises(ValueError, match=rf"`{name}` holds ids outside the vocabulary \(vocab_size=10\)"):
            prepare(GenerationConfig(**{name: value}), ids, None, n_positions=16, vocab_size=10)
    with pytest.raises(ValueError, match="exponential_decay_length_penalty.*eos_token_id"):
        prepare(GenerationConfig(exponential_decay_length_penalty=(1, 1.5)), ids, None, n_positions=16, vocab_size=10)


def test_fields_read_from_a_file_are_applied_not_warned_about():
    config = GenerationConfig.from_dict({"suppress_tokens": [4], "forced_eos_token_id": 3, "max_new_tokens": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(config, np.array([[1, 2, 3]]), None, n_positions=16, vocab_size=10)
    assert config.extra == {} and config.suppress_tokens == [4]


def test_plain_greedy_excludes_every_field_that_can_change_greedy_tokens():
    assert is_plain_greedy(GenerationConfig())
    for kwargs in (dict(suppress_tokens=[1]), dict(begin_suppress_tokens=[1]), dict(forced_bos_token_id=1),
                   dict(forced_eos_token_id=1), dict(sequence_bias=[[[1], 1.0]]), dict(renormalize_logits=True),
                   dict(exponential_decay_length_penalty=(1, 1.1))):
        assert not is_plain_greedy(GenerationConfig(**kwargs)), kwargs
    # sampling-only warpers cannot change greedy tokens: transformers ignores them there too
    assert is_plain_greedy(GenerationConfig(epsilon_cutoff=0.1, eta_cutoff=0.1))


# the names generation.py exported before the split into three modules, each still the same object there
MOVED = {"generation_config": ("GENERATION_CONFIG_NAME", "DEFAULT_MAX_LENGTH", "GenerationConfig", "config_for",
                               "resolve_lengths"),
         "logits_process": ("LogitsProcessor", "top_k_filter", "top_p_filter", "min_p_filter", "typical_filter",
                            "epsilon_filter", "eta_filter", "log_softmax", "sample_from", "sample_without_replacement"),
         "generation": ("DecodeBackend", "Streamer", "StopStrings", "positions_from_mask", "prepare", "decode",
                        "is_plain_greedy")}


def test_every_name_generation_exported_still_imports_from_it():
    import importlib

    from gpt2_core import generation

    for module, names in MOVED.items():
        home = importlib.import_module(f"gpt2_core.{module}")
        for name in names:
            assert getattr(generation, name) is getattr(home, name), name
    assert set(generation.__all__) == {name for names in MOVED.values() for name in names}
