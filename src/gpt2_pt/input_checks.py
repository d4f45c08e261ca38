"""GPT2Model's input checks in PyTorch: a ValueError naming the first input that cannot go through the model (its
shape, dtype or values) before any work, instead of an index error deep inside. gpt2_tf/input_checks.py mirrors this
file."""

from __future__ import annotations

import torch

from .cache import KVCache


def check_inputs(config, input_ids, inputs_embeds, past_key_values, attention_mask, token_type_ids, position_ids):
    """Raise ValueError naming the first input that cannot go through the model; return (batch, new, past) lengths."""
    if input_ids is not None:
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"`input_ids` should hold integers. Received: dtype={input_ids.dtype}")
        B, T = input_ids.shape
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.size(-1) != config.n_embd:
            raise ValueError(f"`inputs_embeds` should have shape (batch, seq, n_embd={config.n_embd}). "
                             f"Received: shape={tuple(inputs_embeds.shape)}")
        B, T = inputs_embeds.shape[:2]
    if input_ids is not None:
        _check_ids("input_ids", input_ids, config.vocab_size)

    P = 0
    if isinstance(past_key_values, KVCache):
        P = past_key_values.length
        n_layer, (cb, ch, cmax, cd) = len(past_key_values.keys), past_key_values.keys[0].shape
        if (n_layer, cb, ch, cd) != (config.n_layer, B, config.n_head, config.head_dim):
            raise ValueError(f"`past_key_values` KVCache should hold {config.n_layer} layers of (batch={B}, "
                             f"n_head={config.n_head}, ..., head_dim={config.head_dim}). Received: {n_layer} layers "
                             f"of {(cb, ch, cmax, cd)}")
        if P + T > cmax:
            raise ValueError(f"The KVCache holds max_length={cmax} positions; past {P} + new {T} do not fit")
    elif past_key_values is not None:
        P = _check_past(config, past_key_values, B)
    if P + T > config.n_positions:
        raise ValueError(f"past length + new length should be at most n_positions={config.n_positions}. "
                         f"Received: past {P} + new {T} = {P + T}")

    if attention_mask is not None and tuple(attention_mask.shape) != (B, P + T):
        raise ValueError(f"`attention_mask` should have shape (batch, past + new) = {(B, P + T)}. "
                         f"Received: shape={tuple(attention_mask.shape)}")
    if token_type_ids is not None:
        if tuple(token_type_ids.shape) != (B, T):
            raise ValueError(f"`token_type_ids` should have shape {(B, T)}. "
                             f"Received: shape={tuple(token_type_ids.shape)}")
        _check_ids("token_type_ids", token_type_ids, config.vocab_size)
    if position_ids is not None:
        if position_ids.size(-1) != T or position_ids.size(0) not in (1, B):
            raise ValueError(f"`position_ids` should have shape (batch or 1, {T}). "
                             f"Received: shape={tuple(position_ids.shape)}")
        _check_ids("position_ids", position_ids, config.n_positions)
    return B, T, P


def _check_ids(name, ids, limit):
    if ids.is_meta:  # shapes only (a model built on the meta device): no values to check
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= limit:
        raise ValueError(f"`{name}` should lie in [0, {limit}). Received: values from {low} to {high}")


def _check_past(config, past_key_values, B):
    if len(past_key_values) != config.n_layer:
        raise ValueError(f"`past_key_values` should hold one (key, value) pair per layer ({config.n_layer}). "
                         f"Received: {len(past_key_values)} entries")
    P = past_key_values[0][0].size(-2) if past_key_values[0][0].dim() == 4 else -1
    expected = (B, config.n_head, P, config.head_dim)
    for i, pair in enumerate(past_key_values):
        shapes = [tuple(t.shape) for t in pair]
        if len(shapes) != 2 or any(s != expected for s in shapes):
            raise ValueError(f"`past_key_values[{i}]` should be (key, value), each of shape (batch, n_head, past, "
                             f"head_dim) = {expected}. Received: shapes {shapes}")
    return P
