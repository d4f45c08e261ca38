"""KVCache (TensorFlow): the preallocated cache gives the numbers of the tuple past and of one uncached call, eagerly
and in one XLA program for every position; logits_to_keep. (Twin of tests/pt/test_cache.py.)"""

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import TINY, assert_close, tiny_model

from gpt2_tf import KVCache


@pytest.fixture(scope="module")
def lm():
    return tiny_model(seed=5)


def ids_of(B, T, seed=3):
    return np.random.default_rng(seed).integers(0, TINY["vocab_size"], size=(B, T)).astype(np.int32)


@pytest.mark.parametrize("whole_buffer_mask", [False, True])
def test_token_by_token_decoding_equals_one_call(lm, whole_buffer_mask):
    ids = ids_of(2, 9)
    am = np.ones_like(ids)
    am[1, :3] = 0  # left padding in row 1
    full = lm(ids, attention_mask=am).logits
    cache = KVCache(lm.config, batch_size=2, max_length=16)
    out = lm(ids[:, :4], past_key_values=cache, attention_mask=am[:, :4])
    assert out.past_key_values is cache and int(cache.length) == 4
    steps = [out.logits]
    for t in range(4, 9):
        mask = am[:, :t + 1]
        if whole_buffer_mask:  # the static-shape form the compiled decoder passes
            mask = np.pad(mask, [(0, 0), (0, 16 - t - 1)])
        steps.append(lm(ids[:, t:t + 1], past_key_values=cache, attention_mask=mask).logits)
    assert int(cache.length) == 9
    assert_close(tf.concat(steps, 1), full, "cached vs uncached")
    tuple_past = lm(ids, attention_mask=am).past_key_values
    for (k, v), (rk, rv) in zip(cache.to_tuple(), tuple_past):
        assert_close(k, rk, "key")
        assert_close(v, rv, "value")


def test_one_compiled_step_serves_every_position(lm):
    ids = ids_of(2, 8)
    full = lm(ids).logits
    cache = KVCache(lm.config, 2, 8)
    lm(ids[:, :3], past_key_values=cache)
    step = tf.function(lambda t: lm(t, past_key_values=cache, logits_to_keep=1).logits, jit_compile=True)
    for t in range(3, 8):
        assert_close(step(tf.constant(ids[:, t:t + 1]))[:, 0], full[:, t], f"position {t}")
    assert step.experimental_get_tracing_count() == 1 and int(cache.length) == 8


def test_from_tuple_continues_like_the_tuple(lm):
    ids = ids_of(3, 8)
    past = lm(ids[:, :5]).past_key_values
    cache = KVCache.from_tuple(past, max_length=12)
    assert int(cache.length) == 5 and cache.max_length == 12 and cache.batch_size == 3
    a = lm(ids[:, 5:], past_key_values=cache).logits
    b = lm(ids[:, 5:], past_key_values=past).logits
    assert_close(a, b)


def test_reorder_selects_batch_rows(lm):
    ids = ids_of(3, 6)
    cache = KVCache(lm.config, 3, 10)
    lm(ids[:, :5], past_key_values=cache)
    index = np.array([2, 2, 0])
    cache.reorder(index)
    a = lm(ids[index, 5:], past_key_values=cache).logits
    b = lm(ids[index]).logits[:, 5:]
    assert_close(a, b)


def test_cache_overflow_and_wrong_batch_raise(lm):
    cache = KVCache(lm.config, 1, 4)
    lm(ids_of(1, 3), past_key_values=cache)
    with pytest.raises(ValueError, match="max_length=4"):
        lm(ids_of(1, 2), past_key_values=cache)
    assert int(cache.length) == 3  # a refused call leaves the cache as it was
    with pytest.raises(ValueError, match="KVCache"):
        lm(ids_of(2, 1), past_key_values=cache)
    with pytest.raises(ValueError, match="max_length"):
        KVCache(lm.config, 1, TINY["n_positions"] + 1)


@pytest.mark.parametrize("keep", [1, 3])
def test_logits_to_keep_keeps_the_last_positions(lm, keep):
    ids = ids_of(2, 5)
    am = np.ones_like(ids)
    am[0, :2] = 0
    full = lm(ids, attention_mask=am).logits
    assert_close(lm(ids, attention_mask=am, logits_to_keep=keep).logits, full[:, -keep:], f"logits_to_keep={keep}")


def test_logits_to_keep_errors(lm):
    with pytest.raises(ValueError, match="logits_to_keep"):
        lm(ids_of(1, 3), logits_to_keep=-1)
    with pytest.raises(ValueError, match="logits_to_keep"):
        lm(ids_of(1, 3), labels=ids_of(1, 3), logits_to_keep=2)
