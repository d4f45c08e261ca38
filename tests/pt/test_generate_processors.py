"""generate (PyTorch) with the logits processors transformers configures by name -- suppress_tokens,
begin_suppress_tokens, forced bos/eos, sequence_bias, the exponential length penalty, renormalize_logits, epsilon
and eta sampling -- against transformers 5's generate on the same tiny checkpoint (test_generate.py's models and
helpers): the same tokens for greedy decoding and beam search; sampled tokens inside the set transformers' warper
allows."""

import pytest
import test_generate
import torch
from test_generate import EOS, PAD, VOCAB, Exploding, _check_same, frequent_tokens, left_padded, prompts, \
    reference_generate

from gpt2_pt import generation as pt_generation

# test_generate's fixtures: transformers' tiny model, ours loaded from its checkpoint, and each in turn
reference, ours, model = test_generate.reference, test_generate.ours, test_generate.model

# This model repeats itself (14 and 84 come back again and again): the cases below suppress, bias or force the
# tokens it makes, so that each processor changes the output.
CASES = {
    "suppress_tokens": dict(suppress_tokens=[14, 84, 50]),
    "begin_suppress_tokens": dict(begin_suppress_tokens=[14, 50, 22]),
    "forced_eos": dict(forced_eos_token_id=7),
    "forced_eos_list": dict(forced_eos_token_id=[9, 7, EOS]),
    "sequence_bias": dict(sequence_bias=[[[14], -3.0], [[84, 84], -20.0], [[31], 4.5], [[22, 28, 14], -30.0]]),
    "sequence_bias_dict": dict(sequence_bias={(84,): -2.0, (14, 14): -9.0}),
    "renormalize_suppress": dict(renormalize_logits=True, suppress_tokens=[84]),
    "everything": dict(suppress_tokens=[84], begin_suppress_tokens=[14], sequence_bias=[[[50, 26], -5.0]],
                       forced_eos_token_id=[7], renormalize_logits=True, repetition_penalty=1.2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_matches_transformers(reference, model, case):
    out = _check_same(reference, prompts(2), model=model, max_new_tokens=12, pad_token_id=PAD, **CASES[case])
    plain = reference_generate(reference, prompts(2), max_new_tokens=12, pad_token_id=PAD)
    assert not torch.equal(out, plain), "the processor changed nothing: a weak case"


@pytest.mark.parametrize("case", sorted(CASES))
def test_beam_search_matches_transformers(reference, model, case):
    _check_same(reference, prompts(2), model=model, max_new_tokens=10, pad_token_id=PAD, num_beams=3,
                num_return_sequences=2, **CASES[case])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_forced_bos_after_a_one_token_prompt(reference, model, num_beams):
    ids = prompts(2, length=1, seed=4)
    out = _check_same(reference, ids, model=model, max_new_tokens=6, pad_token_id=PAD, num_beams=num_beams,
                      forced_bos_token_id=5, begin_suppress_tokens=[26, 14])
    assert (out[:, 1] == 5).all()
    # transformers forces it only at length 1 (where an encoder-decoder starts): after a longer prompt, nothing
    _check_same(reference, prompts(2), model=model, max_new_tokens=6, pad_token_id=PAD, num_beams=num_beams,
                forced_bos_token_id=5)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("decay", [(0, 1.5), (3, 3.0), (2, 0.6)])
def test_exponential_decay_length_penalty(reference, model, num_beams, decay):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(reference, ids, 2)
    kwargs = dict(max_new_tokens=14, pad_token_id=PAD, eos_token_id=eos, num_beams=num_beams)
    _check_same(reference, ids, model=model, exponential_decay_length_penalty=decay, **kwargs)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batch(reference, model, num_beams):
    ids, mask = left_padded()
    _check_same(reference, ids, mask, model=model, max_new_tokens=10, pad_token_id=PAD, num_beams=num_beams,
                begin_suppress_tokens=[14, 84], sequence_bias=[[[84, 84], -8.0]], forced_eos_token_id=9,
                exponential_decay_length_penalty=(2, 1.4))


def test_config_from_a_file_steers_generate(reference, tmp_path):
    from gpt2_core.generation import GenerationConfig

    config = GenerationConfig(suppress_tokens=[14, 84], forced_eos_token_id=7, pad_token_id=PAD, eos_token_id=EOS,
                              max_new_tokens=8)
    config.save_pretrained(tmp_path)
    out = pt_generation.generate(reference, prompts(2), generation_config=GenerationConfig.from_pretrained(tmp_path))
    ref = reference_generate(reference, prompts(2), suppress_tokens=[14, 84], forced_eos_token_id=7,
                             pad_token_id=PAD, max_new_tokens=8)
    assert torch.equal(out, ref)


# -- epsilon and eta sampling: every sampled token is one transformers' warper allows at its step


def _allowed(model, prefix, **kwargs):
    """(rows, vocab) bool: the next tokens transformers' generate may sample with these settings."""
    config_class = type(model.generation_config)
    defaults = config_class._get_default_generation_params()  # top_k=50, as generate has
    config = config_class(**{**defaults, "do_sample": True, **kwargs})
    warpers = model._get_logits_processor(config, input_ids_seq_length=prefix.shape[1], device="cpu",
                                          model_kwargs={})
    with torch.no_grad():
        return torch.isfinite(warpers(prefix, model(prefix).logits[:, -1]))


# This model's next-token distributions are flat (p <= 0.04, entropy ~4.5): the cutoffs are sized to cut some.
@pytest.mark.parametrize("kwargs", [dict(epsilon_cutoff=0.012, top_k=0), dict(eta_cutoff=0.5, top_k=0),
                                    dict(epsilon_cutoff=0.02, temperature=0.7, top_k=40),
                                    dict(eta_cutoff=0.6, top_p=0.9, top_k=0)],
                         ids=["epsilon", "eta", "epsilon_temperature_top_k", "eta_top_p"])
def test_sampled_tokens_stay_in_the_allowed_set(reference, kwargs):
    ids = prompts(1, seed=3).repeat(300, 1)
    steps = 4
    out = pt_generation.generate(reference, ids, do_sample=True, max_new_tokens=steps, pad_token_id=PAD,
                                 eos_token_id=None, generator=torch.Generator().manual_seed(0), **kwargs)
    without_cutoff = {k: v for k, v in kwargs.items() if not k.endswith("_cutoff")}
    for step in range(steps):
        prefix = out[:, :ids.shape[1] + step]
        allowed = _allowed(reference, prefix, **kwargs)
        token = out[:, ids.shape[1] + step]
        assert allowed[torch.arange(len(token)), token].all(), f"step {step}: a token outside the allowed set"
        wider = _allowed(reference, prefix, **without_cutoff)
        assert allowed.sum() < wider.sum() and (allowed.sum(-1) > 1).all(), "the cutoff should cut, not all"
    assert len(set(out[:, ids.shape[1]].tolist())) > 1


def test_beam_sampling_with_eta_runs(reference):
    out = pt_generation.generate(reference, prompts(2), do_sample=True, num_beams=3, eta_cutoff=0.01,
                                 max_new_tokens=6, pad_token_id=PAD, generator=torch.Generator().manual_seed(0))
    assert out.shape[0] == 2 and torch.equal(out[:, :7], prompts(2))


@pytest.mark.parametrize("kwargs,name", [
    (dict(suppress_tokens=[3, VOCAB]), "suppress_tokens"),
    (dict(begin_suppress_tokens=[-1]), "begin_suppress_tokens"),
    (dict(forced_bos_token_id=VOCAB + 5), "forced_bos_token_id"),
    (dict(forced_eos_token_id=[]), "forced_eos_token_id"),
    (dict(sequence_bias=[[[1, VOCAB], -1.0]]), "sequence_bias"),
    (dict(sequence_bias=[[1], -1.0]), "sequence_bias"),
    (dict(exponential_decay_length_penalty=(2, 1.5), eos_token_id=None), "exponential_decay_length_penalty"),
    (dict(epsilon_cutoff=1.5, do_sample=True), "epsilon_cutoff"),
    (dict(eta_cutoff=-0.1, do_sample=True), "eta_cutoff"),
    (dict(renormalize_logits="yes"), "renormalize_logits"),
    (dict(suppress_tokens=[7], forced_eos_token_id=7), "forced_eos_token_id"),
])
def test_bad_arguments_raise_before_any_work(reference, kwargs, name):
    with pytest.raises(ValueError, match=name):
        pt_generation.generate(Exploding(reference.config), prompts(1), max_new_tokens=5, **kwargs)
