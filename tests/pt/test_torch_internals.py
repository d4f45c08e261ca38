"""gpt2_pt's private torch operators (torch_internals) and their fallbacks: with the operators hidden, as in a torch
built without them, batched decoding runs on the model's own weights and int8 decoding on dequantized int8 weights,
with the right numbers."""

import types

import numpy as np
import pytest
import torch
from pt_utils import TINY, randomize

import gpt2_pt
from gpt2_pt import generation, torch_internals


@pytest.fixture
def model():
    return randomize(gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)), seed=3).eval()


IDS = torch.from_numpy(np.random.default_rng(0).integers(0, 98, size=(3, 5)))


def hide(monkeypatch, namespace):
    monkeypatch.setattr(torch.ops, namespace, types.SimpleNamespace())


def test_without_onednn_batched_decoding_uses_the_models_weights(model, monkeypatch):
    packed_tokens = generation.generate(model, IDS, max_new_tokens=6, pad_token_id=0)
    plain_tokens = generation.generate(model, IDS, max_new_tokens=6, pad_token_id=0, pack_weights=False)
    hide(monkeypatch, "mkldnn")
    assert torch_internals.onednn_linear() is None and not generation.can_pack(model)
    tokens = generation.generate(model, IDS, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(tokens, plain_tokens) and torch.equal(tokens, packed_tokens)
    assert "packed" not in generation._COPIES.get(model, {})


def test_without_fbgemm_int8_multiplies_by_the_dequantized_weights(model, monkeypatch):
    x = torch.randn(4, TINY["n_embd"], generator=torch.Generator().manual_seed(1))
    layer = model.transformer.h[0].mlp.c_fc
    weight, bias = layer.weight.t(), layer.bias
    fast = generation.Int8Linear(weight, bias)
    hide(monkeypatch, "quantized")
    assert torch_internals.int8_linear() is None
    fallback = generation.Int8Linear(weight, bias)
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    expected = torch.nn.functional.linear(x, (weight / scale).round() * scale, bias)
    torch.testing.assert_close(fallback(x), expected, rtol=1e-6, atol=1e-6)
    # fbgemm also quantises x (7 bits): close to the fallback, not equal
    with torch.no_grad():
        assert (fast(x) - fallback(x)).abs().max() < 0.02 * expected.abs().max()
        assert (fallback(x) - layer(x)).abs().max() < 0.02 * expected.abs().max()  # the int8 weights' own error
    generation.drop_copy(model, "int8")
    tokens = generation.generate(model, IDS, max_new_tokens=4, pad_token_id=0, quantize="int8")
    assert isinstance(generation.int8_copy(model).lm_head, generation.Int8Linear)
    assert generation.int8_copy(model).lm_head.linear is None
    assert tokens.shape == (3, 9) and torch.equal(tokens[:, :5], IDS)
