"""gpt2_tf's TensorFlow internals (tf_internals) and their fallbacks: with each internal module hidden, as in a
TensorFlow without it, the compiled forward still gives the eager numbers."""

import sys

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import assert_close, tiny_model

from gpt2_tf import modeling, tf_internals


@pytest.fixture(scope="module")
def lm():
    return tiny_model("TFGPT2LMHeadModel", seed=4)


def hide(monkeypatch, module_name):
    monkeypatch.setitem(sys.modules, module_name, None)  # import_module then raises ModuleNotFoundError


IDS = tf.constant(np.random.default_rng(0).integers(0, 99, size=(2, 7)), tf.int32)


@pytest.mark.parametrize("hidden", [False, True], ids=["internal", "fallback"])
def test_xla_detection_and_its_fallback(lm, monkeypatch, hidden):
    if hidden:
        hide(monkeypatch, tf_internals._CONTROL_FLOW_UTIL)
    seen = []

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec((None, None), tf.int32)] * 2)
    def forward(ids, mask):  # unknown shapes: the input checks become graph work (assertions unless XLA)
        seen.append(tf_internals.in_xla_compilation())
        return lm(ids, attention_mask=mask).logits

    mask = tf.constant([[1] * 7, [0, 0] + [1] * 5])
    eager = lm(IDS, attention_mask=mask).logits.numpy()
    compiled = forward(IDS, mask).numpy()
    assert seen == [not hidden]  # the fallback says "not XLA": XLA then drops the assertions, with a warning
    keep = mask.numpy() == 1
    assert_close(compiled[keep], eager[keep], "logits", rtol=1e-5)


@pytest.mark.parametrize("hidden", [False, True], ids=["barrier", "fallback"])
def test_one_row_products_under_threaded_xla(lm, monkeypatch, hidden):
    monkeypatch.setattr(modeling, "intra_op_threads", lambda: 2)  # the case the barrier is for
    if hidden:
        hide(monkeypatch, tf_internals._XLA_OPS)
    calls = []
    monkeypatch.setattr(modeling, "optimization_barrier",
                        lambda y: calls.append(y) or tf_internals.optimization_barrier(y))
    step = tf.function(lambda t: lm(t, logits_to_keep=1).logits, jit_compile=True)
    ids = IDS[:1, -1:]  # one row: what the barrier is for
    assert_close(step(ids).numpy(), lm(ids).logits.numpy(), "one-row logits", rtol=1e-5)
    assert len(calls) == 4 * lm.config.n_layer  # every Conv1D went through it


def test_positional_inputs_without_keras_internals(lm):
    # lists, arrays, dicts of them and a past as the second positional argument, by public API only
    ids = IDS.numpy()
    reference = lm(input_ids=IDS).logits.numpy()
    for inputs in (ids.tolist(), ids, {"input_ids": ids}):
        assert_close(lm(inputs).logits.numpy(), reference, "logits")
    past = lm(ids[:, :4]).past_key_values
    assert_close(lm(ids[:, 4:], past).logits.numpy(), reference[:, 4:], "continued")
    with pytest.raises(TypeError, match="past_key_values"):
        lm(ids, past, past_key_values=past)
