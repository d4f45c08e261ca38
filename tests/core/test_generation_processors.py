"""The logits processors and sampling filters, against transformers' own LogitsProcessor classes: one by one
(repetition penalty, no-repeat n-grams, bad words, min length, the warpers, and the processors transformers
configures by name: suppress_tokens, begin_suppress_tokens, forced bos/eos, sequence_bias, epsilon/eta sampling,
the exponential length penalty, renormalize_logits), then all chained in the order transformers' `generate` builds
them."""

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from gpt2_core.generation_config import GenerationConfig
from gpt2_core.logits_process import (LogitsProcessor, epsilon_filter, eta_filter, min_p_filter, top_k_filter,
                                      top_p_filter, typical_filter)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from transformers.generation import logits_process as lp  # noqa: E402


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


# -- each processor against transformers' class


@pytest.mark.parametrize("penalty", [1.3, 0.6])
def test_repetition_penalty(penalty):
    ids, scores = _ids(length=12, vocab=50), _scores(vocab=50)
    ours = LogitsProcessor(GenerationConfig(repetition_penalty=penalty), prompt_length=12, min_length=0,
                           vocab_size=50, ignore_before=np.array([0, 3, 0, 5]))
    theirs = lp.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=torch.tensor([0, 3, 0, 5]))
    np.testing.assert_array_equal(ours(ids, scores, warp=False), _theirs([theirs], ids, scores))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram(n):
    ids, scores = _ids(length=12, vocab=6), _scores(vocab=6)  # a small vocab so n-grams repeat
    ours = LogitsProcessor(GenerationConfig(no_repeat_ngram_size=n), prompt_length=12, min_length=0, vocab_size=6,
                           ignore_before=None)
    np.testing.assert_array_equal(ours(ids, scores, warp=False),
                                  _theirs([lp.NoRepeatNGramLogitsProcessor(n)], ids, scores))


def test_bad_words_and_min_length():
    ids, scores = _ids(length=12, vocab=6), _scores(vocab=6)
    bad = [[1], [2, 3], [4, 5, 0], [5]]
    config = GenerationConfig(bad_words_ids=bad, eos_token_id=5)
    ours = LogitsProcessor(config, prompt_length=12, min_length=13, vocab_size=6, ignore_before=None)
    expected = _theirs([lp.NoBadWordsLogitsProcessor(bad, eos_token_id=5), lp.MinLengthLogitsProcessor(13, 5)], ids,
                       scores)
    np.testing.assert_array_equal(ours(ids, scores, warp=False), expected)


def test_warpers_keep_the_same_tokens():
    ids, scores = _ids(rows=16), _scores(rows=16, vocab=50)
    for ours, theirs in [
        (top_k_filter(scores, 7), lp.TopKLogitsWarper(7)),
        (top_p_filter(scores, 0.7), lp.TopPLogitsWarper(0.7)),
        (top_p_filter(scores, 0.7, 3), lp.TopPLogitsWarper(0.7, min_tokens_to_keep=3)),
        (typical_filter(scores, 0.6), lp.TypicalLogitsWarper(0.6)),
        (min_p_filter(scores, 0.2), lp.MinPLogitsWarper(0.2)),
        (min_p_filter(scores, 0.9, 3), lp.MinPLogitsWarper(0.9, min_tokens_to_keep=3)),
    ]:
        expected = _theirs([theirs], ids, scores)
        np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected))
        np.testing.assert_array_equal(ours[~np.isneginf(ours)], scores[~np.isneginf(ours)])


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
