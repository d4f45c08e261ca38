"""The shapes of the one cache contract, checked once for both backends' KVCache: per layer a (key, value) pair of
(batch, n_head, seq, head_dim), preallocated to `max_length` positions of which `length` are filled."""

from __future__ import annotations


def buffer_shape(config, batch_size: int, max_length: int) -> tuple[int, int, int, int]:
    """(batch, n_head, max_length, head_dim): one layer's key (or value) buffer; `max_length` fits n_positions."""
    if max_length > config.n_positions:
        raise ValueError(f"`max_length` should be at most n_positions={config.n_positions}. "
                         f"Received: max_length={max_length}")
    return (batch_size, config.n_head, max_length, config.head_dim)


def past_in_buffer(past, max_length: int) -> tuple[tuple[int, int, int, int], int]:
    """(buffer shape, filled length) of a `max_length`-position cache holding a tuple-of-pairs `past_key_values`."""
    batch, n_head, length, head_dim = (int(d) for d in past[0][0].shape)
    if length > max_length:
        raise ValueError(f"`max_length` should be at least the past length {length}. "
                         f"Received: max_length={max_length}")
    return (batch, n_head, max_length, head_dim), length
