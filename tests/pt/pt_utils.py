"""Helpers for tests/pt: tiny random checkpoints written by transformers 5, loaded by us, compared number for number."""

from __future__ import annotations

import inspect

import pytest
import torch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

import gpt2_pt  # noqa: E402
from tiny import TINY  # noqa: E402  (tests/core: the shape every backend test builds)

RTOL = 1e-5  # fp32: ours vs transformers, relative to the largest magnitude of the reference tensor


def assert_close(ours, ref, what="", rtol=RTOL):
    ours = torch.as_tensor(ours).detach().double()
    ref = torch.as_tensor(ref).detach().double()
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    err = (ours - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol} x {scale:.3g}"


def randomize(model, seed=0):
    """Random values in every parameter (transformers' init leaves biases 0 and LayerNorm 1/0, which would hide a
    bias or LayerNorm bug)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if name.endswith(("wte.weight", "wpe.weight")) else 0.1
            base = 1.0 if ".ln_" in f".{name}" and name.endswith("weight") else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=gen))
    return model


def hf_model(class_name="GPT2LMHeadModel", seed=0, eager=False, **overrides):
    config = transformers.GPT2Config(**{**TINY, **overrides})
    if eager:
        config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return randomize(getattr(transformers, class_name)(config), seed).eval()


def eager_twin(hf):
    """The same weights under transformers' eager attention (the only path that returns attention weights)."""
    config = hf.config.__class__.from_dict(hf.config.to_dict())
    config._attn_implementation = "eager"
    twin = type(hf)(config).eval()
    twin.load_state_dict(hf.state_dict())
    return twin


def save_and_load(hf, directory, **kwargs):
    """Save with transformers, load with ours (same class name)."""
    hf.save_pretrained(directory)
    return getattr(gpt2_pt, type(hf).__name__).from_pretrained(directory, **kwargs)


def hf_call(hf, past=None, **kwargs):
    """Call a transformers model with its cache under whichever name this transformers version uses."""
    if past is not None:
        kwargs["cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"] = past
    return hf(**kwargs)


def hf_past(out):
    """transformers' cache as our tuple of (key, value) pairs."""
    cache = getattr(out, "cache", None) if "cache" in out else out.past_key_values
    return tuple((layer.keys, layer.values) for layer in cache.layers)


def positions_from_mask(mask):
    """What our default computes (and transformers' generate passes): count of kept tokens - 1, clipped at 0."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
