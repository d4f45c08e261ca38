"""gpt2_pt and gpt2_tf on the same checkpoint: logits, losses and every past tensor within TOLERANCE, over a
matrix of configs and inputs; a past made by one backend continues in the other."""

import numpy as np
import pytest
from parity_utils import assert_close, pt_tf_pair, tf, tf_past, torch, torch_past

from gpt2_core.config import ACTIVATIONS
from gpt2_pt import modeling as pt_modeling
from gpt2_tf import modeling as tf_modeling

CONFIGS = {
    "default": {},
    "relu_inner": dict(activation_function="relu", n_inner=48),
    "inverse_layer_idx": dict(scale_attn_by_inverse_layer_idx=True, n_layer=3),
    "upcast": dict(reorder_and_upcast_attn=True, activation_function="gelu"),
    "unscaled_quick_gelu": dict(scale_attn_weights=False, activation_function="quick_gelu", layer_norm_epsilon=1e-3),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    return pt_tf_pair(tmp_path_factory.mktemp(request.param), seed=len(request.param), **CONFIGS[request.param])


def _inputs(padding, batch=3, seq=10, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 99, size=(batch, seq)).astype(np.int64)
    mask = np.ones_like(ids)
    if padding == "left":
        mask[1, :4] = 0
        mask[2, :1] = 0
    elif padding == "right":
        mask[1, 7:] = 0
        mask[2, 2:] = 0
    labels = np.where(mask == 1, ids, -100)
    return ids, mask, labels


def _run_both(pt, tf_model, **inputs):
    """Call both with the same numpy inputs (arrays become each framework's tensors, the rest passes as is)."""
    def convert(to):
        return {k: to(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}

    with torch.no_grad():
        pt_out = pt(**convert(torch.from_numpy))
    return pt_out, tf_model(**convert(tf.constant))


def _assert_same_outputs(pt_out, tf_out, what):
    assert_close(tf_out.logits, pt_out.logits, f"{what} logits")
    if pt_out.loss is not None:
        assert_close(tf_out.loss, pt_out.loss, f"{what} loss")
    for i, ((pk, pv), (tk, tv)) in enumerate(zip(pt_out.past_key_values, tf_out.past_key_values)):
        assert_close(tk, pk, f"{what} past[{i}].key")
        assert_close(tv, pv, f"{what} past[{i}].value")


@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_same_checkpoint_same_numbers(pair, padding):
    # every position is compared, padded ones too: both backends zero the attention of a query that sees no key
    pt, tf_model = pair
    ids, mask, labels = _inputs(padding)
    pt_out, tf_out = _run_both(pt, tf_model, input_ids=ids, attention_mask=mask, labels=labels,
                               token_type_ids=ids[:, ::-1].copy(), output_hidden_states=True)
    _assert_same_outputs(pt_out, tf_out, padding)
    for i, (ph, th) in enumerate(zip(pt_out.hidden_states, tf_out.hidden_states)):
        assert_close(th, ph, f"hidden_states[{i}]")


@pytest.mark.parametrize("splits", [(1,), (5,), (3, 6, 9)])
@pytest.mark.parametrize("padding", ["none", "left"])
def test_past_continuation_over_splits(pair, splits, padding):
    pt, tf_model = pair
    ids, mask, _ = _inputs(padding, seed=1)
    pt_past = tf_past_ = None
    for start, end in zip((0,) + splits, splits + (ids.shape[1],)):
        with torch.no_grad():
            pt_out = pt(torch.from_numpy(ids[:, start:end]), past_key_values=pt_past,
                        attention_mask=torch.from_numpy(mask[:, :end]))
        tf_out = tf_model(ids[:, start:end], past_key_values=tf_past_, attention_mask=mask[:, :end])
        _assert_same_outputs(pt_out, tf_out, f"[{start}:{end}]")
        pt_past, tf_past_ = pt_out.past_key_values, tf_out.past_key_values


@pytest.mark.parametrize("producer", ["pt", "tf"])
def test_past_from_one_backend_continues_in_the_other(pair, producer):
    pt, tf_model = pair
    ids, mask, _ = _inputs("left", seed=2)
    with torch.no_grad():
        full = pt(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    if producer == "pt":
        with torch.no_grad():
            past = pt(torch.from_numpy(ids[:, :6]), attention_mask=torch.from_numpy(mask[:, :6])).past_key_values
        out = tf_model(ids[:, 6:], past_key_values=tuple((k.numpy(), v.numpy()) for k, v in past),
                       attention_mask=mask)
        past_converted = tf_past(past)
        assert all(isinstance(k, tf.Tensor) for k, _ in past_converted)
    else:
        past = tf_model(ids[:, :6], attention_mask=mask[:, :6]).past_key_values
        with torch.no_grad():
            out = pt(torch.from_numpy(ids[:, 6:]), past_key_values=torch_past(past),
                     attention_mask=torch.from_numpy(mask))
    assert_close(out.logits, full.logits[:, 6:], f"continued from {producer}")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match(name):
    x = np.linspace(-6, 6, 1001, dtype=np.float32)
    assert_close(tf_modeling.ACT2FN[name](tf.constant(x)), pt_modeling.ACT2FN[name](torch.from_numpy(x)), name)


def test_inputs_embeds_and_explicit_positions(pair):
    pt, tf_model = pair
    ids, mask, _ = _inputs("right", seed=3)
    embeds = pt.transformer.wte.weight.detach().numpy()[ids]
    positions = np.tile(np.arange(10)[None], (3, 1)) + 2
    pt_out, tf_out = _run_both(pt, tf_model, inputs_embeds=embeds, position_ids=positions, attention_mask=mask)
    _assert_same_outputs(pt_out, tf_out, "inputs_embeds")
