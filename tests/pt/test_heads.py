"""The four other heads against transformers 5: outputs, losses, summary/problem-type variants, tuple outputs."""

import pytest
import torch
from pt_utils import TINY, assert_close, eager_twin, hf_past, positions_from_mask

V = TINY["vocab_size"]


def ids_of(*shape, seed=1):
    return torch.randint(1, V, shape, generator=torch.Generator().manual_seed(seed))


def assert_same_past(out, ref):
    for (k, v), (rk, rv) in zip(out.past_key_values, hf_past(ref)):
        assert_close(k, rk, "key")
        assert_close(v, rv, "value")


@pytest.mark.parametrize("summary", [
    {},
    {"summary_type": "last"},
    {"summary_type": "first", "summary_activation": "tanh"},
    {"summary_type": "mean", "summary_proj_to_labels": False},
    {"summary_use_proj": False},
    {"summary_first_dropout": 0.0, "tie_word_embeddings": False},
])
def test_double_heads(summary, pair):
    hf, ours = pair("GPT2DoubleHeadsModel", **summary)
    ids = ids_of(2, 3, 6)  # (batch, choices, seq)
    mc_token_ids = torch.tensor([[5, 3, 0], [1, 2, 4]])
    kwargs = dict(input_ids=ids, mc_token_ids=mc_token_ids, labels=ids, output_hidden_states=True)
    if not summary.get("summary_proj_to_labels", True) is False and summary.get("summary_use_proj", True):
        kwargs["mc_labels"] = torch.tensor([2, 0])
    ref, out = hf(**kwargs), ours(**kwargs)
    for field in ("logits", "mc_logits", "loss", "mc_loss"):
        if getattr(ref, field) is None:
            assert getattr(out, field) is None
        else:
            assert_close(getattr(out, field), getattr(ref, field), field)
    for i, (h, r) in enumerate(zip(out.hidden_states, ref.hidden_states, strict=True)):
        assert_close(h, r, f"hidden_states[{i}]")
    assert_same_past(out, ref)
    assert ours.config.num_labels == 1  # transformers' DoubleHeads sets it; ours does on its own copy


def test_double_heads_default_cls_index_and_attentions(pair):
    hf, ours = pair("GPT2DoubleHeadsModel")
    ids = ids_of(2, 2, 5)
    ref = eager_twin(hf)(ids, output_attentions=True)
    out = ours(ids, output_attentions=True)
    assert_close(out.mc_logits, ref.mc_logits)
    for a, r in zip(out.attentions, ref.attentions, strict=True):
        assert_close(a, r, "attentions")


def seq_cls_inputs():
    ids = ids_of(3, 6)
    ids[1, 4:] = 0  # right padding with pad_token_id 0
    ids[2, :2] = 0  # left padding
    am = (ids != 0).long()
    return ids, am


@pytest.mark.parametrize("num_labels,labels,problem_type", [
    (3, torch.tensor([2, 0, 1]), None),
    (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), None),
    (1, torch.tensor([0.5, -1.0, 2.0]), None),
    (2, torch.tensor([[0.3, 0.1], [1.0, 2.0], [0.0, -1.0]]), "regression"),
    (2, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "multi_label_classification"),
])
def test_sequence_classification(num_labels, labels, problem_type, pair):
    extra = {"problem_type": problem_type} if problem_type else {}
    hf, ours = pair("GPT2ForSequenceClassification", num_labels=num_labels, pad_token_id=0, **extra)
    ids, am = seq_cls_inputs()
    pos = positions_from_mask(am)
    ref = hf(input_ids=ids, attention_mask=am, position_ids=pos, labels=labels)
    out = ours(ids, attention_mask=am, labels=labels)
    assert_close(out.logits, ref.logits, "logits")
    assert_close(out.loss, ref.loss, "loss")
    assert_same_past(out, ref)


def test_sequence_classification_batch_without_pad_token(pair):
    hf, ours = pair("GPT2ForSequenceClassification")
    one = ids_of(1, 5)
    assert_close(ours(one).logits, hf(one).logits)
    embeds = ours.transformer.wte(one)
    assert_close(ours(inputs_embeds=embeds).logits, hf(inputs_embeds=embeds).logits)
    with pytest.raises(ValueError, match="pad_token_id"):
        ours(ids_of(2, 5))


def test_token_classification(pair):
    hf, ours = pair("GPT2ForTokenClassification", num_labels=5)
    ids = ids_of(2, 6)
    labels = torch.randint(0, 5, (2, 6))
    labels[0, :2] = -100
    ref, out = hf(ids, labels=labels, output_hidden_states=True), ours(ids, labels=labels, output_hidden_states=True)
    assert_close(out.logits, ref.logits, "logits")
    assert_close(out.loss, ref.loss, "loss")
    assert_close(out.hidden_states[-1], ref.hidden_states[-1])
    assert not hasattr(out, "past_key_values")


def test_question_answering(pair):
    hf, ours = pair("GPT2ForQuestionAnswering")
    ids = ids_of(3, 6)
    start, end = torch.tensor([1, 0, 9]), torch.tensor([[4], [5], [-3]])  # out-of-range ones are ignored
    ref = hf(ids, start_positions=start, end_positions=end)
    out = ours(ids, start_positions=start, end_positions=end)
    for field in ("start_logits", "end_logits", "loss"):
        assert_close(getattr(out, field), getattr(ref, field), field)


@pytest.mark.parametrize("class_name,extra", [
    ("GPT2Model", {}),
    ("GPT2DoubleHeadsModel", {"mc_token_ids": torch.tensor([[3, 4]]), "mc_labels": torch.tensor([1])}),
    ("GPT2ForSequenceClassification", {"labels": torch.tensor([1])}),
    ("GPT2ForTokenClassification", {"labels": torch.ones(1, 5, dtype=torch.long)}),
    ("GPT2ForQuestionAnswering", {"start_positions": torch.tensor([1]), "end_positions": torch.tensor([3])}),
])
def test_return_dict_false_tuples_in_transformers_order(class_name, extra, pair):
    hf, ours = pair(class_name)
    ids = ids_of(1, 2, 5) if class_name == "GPT2DoubleHeadsModel" else ids_of(1, 5)
    ref = hf(ids, output_hidden_states=True, return_dict=False, **extra)
    out = ours(ids, output_hidden_states=True, return_dict=False, **extra)
    assert isinstance(out, tuple) and len(out) == len(ref)
    for i, (o, r) in enumerate(zip(out, ref)):
        if isinstance(o, torch.Tensor):
            assert_close(o, r, f"item {i}")
        elif isinstance(r, tuple):  # hidden states
            assert_close(o[-1], r[-1], f"item {i}")
        else:  # past: our tuple of pairs, their cache object
            assert_close(o[0][0], r.layers[0].keys, f"item {i}")
