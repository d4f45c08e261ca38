"""The five released GPT-2 sizes: config, parameter count, and a forward that runs.

The real weights cannot be downloaded here, so each size is built on torch's meta device (shapes only, no memory)
and the smallest one, distilgpt2, also runs for real with random weights: against transformers in PyTorch and
against gpt2_tf, at full width and vocabulary.
"""

import numpy as np
import pytest
import torch

from gpt2_core import GPT2Config
from known_sizes import PARAMETER_COUNTS  # tests/core is on sys.path (tests/conftest.py)
from gpt2_core.parity import PARITY_RTOL

import gpt2_pt



@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_each_size_builds_counts_and_runs_on_meta(name):
    config = GPT2Config.from_pretrained(name)
    with torch.device("meta"):
        model = gpt2_pt.GPT2LMHeadModel(config)
        ids = torch.zeros(2, 16, dtype=torch.long)
    assert model.num_parameters() == PARAMETER_COUNTS[name]
    assert model.lm_head.weight is model.transformer.wte.weight
    out = model(ids)
    assert out.logits.shape == (2, 16, 50257)
    assert len(out.past_key_values) == config.n_layer
    assert out.past_key_values[0][0].shape == (2, config.n_head, 16, config.n_embd // config.n_head)


def _relative_error(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return np.abs(ours - ref).max() / np.abs(ref).max()


@pytest.fixture(scope="module")
def distilgpt2_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("distilgpt2")
    torch.manual_seed(0)
    gpt2_pt.GPT2LMHeadModel(GPT2Config.from_pretrained("distilgpt2")).save_pretrained(directory)
    return directory


def test_distilgpt2_random_weights_match_transformers(distilgpt2_dir):
    transformers = pytest.importorskip("transformers")
    ids = torch.randint(0, 50257, (2, 24), generator=torch.Generator().manual_seed(1))
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(distilgpt2_dir).eval()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(distilgpt2_dir).eval()
    with torch.no_grad():
        assert _relative_error(ours(ids).logits, theirs(ids).logits) <= 1e-5


def test_distilgpt2_random_weights_pt_equals_tf(distilgpt2_dir):
    gpt2_tf = pytest.importorskip("gpt2_tf")
    ids = np.random.default_rng(2).integers(0, 50257, (2, 24))
    with torch.no_grad():
        pt_out = gpt2_pt.GPT2LMHeadModel.from_pretrained(distilgpt2_dir).eval()(torch.from_numpy(ids))
    tf_out = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(distilgpt2_dir)(ids)
    assert _relative_error(tf_out.logits, pt_out.logits.numpy()) <= PARITY_RTOL
    for (k_pt, v_pt), (k_tf, v_tf) in zip(pt_out.past_key_values, tf_out.past_key_values):
        assert _relative_error(k_tf, k_pt.numpy()) <= PARITY_RTOL
        assert _relative_error(v_tf, v_pt.numpy()) <= PARITY_RTOL
