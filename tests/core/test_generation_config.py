"""GenerationConfig against transformers': fields and defaults (the processors' fields included), checks that name
the field and the value, generation_config.json both ways, lengths, and the package's lazy export."""

import json
import os

import pytest

from gpt2_core.generation_config import GENERATION_CONFIG_NAME, GenerationConfig, resolve_lengths

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

NEW_FIELDS = ("epsilon_cutoff", "eta_cutoff", "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id",
              "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "sequence_bias")


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


# -- the processors' fields: transformers' defaults, checks, files


def test_processor_field_defaults_are_transformers_effective_defaults():
    theirs = transformers.GenerationConfig()
    defaults = transformers.GenerationConfig._get_default_generation_params()
    for name in NEW_FIELDS:
        expected = defaults.get(name, getattr(theirs, name))
        assert getattr(GenerationConfig(), name) == (False if name == "renormalize_logits" else expected), name
    assert theirs.renormalize_logits is None  # transformers: None, read as False


@pytest.mark.parametrize("kwargs,name", [
    (dict(suppress_tokens=[1, -2]), "suppress_tokens"), (dict(suppress_tokens=3), "suppress_tokens"),
    (dict(begin_suppress_tokens=[1.0]), "begin_suppress_tokens"), (dict(begin_suppress_tokens="ab"),
                                                                   "begin_suppress_tokens"),
    (dict(forced_bos_token_id=-1), "forced_bos_token_id"), (dict(forced_bos_token_id=[3]), "forced_bos_token_id"),
    (dict(forced_eos_token_id=[]), "forced_eos_token_id"), (dict(forced_eos_token_id=[1, True]),
                                                            "forced_eos_token_id"),
    (dict(forced_eos_token_id=2.0), "forced_eos_token_id"),
    (dict(sequence_bias=[]), "sequence_bias"), (dict(sequence_bias={}), "sequence_bias"),
    (dict(sequence_bias=[[[], 1.0]]), "sequence_bias"), (dict(sequence_bias=[[[1, -1], 1.0]]), "sequence_bias"),
    (dict(sequence_bias=[[[1], "big"]]), "sequence_bias"), (dict(sequence_bias=[[1, 1.0]]), "sequence_bias"),
    (dict(sequence_bias={1: 1.0}), "sequence_bias"), (dict(sequence_bias=[[[1], float("nan")]]), "sequence_bias"),
    (dict(sequence_bias=[[[1], 1.0, 2.0]]), "sequence_bias"),
    (dict(epsilon_cutoff=1.0), "epsilon_cutoff"), (dict(epsilon_cutoff=-0.1), "epsilon_cutoff"),
    (dict(eta_cutoff=1.5), "eta_cutoff"), (dict(eta_cutoff="0.1"), "eta_cutoff"),
    (dict(exponential_decay_length_penalty=(5,)), "exponential_decay_length_penalty"),
    (dict(exponential_decay_length_penalty=(-1, 1.5)), "exponential_decay_length_penalty"),
    (dict(exponential_decay_length_penalty=(2, 0.0)), "exponential_decay_length_penalty"),
    (dict(exponential_decay_length_penalty=(2.5, 1.5)), "exponential_decay_length_penalty"),
    (dict(exponential_decay_length_penalty=1.5), "exponential_decay_length_penalty"),
    (dict(renormalize_logits=1), "renormalize_logits"),
    # transformers' check: a forced token that is also suppressed leaves no token at all
    (dict(suppress_tokens=[3, 4], forced_eos_token_id=[4, 3]), "forced_eos_token_id"),
    (dict(suppress_tokens=[3], forced_bos_token_id=3), "forced_bos_token_id"),
])
def test_bad_values_raise_naming_the_field_and_value(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: .*{name}="):
        GenerationConfig(**kwargs)
    with pytest.raises(ValueError, match=name):  # an update is checked whole, before it changes anything
        GenerationConfig().update(**kwargs)


def test_good_values_pass():
    GenerationConfig(suppress_tokens=[], begin_suppress_tokens=(1, 2), forced_eos_token_id=[3, 4],
                     forced_bos_token_id=0, epsilon_cutoff=3e-4, eta_cutoff=0.0, renormalize_logits=True,
                     exponential_decay_length_penalty=[0, 0.5], sequence_bias=[[[1, 2], -1.0], [[3], 2]])
    GenerationConfig(suppress_tokens=[4], forced_eos_token_id=[4, 5])  # one forced token stays


def test_sequence_bias_is_kept_in_transformers_5_form():
    config = GenerationConfig(sequence_bias={(1, 2): -1.0, (3,): 2})
    assert config.sequence_bias == [[[1, 2], -1.0], [[3], 2.0]]
    assert isinstance(config.sequence_bias[1][1], float)  # transformers wants float biases
    assert GenerationConfig(exponential_decay_length_penalty=[3, 1.5]).exponential_decay_length_penalty == (3, 1.5)


def test_new_fields_round_trip_through_dicts_files_and_transformers(tmp_path):
    config = GenerationConfig(suppress_tokens=[5, 6], begin_suppress_tokens=[7], forced_bos_token_id=1,
                              forced_eos_token_id=[2, 3], sequence_bias={(4, 5): -2.5}, epsilon_cutoff=3e-4,
                              eta_cutoff=2e-3, renormalize_logits=True, exponential_decay_length_penalty=(4, 1.2),
                              do_sample=True)
    assert GenerationConfig.from_dict(config.to_dict()) == config
    config.save_pretrained(tmp_path / "ours")
    data = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
    assert data["sequence_bias"] == [[[4, 5], -2.5]] and data["exponential_decay_length_penalty"] == [4, 1.2]
    again = GenerationConfig.from_pretrained(tmp_path / "ours")
    assert again == config and again.extra == {}
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
    for name in NEW_FIELDS:
        assert getattr(theirs, name) == getattr(config, name) or \
            list(getattr(theirs, name)) == list(getattr(config, name)), name
    theirs.save_pretrained(tmp_path / "theirs")
    assert GenerationConfig.from_pretrained(tmp_path / "theirs") == config


def test_the_package_exports_it_as_transformers_does():
    import gpt2_core
    from gpt2_core import generation, generation_config, streamers

    assert gpt2_core.GenerationConfig is generation_config.GenerationConfig  # loaded on first use (numpy)
    assert generation.GenerationConfig is generation_config.GenerationConfig  # the path every backend imports
    assert gpt2_core.TextStreamer is streamers.TextStreamer
    assert set(gpt2_core.__all__) >= {"GenerationConfig", "TextStreamer"}
    with pytest.raises(AttributeError, match="no attribute 'GenerationConfiguration'"):
        gpt2_core.GenerationConfiguration
