"""Bad input raises ValueError naming the problem, before any computation (gpt2_pt.input_checks; a bad config too).
(Twin of tests/tf/test_tf_input_checks.py.)"""

import pytest
import torch
from pt_utils import TINY

import gpt2_pt


@pytest.fixture(scope="module")
def model():
    return gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)).eval()


def ids(B=2, T=5):
    return torch.randint(0, TINY["vocab_size"], (B, T))


def past_of(model, B=2, T=3):
    return model(ids(B, T)).past_key_values


@pytest.mark.parametrize("call,match", [
    (lambda m: m(torch.tensor([[1, 99]])), r"input_ids.*\[0, 99\).*99"),
    (lambda m: m(torch.tensor([[-1, 2]])), r"input_ids.*-1"),
    (lambda m: m(torch.tensor([[1.0, 2.0]])), "input_ids.*integers"),
    (lambda m: m(), "exactly one of `input_ids` and `inputs_embeds`.*neither"),
    (lambda m: m(ids(), inputs_embeds=torch.zeros(2, 5, 32)), "exactly one.*both"),
    (lambda m: m(inputs_embeds=torch.zeros(2, 5, 16)), "inputs_embeds.*n_embd=32"),
    (lambda m: m(ids(1, 65)), "n_positions=64.*65"),
    (lambda m: m(ids(2, 62), past_key_values=past_of(m)), r"n_positions=64.*past 3 \+ new 62"),
    (lambda m: m(ids(), attention_mask=torch.ones(2, 4)), r"attention_mask.*\(2, 5\).*\(2, 4\)"),
    (lambda m: m(ids(), past_key_values=past_of(m), attention_mask=torch.ones(2, 5)),
     r"attention_mask.*past \+ new\) = \(2, 8\)"),
    (lambda m: m(ids(), past_key_values=past_of(m)[:1]), "one \\(key, value\\) pair per layer"),
    (lambda m: m(ids(), past_key_values=past_of(m, B=3)), r"past_key_values\[0\].*\(2, 4, 3, 8\)"),
    (lambda m: m(ids(), past_key_values=tuple((k[..., :4], v) for k, v in past_of(m))), r"past_key_values\[0\]"),
    (lambda m: m(ids(), token_type_ids=torch.full((2, 5), 200)), "token_type_ids.*200"),
    (lambda m: m(ids(), token_type_ids=torch.zeros(2, 4, dtype=torch.long)), "token_type_ids.*shape"),
    (lambda m: m(ids(), position_ids=torch.tensor([[0, 1, 2, 3, 64]])), "position_ids.*64"),
    (lambda m: m(ids(), position_ids=torch.tensor([[0, 1, 2]])), "position_ids.*shape"),
    (lambda m: m(ids(2, 0)), "at least one token"),
])
def test_bad_input_raises_value_error(model, call, match):
    with pytest.raises(ValueError, match=match):
        call(model)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="add_cross_attention"):
        gpt2_pt.GPT2Model(gpt2_pt.GPT2Config(**TINY, add_cross_attention=True))
    with pytest.raises(ValueError, match="summary_type='attn'"):
        gpt2_pt.GPT2DoubleHeadsModel(gpt2_pt.GPT2Config(**TINY, summary_type="attn"))
