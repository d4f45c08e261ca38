"""Keras training on the model's own loss, and Keras' weight files."""

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import assert_close, tiny_model

import keras


def _dataset(n=16, seq=12, seed=0):
    rng = np.random.default_rng(seed)
    # a learnable pattern: each row counts up from a random start
    ids = (rng.integers(0, 50, size=(n, 1)) + np.arange(seq)[None]).astype(np.int32)
    mask = np.ones_like(ids)
    mask[::2, :3] = 0  # half the rows left-padded
    labels = np.where(mask == 1, ids, -100)
    return tf.data.Dataset.from_tensor_slices(dict(input_ids=ids, attention_mask=mask, labels=labels)).batch(4)


def test_fit_without_a_loss_trains_on_the_lm_loss():
    model = tiny_model("TFGPT2LMHeadModel", seed=2)
    data = _dataset()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(data, verbose=0)
    history = model.fit(data, epochs=4, verbose=0, shuffle=False)
    after = model.evaluate(data, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < 0.8 * before
    # evaluate reports the model's own loss
    batch = next(iter(data))
    manual = float(model(batch).loss)
    assert_close(model.evaluate(data.take(1), verbose=0), manual, "evaluate loss", rtol=1e-5)


def test_fit_double_heads_on_both_losses():
    model = tiny_model("TFGPT2DoubleHeadsModel", seed=3)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 99, size=(8, 2, 6)).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices(dict(
        input_ids=ids, mc_token_ids=np.full((8, 2), 5, np.int32), labels=ids,
        mc_labels=rng.integers(0, 2, size=(8,)).astype(np.int32))).batch(4)
    batch = next(iter(data))
    out = model(batch)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert_close(model.evaluate(data.take(1), verbose=0), float(out.loss + out.mc_loss), "loss + mc_loss")
    history = model.fit(data, epochs=3, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_fit_without_labels_says_what_is_missing():
    model = tiny_model("TFGPT2LMHeadModel")
    model.compile(optimizer="adam")
    data = tf.data.Dataset.from_tensor_slices(dict(input_ids=np.zeros((4, 5), np.int32))).batch(2)
    with pytest.raises(ValueError, match="no labels"):
        model.fit(data, epochs=1, verbose=0, shuffle=False)


def test_predict_returns_the_outputs():
    model = tiny_model("TFGPT2LMHeadModel")
    ids = np.random.default_rng(0).integers(0, 99, size=(4, 5)).astype(np.int32)
    predicted = model.predict(tf.data.Dataset.from_tensor_slices(dict(input_ids=ids)).batch(2), verbose=0)
    assert_close(predicted["logits"], model(ids).logits, "predict logits")


@pytest.mark.parametrize("class_name", ["TFGPT2LMHeadModel", "TFGPT2DoubleHeadsModel",
                                        "TFGPT2ForSequenceClassification"])
def test_save_weights_load_weights_round_trip(tmp_path, class_name):
    source = tiny_model(class_name, seed=4, pad_token_id=0)
    target = tiny_model(class_name, seed=5, pad_token_id=0)
    path = str(tmp_path / "model.weights.h5")
    source.save_weights(path)
    target.load_weights(path)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ids = np.ones((2, 3, 4) if "Double" in class_name else (2, 4), np.int32)
    assert_close(target(ids).logits, source(ids).logits, "logits after load_weights", rtol=0)


@pytest.mark.parametrize("class_name", ["TFGPT2LMHeadModel", "TFGPT2DoubleHeadsModel",
                                        "TFGPT2ForSequenceClassification", "TFGPT2Model"])
def test_keras_save_and_load_model_round_trip(tmp_path, class_name):
    source = tiny_model(class_name, seed=6, pad_token_id=0, n_inner=24)
    ids = np.ones((2, 3, 4) if "Double" in class_name else (2, 4), np.int32)
    expected = source(ids)[0]
    if class_name == "TFGPT2LMHeadModel":
        source.generate(tf.constant([[1, 2], [3, 4]]), max_new_tokens=2, pad_token_id=0)  # leaves no weights
    path = str(tmp_path / "model.keras")
    source.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(source) and loaded.config == source.config
    assert len(loaded.weights) == len(source.weights)
    assert_close(loaded(ids)[0], expected, "outputs after keras.models.load_model", rtol=0)
