"""generate (TensorFlow) with the logits processors transformers configures by name gives gpt2_pt's tokens on the
same weights: such a field must take gpt2_core's `decode`, never the compiled plain-greedy loop, which knows none
of them. (Each processor against transformers: tests/core/test_generation_processors.py and
tests/pt/test_generate_processors.py.)"""

import numpy as np
import pytest
import test_tf_generate
from test_tf_generate import PAD, left_padded

torch = pytest.importorskip("torch")

lm = test_tf_generate.lm  # the fixture: a tiny random TF model


@pytest.fixture(scope="module")
def pt_twin(lm, tmp_path_factory):
    """gpt2_pt's model with lm's weights, through a checkpoint lm writes."""
    import gpt2_pt

    directory = tmp_path_factory.mktemp("tiny_tf")
    lm.save_pretrained(directory)
    return gpt2_pt.GPT2LMHeadModel.from_pretrained(directory).eval()


def _made_tokens(lm, ids, mask):
    """Tokens plain greedy decoding makes: the ones to suppress, bias and force so that each field matters."""
    out = lm.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, eos_token_id=None).numpy()
    return list(dict.fromkeys(out[:, ids.shape[1]:].T.flatten().tolist()))


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("execution", ["xla", "eager"])
def test_new_processors_give_gpt2_pt_tokens(lm, pt_twin, num_beams, execution):
    ids, mask = left_padded()
    made = _made_tokens(lm, ids, mask)
    cases = [dict(suppress_tokens=made[:2]), dict(begin_suppress_tokens=made[:3]),
             dict(forced_eos_token_id=[7, made[0]]),
             dict(sequence_bias=[[[made[0]], -4.0], [[made[1], made[2]], -9.0]]),
             dict(exponential_decay_length_penalty=(2, 2.0), eos_token_id=made[1]),
             dict(renormalize_logits=True, suppress_tokens=[made[0]])]
    common = dict(attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, num_beams=num_beams)
    plain = lm.generate(ids, execution=execution, **common).numpy()
    for kwargs in cases:
        ours = lm.generate(ids, execution=execution, **common, **kwargs).numpy()
        with torch.no_grad():
            theirs = pt_twin.generate(torch.from_numpy(ids.astype(np.int64)), **{
                **common, "attention_mask": torch.from_numpy(mask.astype(np.int64))}, **kwargs).numpy()
        np.testing.assert_array_equal(ours, theirs, err_msg=str(kwargs))
        if num_beams == 1:
            assert ours.shape != plain.shape or not np.array_equal(ours, plain), f"{kwargs} changed nothing"
