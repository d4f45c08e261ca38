"""TFGPT2Model's input checks in TensorFlow: a ValueError naming the first input that cannot go through the model (its
shape, dtype or values) before any work, instead of an error deep inside a gather. This file mirrors
gpt2_pt/input_checks.py; what differs is the framework: under tf.function a shape or value may be known only when
the graph runs, and then the check becomes a graph assertion (none under XLA, which cannot run them)."""

from __future__ import annotations

import tensorflow as tf

from .cache import KVCache
from .tf_internals import in_xla_compilation


def dim_of(t, axis):
    """A static dimension when the graph knows it, else the dynamic one."""
    return t.shape[axis] if t.shape[axis] is not None else tf.shape(t)[axis]


def check_inputs(config, input_ids, inputs_embeds, past_key_values, attention_mask, token_type_ids, position_ids):
    """Raise ValueError naming the first input that cannot go through the model; return (batch, new, past) lengths
    and the graph assertions to run first.

    Shapes are checked when known (always eagerly; under tf.function when the traced shapes are), values eagerly;
    what only the running graph knows becomes a tf.debugging assertion, except in a graph XLA compiles: XLA cannot
    run assertions (it drops each with an "Ignoring Assert operator" warning), so there none are made.
    """
    checks = []
    if input_ids is not None:
        if not (input_ids.dtype.is_integer):
            raise ValueError(f"`input_ids` should hold integers. Received: dtype={input_ids.dtype.name}")
        B, T = dim_of(input_ids, 0), dim_of(input_ids, 1)
    else:
        if inputs_embeds.shape.rank != 3 or inputs_embeds.shape[-1] != config.n_embd:
            raise ValueError(f"`inputs_embeds` should have shape (batch, seq, n_embd={config.n_embd}). "
                             f"Received: shape={tuple(inputs_embeds.shape)}")
        B, T = dim_of(inputs_embeds, 0), dim_of(inputs_embeds, 1)
    if known(B) and known(T) and (B == 0 or T == 0):
        raise ValueError(f"The input should hold at least one token. Received: shape {(B, T)}")
    if input_ids is not None:
        checks += _check_ids("input_ids", input_ids, config.vocab_size)

    P = 0
    if isinstance(past_key_values, KVCache):
        P = _check_cache(config, past_key_values, B, T)
    elif past_key_values is not None:
        P = _check_past(config, past_key_values, B)
    checks += check_at_most(P + T, config.n_positions,
                            lambda: f"past length + new length should be at most n_positions={config.n_positions}. "
                                    f"Received: past {P} + new {T} = {P + T}",
                            f"past length + new length should be at most n_positions={config.n_positions}")

    if attention_mask is not None:
        if not (isinstance(past_key_values, KVCache) and attention_mask.shape[-1] == past_key_values.max_length):
            _check_shape("attention_mask", attention_mask, (B, P + T), "(batch, past + new)")
    if token_type_ids is not None:
        _check_shape("token_type_ids", token_type_ids, (B, T), "(batch, new)")
        checks += _check_ids("token_type_ids", token_type_ids, config.vocab_size)
    if position_ids is not None:
        got = (dim_of(position_ids, 0), dim_of(position_ids, -1))
        if known(got[1]) and known(T) and got[1] != T or known(got[0]) and known(B) and got[0] not in (1, B):
            raise ValueError(f"`position_ids` should have shape (batch or 1, {T}). "
                             f"Received: shape={tuple(position_ids.shape)}")
        checks += _check_ids("position_ids", position_ids, config.n_positions)
    return B, T, P, checks


def known(value) -> bool:
    return isinstance(value, int)


def check_at_most(value, limit, message, graph_message):
    if known(value):
        if value > limit:
            raise ValueError(message())
        return []
    if in_xla_compilation():
        return []
    return [tf.debugging.assert_less_equal(value, limit, message=graph_message)]


def _check_shape(name, t, expected, described):
    got = tuple(dim_of(t, i) for i in range(t.shape.rank)) if t.shape.rank is not None else None
    if got is None or len(got) != len(expected) or any(
            known(g) and known(e) and g != e for g, e in zip(got, expected)):
        expected_text = tuple(e if known(e) else None for e in expected)
        raise ValueError(f"`{name}` should have shape {described} = {expected_text}. "
                         f"Received: shape={tuple(t.shape)}")


def _check_ids(name, ids, limit):
    if tf.executing_eagerly():
        low, high = int(tf.reduce_min(ids)), int(tf.reduce_max(ids))
        if low < 0 or high >= limit:
            raise ValueError(f"`{name}` should lie in [0, {limit}). Received: values from {low} to {high}")
        return []
    if in_xla_compilation():
        return []
    return [tf.debugging.assert_non_negative(ids, message=f"`{name}` should lie in [0, {limit})"),
            tf.debugging.assert_less(ids, tf.cast(limit, ids.dtype), message=f"`{name}` should lie in [0, {limit})")]


def _check_cache(config, cache, B, T):
    n_layer, (cb, ch, cmax, cd) = len(cache.keys), tuple(cache.keys[0].shape)
    if (n_layer, ch, cd) != (config.n_layer, config.n_head, config.head_dim) or known(B) and cb != B:
        raise ValueError(f"`past_key_values` KVCache should hold {config.n_layer} layers of (batch={B}, "
                         f"n_head={config.n_head}, ..., head_dim={config.head_dim}). Received: {n_layer} layers "
                         f"of {(cb, ch, cmax, cd)}")
    if not tf.executing_eagerly():
        return cache.length.read_value()  # one traced program for every position
    P = int(cache.length)
    if known(T) and P + T > cmax:
        raise ValueError(f"The KVCache holds max_length={cmax} positions; past {P} + new {T} do not fit")
    return P


def _check_past(config, past_key_values, B):
    if len(past_key_values) != config.n_layer:
        raise ValueError(f"`past_key_values` should hold one (key, value) pair per layer ({config.n_layer}). "
                         f"Received: {len(past_key_values)} entries")
    first = past_key_values[0][0]
    P = dim_of(first, 2) if first.shape.rank == 4 else -1
    expected = (B, config.n_head, P, config.head_dim)
    for i, pair in enumerate(past_key_values):
        shapes = [tuple(t.shape) for t in pair]
        if len(pair) != 2 or any(len(s) != 4 or any(known(e) and g is not None and g != e
                                                    for g, e in zip(s, expected)) for s in shapes):
            shown = tuple(e if known(e) else None for e in expected)
            raise ValueError(f"`past_key_values[{i}]` should be (key, value), each of shape (batch, n_head, past, "
                             f"head_dim) = {shown}. Received: shapes {shapes}")
    return P
