"""KVCache: the preallocated cache gives the numbers of the tuple past and of one uncached call."""

import pytest
import torch
from pt_utils import TINY, assert_close, hf_model, positions_from_mask, save_and_load

import gpt2_pt
from gpt2_pt import KVCache


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    hf = hf_model()
    return hf, save_and_load(hf, tmp_path_factory.mktemp("lm"))


def ids_of(B, T, seed=3):
    return torch.randint(0, TINY["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def test_token_by_token_decoding_equals_one_call_and_transformers(models):
    hf, ours = models
    ids = ids_of(2, 9)
    am = torch.ones_like(ids)
    am[1, :3] = 0  # left padding in row 1
    full = ours(ids, attention_mask=am).logits
    ref = hf(input_ids=ids, attention_mask=am, position_ids=positions_from_mask(am)).logits
    cache = KVCache(ours.config, batch_size=2, max_length=16)
    out = ours(ids[:, :4], past_key_values=cache, attention_mask=am[:, :4])
    assert out.past_key_values is cache and cache.length == 4
    steps = [out.logits]
    for t in range(4, 9):
        steps.append(ours(ids[:, t:t + 1], past_key_values=cache, attention_mask=am[:, :t + 1]).logits)
    assert cache.length == 9
    assert_close(torch.cat(steps, 1), full, "cached vs uncached")
    assert_close(torch.cat(steps, 1), ref, "cached vs transformers")
    tuple_past = ours(ids, attention_mask=am).past_key_values
    for (k, v), (rk, rv) in zip(cache.to_tuple(), tuple_past):
        assert_close(k, rk, "key")
        assert_close(v, rv, "value")


def test_from_tuple_continues_like_the_tuple(models):
    _, ours = models
    ids = ids_of(3, 8)
    past = ours(ids[:, :5]).past_key_values
    cache = KVCache.from_tuple(past, max_length=12)
    assert cache.length == 5 and cache.max_length == 12 and cache.batch_size == 3
    a = ours(ids[:, 5:], past_key_values=cache).logits
    b = ours(ids[:, 5:], past_key_values=past).logits
    assert_close(a, b)


def test_reorder_selects_batch_rows(models):
    _, ours = models
    ids = ids_of(3, 6)
    cache = KVCache(ours.config, 3, 10)
    ours(ids[:, :5], past_key_values=cache)
    index = torch.tensor([2, 2, 0])
    cache.reorder(index)
    a = ours(ids[index, 5:], past_key_values=cache).logits
    b = ours(ids[index]).logits[:, 5:]
    assert_close(a, b)


def test_cache_overflow_and_wrong_batch_raise(models):
    _, ours = models
    cache = KVCache(ours.config, 1, 4)
    ours(ids_of(1, 3), past_key_values=cache)
    with pytest.raises(ValueError, match="max_length=4"):
        ours(ids_of(1, 2), past_key_values=cache)
    assert cache.length == 3  # a refused call leaves the cache as it was
    with pytest.raises(ValueError, match="KVCache"):
        ours(ids_of(2, 1), past_key_values=cache)
    with pytest.raises(ValueError, match="max_length"):
        KVCache(ours.config, 1, TINY["n_positions"] + 1)


def test_cache_in_half_precision_keeps_its_dtype():
    model = gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)).to(torch.bfloat16).eval()
    cache = KVCache(model.config, 1, 8, dtype=torch.bfloat16)
    out = model(ids_of(1, 3), past_key_values=cache)
    assert out.logits.dtype == torch.bfloat16 and cache.keys[0].dtype == torch.bfloat16
