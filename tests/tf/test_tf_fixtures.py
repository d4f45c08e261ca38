"""Our TF models against what transformers-TF 4.57 itself wrote and computed (tests/fixtures/tf457, made by
tests/fixtures/make_tf_fixtures.py): its tf_model.h5 files load, give its numbers, and our writer reproduces them."""

import h5py
import numpy as np
import pytest
from tf_utils import FIXTURES, assert_close, case_inputs, case_past, load_cases

import gpt2_tf

FIXTURE_CLASSES = {
    "lm_head": "TFGPT2LMHeadModel",
    "lm_head_relu": "TFGPT2LMHeadModel",
    "lm_head_gelu": "TFGPT2LMHeadModel",
    "base": "TFGPT2Model",
    "double_heads": "TFGPT2DoubleHeadsModel",
    "seq_cls": "TFGPT2ForSequenceClassification",
}
OUTPUTS = ("logits", "mc_logits", "last_hidden_state")


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = getattr(gpt2_tf, FIXTURE_CLASSES[name]).from_pretrained(FIXTURES / name)
        return cache[name]

    return get


def _cases():
    return [(name, case) for name in FIXTURE_CLASSES for case in sorted(load_cases(name))]


def _valid_rows(valid, ours, ref):
    """Positions whose output is defined: a padded query sees no key, and each implementation fills it its own way."""
    if valid is None:
        return ours, ref
    flat = valid.reshape(-1, valid.shape[-1])
    if ours.shape[:-1] in (valid.shape, flat.shape):  # (..., T, C), the choices of DoubleHeads folded or not
        keep = valid.reshape(ours.shape[:-1])
        return ours[keep], ref[keep]
    if ours.ndim == 4 and ours.shape[0] == flat.shape[0]:  # past: (B, nh, S, hd)
        keep = flat[:, None, :, None]
        return np.where(keep, ours, 0), np.where(keep, ref, 0)
    return ours, ref


@pytest.mark.parametrize("name,case_name", _cases())
def test_outputs_equal_transformers_tf(models, name, case_name):
    model = models(name)
    case = load_cases(name)[case_name]
    past = case_past(load_cases(name)["prefix"], model.config.n_layer) if case_name == "continue" else None
    out = model(**case_inputs(case), past_key_values=past, output_hidden_states=True)
    valid = case.get("valid")
    for field in OUTPUTS:
        if field in case:
            ours, ref = _valid_rows(valid, getattr(out, field).numpy(), case[field])
            assert_close(ours, ref, f"{name}/{case_name}/{field}")
    if "loss" in case:  # transformers-TF returns the LM loss as (1,) and classification losses unreduced
        assert_close(out.loss.numpy(), case["loss"].mean(), f"{name}/{case_name}/loss")
    for i, (key, value) in enumerate(out.past_key_values):
        for kind, ours in (("key", key), ("value", value)):
            ours, ref = _valid_rows(valid, ours.numpy(), case[f"past.{i}.{kind}"])
            assert_close(ours, ref, f"{name}/{case_name}/past.{i}.{kind}")
    for i, hidden in enumerate(out.hidden_states):
        # transformers-TF, like transformers and us, leaves the choices folded in all but the last
        ours, ref = _valid_rows(valid, hidden.numpy(), case[f"hidden_states.{i}"])
        assert_close(ours, ref, f"{name}/{case_name}/hidden_states.{i}")


def test_legacy_names_load_the_same_weights(models):
    # tfgp_t2lm_head_model/... and wte/weight:0: the names transformers-TF wrote before 4.3x (the hub's files)
    legacy = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(FIXTURES / "lm_head" / "legacy")
    current = models("lm_head")
    for a, b in zip(legacy.weights, current.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _h5_structure(path):
    """Everything but the weight values: root and group attributes, dataset paths, shapes, dtypes, group order."""
    items = []
    with h5py.File(path, "r") as f:
        def attrs(obj):
            return {k: [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(obj.attrs[k])]
                    for k in sorted(obj.attrs)}
        items.append(("/", attrs(f), list(f.keys())))
        f.visititems(lambda name, obj: items.append(
            (name, attrs(obj), (obj.shape, str(obj.dtype)) if isinstance(obj, h5py.Dataset) else list(obj.keys()))))
    return items


@pytest.mark.parametrize("name", ["lm_head", "base", "double_heads", "seq_cls"])
def test_save_pretrained_writes_transformers_tf_h5(models, name, tmp_path):
    # Our writer against the file transformers-TF 4.57 wrote for the same class, config and weights:
    # same structure (attributes, names, order, shapes, dtypes) and the same values.
    models(name).save_pretrained(tmp_path)
    ours, ref = tmp_path / "tf_model.h5", FIXTURES / name / "tf_model.h5"
    assert _h5_structure(ours) == _h5_structure(ref)
    with h5py.File(ours, "r") as a, h5py.File(ref, "r") as b:
        names = []
        b.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
        for n in names:
            np.testing.assert_array_equal(a[n][()], b[n][()], err_msg=n)
