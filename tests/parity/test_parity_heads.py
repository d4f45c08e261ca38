"""The heads where the two backends once drifted apart, each against transformers 5 and against each other on
one checkpoint: every `problem_type` of sequence classification, every `summary_type` of DoubleHeads, and the
shapes and numbers of hidden states and attentions for inputs with leading dimensions."""

from pathlib import Path

import numpy as np
import pytest
from parity_utils import TINY, assert_close, randomize_torch, tf, torch

import gpt2_pt
import gpt2_tf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _three(class_name, directory, seed=0, **overrides):
    """transformers' model (eager attention, which returns the weights), ours in PyTorch and in TensorFlow, all on
    the checkpoint transformers saved."""
    config = transformers.GPT2Config(**{**TINY, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    hf = randomize_torch(getattr(transformers, class_name)(config), seed).eval()
    hf.save_pretrained(directory)
    pt = getattr(gpt2_pt, class_name).from_pretrained(directory).eval()
    return hf, pt, getattr(gpt2_tf, "TF" + class_name).from_pretrained(directory)


def _call_all(models, **inputs):
    hf, pt, tf_model = models

    def convert(to):  # arrays become each framework's tensors, flags pass as they are
        return {k: to(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}

    with torch.no_grad():
        ref, pt_out = hf(**convert(torch.from_numpy)), pt(**convert(torch.from_numpy))
    return ref, pt_out, tf_model(**convert(tf.constant))


def _assert_field(field, ref, pt_out, tf_out):
    expected = getattr(ref, field)
    assert_close(getattr(pt_out, field), expected, f"pt {field}")
    assert_close(getattr(tf_out, field), expected, f"tf {field}")


SEQ_IDS = np.random.default_rng(0).integers(1, 99, size=(3, 6))
SEQ_IDS[1, 4:] = 0  # right padding (pad_token_id 0)


@pytest.mark.parametrize("num_labels,labels,problem_type", [
    (3, np.array([2, 0, 1]), None),  # inferred: single_label_classification
    (3, np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32), None),  # inferred: multi-label
    (1, np.array([0.5, -1.0, 2.0], np.float32), None),  # inferred: regression
    (3, np.array([2, 0, 1]), "single_label_classification"),
    (2, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32), "multi_label_classification"),
    (2, np.array([[0.3, 0.1], [1.0, 2.0], [0.0, -1.0]], np.float32), "regression"),
    (1, np.array([0.5, -1.0, 2.0], np.float32), "regression"),
    # stated in the config, the problem type wins over what the labels' dtype would infer
    (3, np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32), "regression"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sequence_classification_problem_types(num_labels, labels, problem_type, tmp_path):
    models = _three("GPT2ForSequenceClassification", tmp_path, num_labels=num_labels, pad_token_id=0,
                    problem_type=problem_type)
    assert models[2].config.problem_type == problem_type
    outputs = _call_all(models, input_ids=SEQ_IDS, labels=labels)
    for field in ("logits", "loss"):
        _assert_field(field, *outputs)


CHOICE_IDS = np.random.default_rng(1).integers(0, 99, size=(2, 3, 6))  # (batch, choices, seq)
MC_TOKEN_IDS = np.array([[5, 3, 0], [1, 2, 4]])


@pytest.mark.parametrize("summary_type", ["first", "last", "mean", "cls_index"])
@pytest.mark.parametrize("with_tokens", [True, False], ids=["mc_token_ids", "no_mc_token_ids"])
def test_double_heads_summary_types(summary_type, with_tokens, tmp_path):
    # "first", "last" and "mean" pick along axis 1 in transformers: the choices of (batch, choices, seq, C), which
    # makes mc_logits (batch, seq). Both backends keep that quirk, so the numbers stay transformers'.
    models = _three("GPT2DoubleHeadsModel", tmp_path, summary_type=summary_type, summary_activation="tanh")
    inputs = dict(input_ids=CHOICE_IDS, mc_labels=np.array([2, 0]))
    if with_tokens:
        inputs["mc_token_ids"] = MC_TOKEN_IDS
    outputs = _call_all(models, **inputs)
    for field in ("mc_logits", "mc_loss", "logits"):
        _assert_field(field, *outputs)


@pytest.mark.parametrize("class_name,shape", [
    ("GPT2Model", (6,)),
    ("GPT2Model", (2, 2, 5)),
    ("GPT2LMHeadModel", (1, 3, 4)),
    ("GPT2DoubleHeadsModel", (2, 3, 6)),
])
def test_leading_dimensions_of_hidden_states_and_attentions(class_name, shape, tmp_path):
    # transformers restores the input's leading shape on the last hidden state only: the other hidden states, the
    # attentions and the past keep the folded batch (prod(lead), ...). Both backends do the same.
    models = _three(class_name, tmp_path)
    ids = np.random.default_rng(2).integers(0, 99, size=shape)
    ref, pt_out, tf_out = _call_all(models, input_ids=ids, output_hidden_states=True, output_attentions=True)
    for name in ("hidden_states", "attentions"):
        expected = getattr(ref, name)
        assert len(getattr(pt_out, name)) == len(getattr(tf_out, name)) == len(expected)
        for i, r in enumerate(expected):
            assert_close(getattr(pt_out, name)[i], r, f"pt {name}[{i}]")
            assert_close(getattr(tf_out, name)[i], r, f"tf {name}[{i}]")
    hf_layer = ref.past_key_values.layers[0]
    for out, backend in ((pt_out, "pt"), (tf_out, "tf")):
        assert_close(out.past_key_values[0][0], hf_layer.keys, f"{backend} past[0].key")



SUMMARY_FIXTURE = Path(__file__).parents[1] / "fixtures" / "tf457" / "double_heads"


@pytest.mark.parametrize("case", ["first", "last", "mean", "cls_index", "first_default", "last_default",
                                  "mean_default", "cls_index_default"])
def test_double_heads_summary_types_equal_transformers_tf(case):
    # transformers-TF 4.57's own numbers (tests/fixtures/make_tf_fixtures.py, summary.npz) from its tf_model.h5,
    # loaded into both backends under the same summary_type
    with np.load(SUMMARY_FIXTURE / "summary.npz") as data:
        arrays = {key.split(".", 1)[1]: data[key] for key in data.files if key.split(".", 1)[0] == case}
    summary = dict(summary_type=case.removesuffix("_default"), summary_activation="tanh")
    pt = gpt2_pt.GPT2DoubleHeadsModel.from_pretrained(SUMMARY_FIXTURE, **summary).eval()
    tf_model = gpt2_tf.TFGPT2DoubleHeadsModel.from_pretrained(SUMMARY_FIXTURE, **summary)
    inputs = {k: arrays[k].astype(np.int64) for k in ("input_ids", "mc_token_ids") if k in arrays}
    with torch.no_grad():
        pt_out = pt(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_attentions=True)
    tf_out = tf_model(**{k: tf.constant(v) for k, v in inputs.items()}, output_attentions=True)
    for out, backend in ((pt_out, "pt"), (tf_out, "tf")):
        assert_close(out.mc_logits, arrays["mc_logits"], f"{backend} {case} mc_logits")
        for i, attention in enumerate(out.attentions if "attentions.0" in arrays else ()):
            assert_close(attention, arrays[f"attentions.{i}"], f"{backend} {case} attentions[{i}]")
