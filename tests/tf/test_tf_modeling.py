"""The TF forward contract: eager == tf.function == XLA, cached == uncached, padding, inputs, outputs. (Errors:
test_tf_input_checks.py.)"""

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import assert_close, tiny_model

from gpt2_core.config import ACTIVATIONS
from gpt2_tf import modeling


@pytest.fixture(scope="module")
def lm():
    return tiny_model("TFGPT2LMHeadModel", seed=1)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 99, size=(3, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 8:] = 0  # right padding
    labels = np.where(mask == 1, ids, -100)
    return dict(input_ids=tf.constant(ids), attention_mask=tf.constant(mask), labels=tf.constant(labels))


def test_every_config_activation_is_implemented():
    assert set(modeling.ACT2FN) == set(ACTIVATIONS)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["function", "xla"])
def test_compiled_equals_eager(lm, batch, jit_compile):
    eager = lm(**batch)
    compiled = tf.function(lambda b: lm(**b), jit_compile=jit_compile)(batch)
    assert_close(compiled.logits, eager.logits, "logits", rtol=1e-6)
    assert_close(compiled.loss, eager.loss, "loss", rtol=1e-6)
    for (k1, v1), (k2, v2) in zip(compiled.past_key_values, eager.past_key_values):
        assert_close(k1, k2, "key", rtol=1e-6)
        assert_close(v1, v2, "value", rtol=1e-6)


def test_compiled_continuation_with_unknown_shapes(lm, batch):
    # One trace serves every length: shapes unknown until the graph runs (the generation loop's case).
    spec = tf.TensorSpec((None, None), tf.int32)
    past_spec = tuple((tf.TensorSpec((None, 4, None, 8)),) * 2 for _ in range(2))

    @tf.function(input_signature=[spec, spec, past_spec])
    def step(ids, mask, past):
        out = lm(ids, attention_mask=mask, past_key_values=past)
        return out.logits, out.past_key_values

    full = lm(batch["input_ids"], attention_mask=batch["attention_mask"])
    first = lm(batch["input_ids"][:, :5], attention_mask=batch["attention_mask"][:, :5])
    logits, _ = step(batch["input_ids"][:, 5:], batch["attention_mask"], first.past_key_values)
    keep = batch["attention_mask"].numpy()[:, 5:] == 1
    assert_close(logits.numpy()[keep], full.logits.numpy()[:, 5:][keep], "continued logits")


@pytest.mark.parametrize("splits", [(1,), (4,), (2, 5, 9)])
@pytest.mark.parametrize("padded", [False, True])
def test_past_continuation_equals_one_pass(lm, batch, splits, padded):
    ids = batch["input_ids"]
    mask = batch["attention_mask"] if padded else tf.ones_like(ids)
    full = lm(ids, attention_mask=mask)
    past, pieces = None, []
    for start, end in zip((0,) + splits, splits + (ids.shape[1],)):
        out = lm(ids[:, start:end], attention_mask=mask[:, :end], past_key_values=past)
        past = out.past_key_values
        pieces.append(out.logits)
    keep = mask.numpy() == 1
    assert_close(tf.concat(pieces, 1).numpy()[keep], full.logits.numpy()[keep], "logits")
    for (k, v), (fk, fv) in zip(past, full.past_key_values):
        assert_close(k, fk, "key")
        assert_close(v, fv, "value")


def test_left_padding_gives_the_unpadded_numbers(lm):
    ids = np.random.default_rng(3).integers(0, 99, size=(1, 6)).astype(np.int32)
    alone = lm(ids).logits.numpy()[0]
    padded_ids = np.concatenate([np.zeros((1, 3), np.int32), ids], axis=1)
    mask = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    padded = lm(padded_ids, attention_mask=mask).logits.numpy()[0, 3:]
    assert_close(padded, alone, "left-padded logits")


def test_explicit_positions_and_inputs_embeds(lm, batch):
    ids = batch["input_ids"]
    out = lm(ids)
    embeds = tf.gather(lm.transformer.wte.weight, ids)
    assert_close(lm(inputs_embeds=embeds).logits, out.logits, "inputs_embeds")
    positions = tf.range(ids.shape[1])[None]
    assert_close(lm(ids, position_ids=positions).logits, out.logits, "position_ids")
    shifted = lm(ids, position_ids=positions + 1).logits
    assert not np.allclose(shifted, out.logits)  # positions do reach the model


def test_token_type_ids_add_their_embedding(lm, batch):
    ids = batch["input_ids"]
    types = tf.reverse(ids, axis=[1])
    expected = lm(inputs_embeds=tf.gather(lm.transformer.wte.weight, ids) + tf.gather(lm.transformer.wte.weight,
                                                                                        types)).logits
    assert_close(lm(ids, token_type_ids=types).logits, expected, "token_type_ids")


def test_outputs_behave_like_transformers(lm, batch):
    out = lm(**batch)
    as_tuple = lm(**batch, return_dict=False)
    assert out.keys() == ["loss", "logits", "past_key_values"]
    assert len(as_tuple) == 3
    assert_close(as_tuple[1], out["logits"], "tuple logits")
    assert_close(out[0], out.loss, "out[0]")
    assert lm(**batch, use_cache=False).past_key_values is None


def test_dict_input_equals_keyword_arguments(lm, batch):
    assert_close(lm(dict(batch)).loss, lm(**batch).loss, "dict input")
    with pytest.raises(ValueError, match="either in the dict or as arguments"):
        lm(dict(batch), attention_mask=batch["attention_mask"])


def test_attention_weights(lm, batch):
    out = lm(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True,
             output_hidden_states=True)
    assert len(out.attentions) == 2 and len(out.hidden_states) == 3
    weights = out.attentions[0].numpy()  # (B, nh, T, S)
    mask = batch["attention_mask"].numpy()
    np.testing.assert_allclose(weights.sum(-1)[mask[:, None, :].repeat(4, 1) == 1], 1.0, rtol=1e-5)
    assert np.all(weights[1, :, 0] == 0)  # a left-pad query sees no key: zero weights, as gpt2_pt gives
    assert np.all(np.triu(weights[0, 0], k=1) == 0)  # causal


def test_one_token_without_mask_under_tf_function(lm):
    # Keras 3 treats a layer call argument named `mask` as its own; a None there once broke this call.
    ids = tf.constant([[5]], tf.int32)
    graph = tf.function(lambda i: lm(i).logits)(ids)
    assert_close(graph, lm(ids).logits, "one token, tf.function vs eager")
