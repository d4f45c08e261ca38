"""The logits processors transformers configures by name (suppress_tokens, begin_suppress_tokens, forced bos/eos,
sequence_bias, epsilon/eta sampling, the exponential length penalty, renormalize_logits): their fields, checks and
files, and the same numbers as transformers' own LogitsProcessor classes, one by one and chained in the order
transformers' `generate` builds them."""

import json

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from gpt2_core.generation import (GenerationConfig, LogitsProcessor, epsilon_filter, eta_filter, is_plain_greedy,
                                  prepare)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from transformers.generation import logits_process as lp  # noqa: E402

NEW_FIELDS = ("epsilon_cutoff", "eta_cutoff", "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id",
              "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "sequence_bias")


def _scores(rows=4, vocab=20, seed=0, holes=0.0):
    """Random logits; a fraction `holes` already -inf (never a whole row)."""
    rng = np.random.default_rng(seed)
    scores = (rng.normal(size=(rows, vocab)) * 3).astype(np.float32)
    hole = rng.random((rows, vocab)) < holes
    hole[:, rng.integers(vocab)] = False
    scores[hole] = -np.inf
    return scores


def _ids(rows=4, length=6, vocab=20, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, size=(rows, length))


def _theirs(processors, ids, scores):
    out = torch.from_numpy(scores.copy())
    for processor in processors:
        out = processor(torch.from_numpy(ids), out)
    return out.numpy()


def _ours(config, ids, scores, *, prompt_length=None, max_length=30, warp=False, keep=1):
    processor = LogitsProcessor(config, prompt_length=prompt_length or ids.shape[1], min_length=0,
                                max_length=max_length, vocab_size=scores.shape[1], ignore_before=None,
                                min_tokens_to_keep=keep)
    return processor(ids, scores, warp=warp)


# -- fields: transformers' defaults, checks, files


def test_defaults_are_transformers_effective_defaults():
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


def test_ids_outside_the_vocabulary_and_a_missing_eos_raise_in_prepare():
    ids = np.array([[1, 2, 3]])
    for name, value in [("suppress_tokens", [3, 10]), ("begin_suppress_tokens", [12]), ("forced_bos_token_id", 10),
                        ("forced_eos_token_id", [1, 11]), ("sequence_bias", [[[1, 10], 1.0]])]:
        with pytest.raises(ValueError, match=rf"`{name}` holds ids outside the vocabulary \(vocab_size=10\)"):
            prepare(GenerationConfig(**{name: value}), ids, None, n_positions=16, vocab_size=10)
    with pytest.raises(ValueError, match="exponential_decay_length_penalty.*eos_token_id"):
        prepare(GenerationConfig(exponential_decay_length_penalty=(1, 1.5)), ids, None, n_positions=16, vocab_size=10)


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


def test_fields_read_from_a_file_are_applied_not_warned_about():
    import warnings

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


# -- each processor against transformers' class


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 19), max_size=6), st.integers(0, 1000))
def test_suppress_tokens(tokens, seed):
    ids, scores = _ids(seed=seed), _scores(seed=seed, holes=0.2)
    expected = _theirs([lp.SuppressTokensLogitsProcessor(tokens)], ids, scores)
    np.testing.assert_array_equal(_ours(GenerationConfig(suppress_tokens=tokens), ids, scores), expected)


@pytest.mark.parametrize("prompt_length,forced_bos", [(6, None), (1, None), (1, 3), (4, 3)])
def test_begin_suppress_tokens_only_at_the_first_generated_position(prompt_length, forced_bos):
    tokens = [2, 5, 5, 19]
    config = GenerationConfig(begin_suppress_tokens=tokens, forced_bos_token_id=forced_bos)
    # transformers' begin index: the prompt length, one more after a 1-token prompt when a bos is forced first
    begin = prompt_length + (1 if prompt_length == 1 and forced_bos is not None else 0)
    scores = _scores(holes=0.1)
    for length in range(prompt_length, prompt_length + 4):
        ids = _ids(length=length, seed=length)
        theirs = [lp.SuppressTokensAtBeginLogitsProcessor(tokens, begin)]
        if forced_bos is not None:
            theirs.insert(0, lp.ForcedBOSTokenLogitsProcessor(forced_bos))
        expected = _theirs(theirs, ids, scores)
        ours = _ours(config, ids, scores, prompt_length=prompt_length)
        np.testing.assert_array_equal(ours, expected, err_msg=f"length {length}")
        if length == begin:
            assert np.isneginf(ours[:, tokens]).all()


@pytest.mark.parametrize("forced_eos", [7, [7], [7, 0, 19]])
def test_forced_bos_and_eos(forced_eos):
    config = GenerationConfig(forced_bos_token_id=4, forced_eos_token_id=forced_eos)
    scores = _scores(holes=0.2)
    theirs = [lp.ForcedBOSTokenLogitsProcessor(4), lp.ForcedEOSTokenLogitsProcessor(9, forced_eos)]
    for length in range(1, 10):
        ids = _ids(length=length)
        ours = _ours(config, ids, scores, prompt_length=1, max_length=9)
        np.testing.assert_array_equal(ours, _theirs(theirs, ids, scores), err_msg=f"length {length}")
        forced = [4] if length == 1 else forced_eos if length == 8 else None
        if forced is not None:  # only the forced tokens remain, at 0
            assert set(np.nonzero(np.isfinite(ours[0]))[0]) == set(np.atleast_1d(forced)) and ours.max() == 0


SEQUENCES = st.lists(st.integers(0, 3), min_size=1, max_size=3)  # a 4-token vocabulary so that prefixes match


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(SEQUENCES, st.floats(-5, 5)), min_size=1, max_size=6), st.booleans(), st.integers(0, 1000),
       st.integers(1, 5))
def test_sequence_bias(pairs, as_dict, seed, length):
    pairs = [[ids, bias] for ids, bias in pairs]
    given_bias = {tuple(ids): bias for ids, bias in pairs} if as_dict else pairs
    ids, scores = _ids(rows=6, length=length, vocab=4, seed=seed), _scores(rows=6, vocab=6, seed=seed, holes=0.1)
    expected = _theirs([lp.SequenceBiasLogitsProcessor(given_bias)], ids, scores)
    np.testing.assert_array_equal(_ours(GenerationConfig(sequence_bias=given_bias), ids, scores), expected)


def test_sequence_bias_applies_where_the_row_ends_with_the_prefix():
    ids = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 2]])
    config = GenerationConfig(sequence_bias=[[[1, 2, 3], 10.0], [[2, 3], 1.0], [[4], -1.0], [[2, 3], 2.0],
                                             [[0, 3], 5.0]])
    scores = np.zeros((3, 5), np.float32)
    # [2, 3] given twice: the last bias wins; rows 0 and 2 end with [1, 2], so both sequences on token 3 apply;
    # row 1 ends with 0: only [0, 3] does
    np.testing.assert_array_equal(_ours(config, ids, scores), [[0, 0, 0, 12, -1], [0, 0, 0, 5, -1], [0, 0, 0, 12, -1]])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4), st.floats(0.3, 3.0), st.integers(0, 8), st.lists(st.integers(0, 19), min_size=1, max_size=3),
       st.integers(0, 1000))
def test_exponential_decay_length_penalty(start, factor, generated, eos, seed):
    prompt_length = 3
    ids = _ids(length=prompt_length + generated, seed=seed)
    scores = _scores(seed=seed, holes=0.2)
    scores[0, eos] = -np.inf  # an eos already banned stays banned
    scores[1, eos] = -1.5 - np.arange(len(eos))  # negative eos scores grow too (the abs())
    expected = _theirs([lp.ExponentialDecayLengthPenalty((start, factor), eos, prompt_length)], ids, scores)
    config = GenerationConfig(exponential_decay_length_penalty=(start, factor), eos_token_id=eos)
    ours = _ours(config, ids, scores, prompt_length=prompt_length)
    np.testing.assert_array_equal(ours, expected)
    assert np.isneginf(ours[0, eos]).all()
    if generated > start and factor > 1:
        assert (ours[1, eos] > scores[1, eos]).all()


@settings(max_examples=80, deadline=None)
@given(st.floats(1e-4, 0.3), st.integers(1, 4), st.integers(0, 1000), st.floats(0.0, 0.5))
def test_epsilon_and_eta_warpers(cutoff, keep, seed, holes):
    ids, scores = _ids(rows=8, seed=seed), _scores(rows=8, vocab=30, seed=seed, holes=holes)
    np.testing.assert_array_equal(epsilon_filter(scores, cutoff, keep),
                                  _theirs([lp.EpsilonLogitsWarper(cutoff, min_tokens_to_keep=keep)], ids, scores))
    np.testing.assert_array_equal(eta_filter(scores, cutoff, keep),
                                  _theirs([lp.EtaLogitsWarper(cutoff, min_tokens_to_keep=keep)], ids, scores))


def test_epsilon_and_eta_keep_the_likeliest_when_too_few_pass():
    scores = np.stack([np.zeros(50), -np.arange(50)]).astype(np.float32)  # uniform; p = 0.63, 0.23, 0.09, ...
    for cutoff, keep, kept in [(0.1, 1, 2), (0.1, 3, 3), (0.5, 1, 1), (0.5, 3, 3)]:
        out = epsilon_filter(scores, cutoff, keep)
        assert np.isfinite(out[0]).sum() == 50  # a tie at the keep-th largest keeps them all (as transformers)
        assert np.isfinite(out[1]).sum() == kept and np.isfinite(out[1, :kept]).all()
    out = eta_filter(scores, 0.5, 1)  # eta = min(0.5, sqrt(0.5) * exp(-entropy)): 0.48 for the peaked row
    assert np.isfinite(out[1]).sum() == 1 and np.isfinite(out[0]).all()


@pytest.mark.parametrize("warp", [False, True])
def test_renormalize_logits_is_a_log_softmax_last(warp):
    ids, scores = _ids(), _scores(holes=0.2)
    config = GenerationConfig(renormalize_logits=True, do_sample=warp, top_k=5, suppress_tokens=[1, 2])
    ours = _ours(config, ids, scores, warp=warp)
    theirs = [lp.SuppressTokensLogitsProcessor([1, 2])] + ([lp.TopKLogitsWarper(5)] if warp else [])
    expected = _theirs(theirs + [lp.LogitNormalization()], ids, scores)
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected))
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.exp(ours.astype(np.float64)).sum(axis=-1), 1.0, rtol=1e-5)


# -- all of them chained: transformers' own list, from the model's `_get_logits_processor`

VOCAB = 20
TOKENS = st.integers(0, VOCAB - 1)
PROCESSOR_FIELDS = {
    "sequence_bias": st.lists(st.tuples(st.lists(TOKENS, min_size=1, max_size=3), st.floats(-4, 4)), min_size=1,
                              max_size=4).map(lambda pairs: [[ids, bias] for ids, bias in pairs]),
    "repetition_penalty": st.sampled_from([0.7, 1.3]),
    "no_repeat_ngram_size": st.integers(1, 3),
    "bad_words_ids": st.lists(st.lists(TOKENS, min_size=1, max_size=2), min_size=1, max_size=3),
    "min_length": st.integers(1, 10),
    "forced_bos_token_id": TOKENS,
    "forced_eos_token_id": st.one_of(TOKENS, st.lists(TOKENS, min_size=1, max_size=2)),
    "exponential_decay_length_penalty": st.tuples(st.integers(0, 3), st.floats(0.5, 2.0)),
    "suppress_tokens": st.lists(TOKENS, max_size=3),
    "begin_suppress_tokens": st.lists(TOKENS, max_size=3),
    "renormalize_logits": st.just(True),
}
WARPER_FIELDS = {
    "temperature": st.floats(0.5, 2.0), "top_k": st.integers(0, 12), "top_p": st.floats(0.3, 1.0),
    "min_p": st.floats(0.0, 0.3), "typical_p": st.floats(0.3, 1.0), "epsilon_cutoff": st.floats(0.0, 0.1),
    "eta_cutoff": st.floats(0.0, 0.1),
}


@pytest.fixture(scope="module")
def hf_lm():
    from tiny import TINY

    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY)).eval()


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_every_processor_chained_in_transformers_order(hf_lm, data):
    fields = data.draw(st.fixed_dictionaries({}, optional=PROCESSOR_FIELDS))
    do_sample = data.draw(st.booleans())
    if do_sample:
        fields.update(data.draw(st.fixed_dictionaries({}, optional=WARPER_FIELDS)))
        if len(set(np.atleast_1d(fields.get("forced_eos_token_id", [])))) > 1:
            # forced tokens tie (all 0): top-p and typical-p sort them, and torch's sort orders ties its own way
            fields.pop("top_p", None), fields.pop("typical_p", None)
    eos = data.draw(st.one_of(TOKENS, st.lists(TOKENS, min_size=1, max_size=2)))
    prompt_length = data.draw(st.integers(1, 4))
    max_length = prompt_length + data.draw(st.integers(1, 6))
    try:
        ours_config = GenerationConfig(do_sample=do_sample, eos_token_id=eos, **fields)
    except ValueError:
        reject()  # a forced token that is also suppressed
    theirs_config = transformers.GenerationConfig(do_sample=do_sample, eos_token_id=eos, max_length=max_length,
                                                  **fields)
    theirs_config._eos_token_tensor = torch.tensor(np.atleast_1d(eos))  # what generate's special-token step sets
    theirs = hf_lm._get_logits_processor(theirs_config, input_ids_seq_length=prompt_length, device="cpu",
                                         model_kwargs={})
    ours = LogitsProcessor(ours_config, prompt_length=prompt_length, min_length=ours_config.min_length,
                           max_length=max_length, vocab_size=VOCAB, ignore_before=None)
    seed = data.draw(st.integers(0, 1000))
    for length in range(prompt_length, max_length):
        ids, scores = _ids(rows=3, length=length, vocab=VOCAB, seed=seed + length), _scores(rows=3, seed=seed)
        expected = theirs(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        got = ours(ids, scores, warp=do_sample)
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"length {length}")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=f"length {length}")
