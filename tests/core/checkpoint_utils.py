"""What the checkpoint tests share: a transformers model with every tensor distinct, its numpy state, exact
comparison of two states."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "layouts"
TINY = dict(vocab_size=11, n_positions=6, n_embd=8, n_layer=2, n_head=2, bos_token_id=10, eos_token_id=10)


def hf_model(cls_name="GPT2LMHeadModel", seed=0, **config):
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(transformers.GPT2Config(**{**TINY, **config}))
    with torch.no_grad():  # biases start at 0 and LayerNorms at 1: randomise so every tensor is distinct
        for p in model.parameters():
            p.normal_()
    return model


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def assert_same_state(ours, theirs):
    assert list(ours) == list(theirs) or set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


def memmap_backed(array):
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False
