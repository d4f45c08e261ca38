"""Bad input raises ValueError naming the problem, before any computation (gpt2_tf.input_checks; a bad config too);
under tf.function, what only the running graph knows fails as a graph assertion. (Twin of
tests/pt/test_input_checks.py.)"""

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import TINY, tiny_model

import gpt2_tf


@pytest.fixture(scope="module")
def lm():
    return tiny_model("TFGPT2LMHeadModel", seed=1)


def _bad_inputs():
    ids = np.zeros((2, 5), np.int32)
    past = tuple((np.zeros((2, 4, 3, 8), np.float32),) * 2 for _ in range(2))
    return [
        (dict(), "exactly one of `input_ids` and `inputs_embeds`"),
        (dict(input_ids=ids, inputs_embeds=np.zeros((2, 5, 32), np.float32)), "exactly one"),
        (dict(input_ids=ids + 99), r"`input_ids` should lie in \[0, 99\)"),
        (dict(input_ids=ids - 1), r"`input_ids` should lie in \[0, 99\)"),
        (dict(input_ids=ids.astype(np.float32)), "`input_ids` should hold integers"),
        (dict(input_ids=np.zeros((1, 65), np.int32)), "at most n_positions=64"),
        (dict(input_ids=ids, past_key_values=past[:1]), "one \\(key, value\\) pair per layer"),
        (dict(input_ids=ids, past_key_values=tuple((np.zeros((2, 4, 3, 7), np.float32),) * 2 for _ in range(2))),
         r"past_key_values\[0\]"),
        (dict(input_ids=ids, attention_mask=np.ones((2, 4), np.int32)), "`attention_mask` should have shape"),
        (dict(input_ids=ids, past_key_values=past, attention_mask=np.ones((2, 5), np.int32)),
         "`attention_mask` should have shape"),
        (dict(input_ids=ids, token_type_ids=ids + 100), "`token_type_ids` should lie"),
        (dict(input_ids=ids, position_ids=np.zeros((1, 4), np.int32)), "`position_ids` should have shape"),
        (dict(input_ids=ids, position_ids=np.full((1, 5), 64, np.int32)), "`position_ids` should lie"),
        (dict(inputs_embeds=np.zeros((2, 5, 31), np.float32)), "`inputs_embeds` should have shape"),
    ]


@pytest.mark.parametrize("kwargs,message", _bad_inputs())
def test_bad_inputs_raise_value_error(lm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lm(**kwargs)


def test_graph_mode_checks_values_with_assertions(lm):
    step = tf.function(lambda ids: lm(ids).logits, input_signature=[tf.TensorSpec((None, None), tf.int32)])
    step(tf.zeros((1, 3), tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids"):
        step(tf.fill((1, 3), 99))
    with pytest.raises(tf.errors.InvalidArgumentError, match="n_positions"):
        step(tf.zeros((1, 65), tf.int32))


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="add_cross_attention"):
        gpt2_tf.TFGPT2Model(gpt2_tf.GPT2Config(**TINY, add_cross_attention=True))
    with pytest.raises(ValueError, match="summary_type='attn'"):
        gpt2_tf.TFGPT2DoubleHeadsModel(gpt2_tf.GPT2Config(**TINY, summary_type="attn"))
