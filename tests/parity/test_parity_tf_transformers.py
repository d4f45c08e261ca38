"""Every gpt2_tf class against transformers 5 (PyTorch) on the same weights: the checkpoint transformers saves
loads into ours and gives its numbers within TOLERANCE."""

import numpy as np
import pytest
from parity_utils import TINY, assert_close, randomize_torch, tf, torch

import gpt2_tf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

IDS = np.random.default_rng(0).integers(1, 99, size=(3, 8))
MASK = np.ones_like(IDS)
MASK[1, 6:] = 0  # right padding (transformers' default positions ignore the mask, so we pass them)
MASK[2, :2] = 0  # left padding
POSITIONS = np.clip(np.cumsum(MASK, -1) - 1, 0, None)
LABELS = np.where(MASK == 1, IDS, -100)
LABELS[2, 2] = -100  # predicted from a pad position, whose output is implementation-defined

CASES = {
    "GPT2Model": dict(),
    "GPT2LMHeadModel": dict(labels=LABELS),
    "GPT2DoubleHeadsModel": dict(),  # inputs reshaped to (batch, choices, seq) below
    "GPT2ForSequenceClassification": dict(labels=np.array([0, 2, 1])),
    "GPT2ForTokenClassification": dict(labels=np.where(MASK == 1, IDS % 3, -100)),
    "GPT2ForQuestionAnswering": dict(start_positions=np.array([1, 3, 9]), end_positions=np.array([4, 5, 2])),
}
OUTPUTS = ("loss", "mc_loss", "logits", "mc_logits", "start_logits", "end_logits", "last_hidden_state")


def _inputs(class_name):
    inputs = dict(input_ids=IDS, attention_mask=MASK, position_ids=POSITIONS, **CASES[class_name])
    if class_name == "GPT2DoubleHeadsModel":
        # (batch, choices, seq); transformers 5 does not fold 3-D masks and positions, so none: no padding here
        inputs = dict(input_ids=IDS.reshape(1, 3, 8), mc_token_ids=np.array([[7, 5, 6]]), mc_labels=np.array([2]),
                      labels=IDS.reshape(1, 3, 8))
    return inputs


@pytest.mark.parametrize("class_name", sorted(CASES))
def test_tf_class_equals_transformers(class_name, tmp_path):
    config = transformers.GPT2Config(**TINY, num_labels=3, pad_token_id=0)
    torch.manual_seed(0)
    hf = randomize_torch(getattr(transformers, class_name)(config), seed=1).eval()
    hf.save_pretrained(tmp_path)
    ours = getattr(gpt2_tf, "TF" + class_name).from_pretrained(tmp_path)

    inputs = _inputs(class_name)
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    out = ours(**{k: tf.constant(v) for k, v in inputs.items()})
    valid = inputs.get("attention_mask", np.ones_like(inputs["input_ids"])) == 1
    compared = 0
    for field in OUTPUTS:
        ref_value = getattr(ref, field, None)
        if ref_value is None:
            continue
        ours_value, ref_value = np.asarray(getattr(out, field)), ref_value.detach().numpy()
        if ref_value.shape[:valid.ndim] == valid.shape:  # per-token outputs: only the real tokens
            ours_value, ref_value = ours_value[valid], ref_value[valid]
        assert_close(ours_value, ref_value, f"{class_name}.{field}")
        compared += 1
    assert compared >= (1 if class_name == "GPT2Model" else 2)
    if getattr(ref, "past_key_values", None) is not None and class_name != "GPT2ForQuestionAnswering":
        flat_valid = valid.reshape(-1, valid.shape[-1])[:, None, :, None]
        for i, layer in enumerate(ref.past_key_values.layers):
            for name, theirs, mine in (("key", layer.keys, out.past_key_values[i][0]),
                                       ("value", layer.values, out.past_key_values[i][1])):
                assert_close(np.where(flat_valid, mine, 0), np.where(flat_valid, theirs.numpy(), 0),
                             f"{class_name}.past[{i}].{name}")


@pytest.mark.parametrize("class_name", ["GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification"])
def test_transformers_loads_what_gpt2_tf_saves(class_name, tmp_path):
    from gpt2_core import GPT2Config

    ours = getattr(gpt2_tf, "TF" + class_name)(GPT2Config(**TINY, num_labels=3, pad_token_id=0))
    rng = np.random.default_rng(2)
    for variable in ours.weights:
        variable.assign(variable.numpy() + 0.1 * rng.standard_normal(variable.shape).astype(np.float32))
    ours.save_pretrained(tmp_path, safe_serialization=True)
    hf = getattr(transformers, class_name).from_pretrained(tmp_path).eval()
    ids = IDS.reshape(1, 3, 8) if class_name == "GPT2DoubleHeadsModel" else IDS
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids))
    assert_close(ours(ids).logits, ref.logits, f"{class_name} logits")
