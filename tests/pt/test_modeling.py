"""GPT2Model / GPT2LMHeadModel against transformers 5, from checkpoints transformers saved: every config variant,
padded batches, token types, past continuation, labels, hidden states, attentions and every past tensor."""

import pytest
import torch
from pt_utils import (TINY, assert_close, eager_twin, hf_call, hf_model, hf_past, positions_from_mask,
                      save_and_load)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpt2_pt
from gpt2_core.config import ACTIVATIONS
from gpt2_pt import modeling

VARIANTS = {
    "default": {},
    "n_inner_relu": {"n_inner": 48, "activation_function": "relu"},
    "no_scale": {"scale_attn_weights": False},
    "inverse_layer_idx": {"scale_attn_by_inverse_layer_idx": True},
    "reorder_and_upcast": {"reorder_and_upcast_attn": True},
    "untied": {"tie_word_embeddings": False},
}
CLASSES = ("GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
           "GPT2ForTokenClassification", "GPT2ForQuestionAnswering")


def batch(seed=1, B=3, T=7):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (B, T), generator=gen)


MASKS = {  # batch of 3, 7 tokens: full rows, right padding, left padding
    "none": None,
    "right": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]]),
    "left": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per variant: (transformers model, ours), built once for the module."""
    cache = {}

    def get(variant):
        if variant not in cache:
            hf = hf_model("GPT2LMHeadModel", **VARIANTS[variant])
            cache[variant] = hf, save_and_load(hf, tmp_path_factory.mktemp(variant))
        return cache[variant]
    return get


@pytest.mark.parametrize("class_name", CLASSES)
def test_state_dict_names_and_shapes_equal_transformers(class_name):
    for overrides in ({}, {"tie_word_embeddings": False, "n_inner": 40}):
        hf = hf_model(class_name, **overrides)
        ours = getattr(gpt2_pt, class_name)(gpt2_pt.GPT2Config(**{**TINY, **overrides}))
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
               {k: tuple(v.shape) for k, v in hf.state_dict().items()}


def test_lm_head_is_tied_to_wte_by_default():
    ours = gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY))
    assert ours.lm_head.weight is ours.transformer.wte.weight
    untied = gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY, tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.transformer.wte.weight


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_equals_transformers_act2fn(name):
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 2001)
    assert_close(modeling.ACT2FN[name](x), ACT2FN[name](x), name, rtol=1e-6)


def test_every_config_activation_is_implemented():
    assert set(modeling.ACT2FN) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_model_with_each_activation(name, pair):
    hf, ours = pair(activation_function=name)
    ids = batch()
    assert_close(ours(ids).logits, hf(ids).logits, name)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lm_matches_transformers(variant, mask, models):
    """Logits, loss, hidden states and past; transformers gets the positions our default derives from the mask."""
    hf, ours = models(variant)
    ids, am = batch(), MASKS[mask]
    labels = ids.masked_fill(am == 0, -100) if am is not None else ids
    pos = positions_from_mask(am) if am is not None else None
    ref = hf(input_ids=ids, attention_mask=am, position_ids=pos, labels=labels, output_hidden_states=True)
    out = ours(ids, attention_mask=am, labels=labels, output_hidden_states=True)
    assert_close(out.logits, ref.logits, "logits")
    assert_close(out.loss, ref.loss, "loss")
    assert len(out.hidden_states) == len(ref.hidden_states) == TINY["n_layer"] + 1
    for i, (h, r) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_close(h, r, f"hidden_states[{i}]")
    for i, ((k, v), (rk, rv)) in enumerate(zip(out.past_key_values, hf_past(ref))):
        assert_close(k, rk, f"past[{i}].key")
        assert_close(v, rv, f"past[{i}].value")


@pytest.mark.parametrize("keep", [1, 3, 7, 9])
def test_logits_to_keep_equals_transformers(keep, models):
    hf, ours = models("default")
    ids, am = batch(), MASKS["left"]
    ref = hf(input_ids=ids, attention_mask=am, position_ids=positions_from_mask(am), logits_to_keep=keep).logits
    out = ours(ids, attention_mask=am, logits_to_keep=keep).logits
    assert_close(out, ref, f"logits_to_keep={keep}")
    assert_close(out, ours(ids, attention_mask=am).logits[:, -keep:], "the last positions of all logits")


def test_logits_to_keep_errors(models):
    _, ours = models("default")
    with pytest.raises(ValueError, match="logits_to_keep"):
        ours(batch(), logits_to_keep=-1)
    with pytest.raises(ValueError, match="logits_to_keep"):
        ours(batch(), labels=batch(), logits_to_keep=2)


@pytest.mark.parametrize("variant", ["default", "untied"])
def test_batch_one_cached_step(variant, models):
    """One token at batch 1 (a matrix-vector product in every layer) after a tuple past, as decoding runs it."""
    hf, ours = models(variant)
    ids = batch(B=1, T=6)
    past = ours(ids[:, :5]).past_key_values
    out = ours(ids[:, 5:], past_key_values=past, logits_to_keep=1)
    ref = hf_call(hf, past=hf_call(hf, input_ids=ids[:, :5]).past_key_values, input_ids=ids[:, 5:])
    assert_close(out.logits, ref.logits, "one cached step")
    assert_close(out.logits, ours(ids).logits[:, 5:], "one cached step vs uncached")


def test_token_type_ids(models):
    hf, ours = models("default")
    ids, types = batch(), batch(seed=2) % 3
    assert_close(ours(ids, token_type_ids=types).logits, hf(ids, token_type_ids=types).logits)


def test_inputs_embeds_equal_input_ids(models):
    hf, ours = models("default")
    ids = batch()
    embeds = ours.transformer.wte(ids)
    assert_close(ours(inputs_embeds=embeds).logits, ours(ids).logits)
    assert_close(ours(inputs_embeds=embeds).logits, hf(inputs_embeds=embeds).logits)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_attentions_match_transformers_eager(variant, mask, models):
    """transformers returns attention weights only from its eager path. A left-pad query sees no key: transformers
    spreads it evenly over all keys, SDPA (theirs and ours) gives it zeros, so those rows are left out."""
    hf, ours = models(variant)
    hf = eager_twin(hf)
    ids, am = batch(), MASKS[mask]
    pos = positions_from_mask(am) if am is not None else None
    ref = hf(input_ids=ids, attention_mask=am, position_ids=pos, output_attentions=True)
    out = ours(ids, attention_mask=am, output_attentions=True)
    rows = torch.ones(ids.shape, dtype=torch.bool) if am is None else am.cumsum(-1) > 0  # queries seeing a key
    assert len(out.attentions) == TINY["n_layer"]
    for i, (a, r) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(a.transpose(1, 2)[rows], r.transpose(1, 2)[rows], f"attentions[{i}]")
    assert_close(out.logits[rows], ref.logits[rows], "logits")
    # The weights path and the SDPA path give the same numbers.
    assert_close(out.logits, ours(ids, attention_mask=am).logits, "explicit vs SDPA")


@pytest.mark.parametrize("variant", VARIANTS)
def test_past_continuation_matches_transformers_and_uncached(variant, models):
    hf, ours = models(variant)
    ids, am = batch(), MASKS["left"]
    pos = positions_from_mask(am)
    ref1 = hf(input_ids=ids[:, :4], attention_mask=am[:, :4], position_ids=pos[:, :4])
    ref_past_after_prefix = [(k.clone(), v.clone()) for k, v in hf_past(ref1)]
    ref2 = hf_call(hf, getattr(ref1, "cache", None) or ref1.past_key_values, input_ids=ids[:, 4:],
                   attention_mask=am, position_ids=pos[:, 4:])
    out1 = ours(ids[:, :4], attention_mask=am[:, :4])
    out2 = ours(ids[:, 4:], past_key_values=out1.past_key_values, attention_mask=am)
    for (k, v), (rk, rv) in zip(out1.past_key_values, ref_past_after_prefix):
        assert_close(k, rk, "prefix key")
        assert_close(v, rv, "prefix value")
    assert_close(out2.logits, ref2.logits, "continued logits")
    for (k, v), (rk, rv) in zip(out2.past_key_values, hf_past(ref2)):
        assert_close(k, rk, "continued key")
        assert_close(v, rv, "continued value")
    full = ours(ids, attention_mask=am)
    assert_close(out2.logits, full.logits[:, 4:], "cached vs uncached")


def test_default_positions_make_left_padding_invisible(models):
    """A left-padded row gives the numbers the same tokens give alone: positions come from the mask."""
    _, ours = models("default")
    ids, am = batch(), MASKS["left"]
    out = ours(ids, attention_mask=am).logits
    for row in range(ids.size(0)):
        kept = am[row].bool()
        alone = ours(ids[row:row + 1, kept]).logits[0]
        assert_close(out[row, kept], alone, f"row {row}")


def test_positions_where_transformers_forward_agrees(models):
    """transformers 5's forward numbers positions 0..T-1 whatever the mask says (its generate derives them from the
    mask, as we do by default). They agree with our default on unpadded and right-padded batches at the kept
    tokens; on a left-padded batch only when transformers is given the mask's positions (tested above)."""
    hf, ours = models("default")
    ids = batch()
    assert_close(ours(ids).logits, hf(ids).logits)
    am = MASKS["right"]
    kept = am.bool()
    assert_close(ours(ids, attention_mask=am).logits[kept], hf(ids, attention_mask=am).logits[kept])
    left = MASKS["left"]
    assert not torch.allclose(ours(ids, attention_mask=left).logits[left.bool()],
                              hf(ids, attention_mask=left).logits[left.bool()], atol=1e-3)


def test_explicit_position_ids(models):
    hf, ours = models("default")
    ids = batch()
    pos = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    assert_close(ours(ids, position_ids=pos).logits, hf(ids, position_ids=pos).logits)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_shapes_masks_and_past_splits(models, data):
    hf, ours = models("default")
    B = data.draw(st.integers(1, 3), "batch")
    T = data.draw(st.integers(1, 9), "length")
    split = data.draw(st.integers(0, T - 1), "past length")
    lefts = data.draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B), "left pads")
    rights = data.draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B), "right pads")
    seed = data.draw(st.integers(0, 2**16), "seed")
    ids = batch(seed, B, T)
    am = torch.ones(B, T, dtype=torch.long)
    for row, (left, right) in enumerate(zip(lefts, rights)):
        am[row, :left] = 0
        am[row, T - min(right, T - 1 - left):] = 0 if right else 1
    pos = positions_from_mask(am)
    ref = hf(input_ids=ids, attention_mask=am, position_ids=pos)
    if split:
        past = ours(ids[:, :split], attention_mask=am[:, :split]).past_key_values
        out = ours(ids[:, split:], past_key_values=past, attention_mask=am)
    else:
        out = ours(ids, attention_mask=am)
    assert_close(out.logits, ref.logits[:, split:], "logits")
    for (k, v), (rk, rv) in zip(out.past_key_values, hf_past(ref)):
        assert_close(k, rk, "key")
        assert_close(v, rv, "value")


def test_return_dict_false_gives_transformers_tuple_order(models):
    hf, ours = models("default")
    ids = batch()
    ref = hf(ids, labels=ids, output_hidden_states=True, return_dict=False)
    out = ours(ids, labels=ids, output_hidden_states=True, return_dict=False)
    assert isinstance(out, tuple) and len(out) == len(ref) == 4  # loss, logits, past, hidden states
    assert_close(out[0], ref[0])
    assert_close(out[1], ref[1])
    assert_close(out[2][1][0], ref[2].layers[1].keys)
    assert_close(out[3][-1], ref[3][-1])
    body = ours.transformer(ids, use_cache=False, return_dict=False)
    assert len(body) == 1 and body[0].shape == (3, 7, TINY["n_embd"])


def test_use_cache_false_returns_no_past(models):
    _, ours = models("default")
    assert ours(batch(), use_cache=False).past_key_values is None


def test_gradients_match_transformers(models):
    """The training path: dropout off, the same loss gives the same gradients."""
    hf, ours = models("untied")
    ids = batch()
    hf.zero_grad()
    ours.zero_grad()
    hf(ids, labels=ids).loss.backward()
    ours(ids, labels=ids).loss.backward()
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs[name].grad, f"grad {name}", rtol=1e-4)
    hf.zero_grad()
    ours.zero_grad()


def test_dropout_in_train_mode():
    ours = gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)).train()
    ids = batch()
    torch.manual_seed(0)
    a = ours(ids).logits
    b = ours(ids).logits
    assert not torch.allclose(a, b), "train mode should drop activations at random"
    torch.manual_seed(0)
    assert torch.equal(ours(ids).logits, a), "the same seed gives the same dropout"
    ours.eval()
    assert torch.equal(ours(ids).logits, ours(ids).logits)
    no_drop = gpt2_pt.GPT2Config(**TINY, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    quiet = gpt2_pt.GPT2LMHeadModel(no_drop)
    assert_close(quiet.train()(ids).logits, quiet.eval()(ids).logits)
