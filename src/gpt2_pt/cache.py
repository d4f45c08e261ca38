"""KVCache: preallocated keys and values for fast decoding in PyTorch, written in place (the one cache contract's
fast form: per layer (batch, n_head, seq, head_dim)). gpt2_tf/cache.py mirrors this file."""

from __future__ import annotations

import torch

from gpt2_core.cache_shapes import buffer_shape, past_in_buffer
from gpt2_core.config import GPT2Config


class KVCache:
    """Preallocated keys and values for fast decoding, written in place.

    Per layer one key and one value buffer of shape (batch, n_head, max_length, head_dim); `length` positions are
    filled. Passed as `past_key_values`, a forward writes its T new keys/values at [length, length + T), attends
    over [0, length + T), advances `length` by T and returns this same object as `past_key_values`.

        >>> cache = KVCache(model.config, batch_size=1, max_length=64)
        >>> out = model(prompt_ids, past_key_values=cache)             # cache.length == prompt length
        >>> out = model(next_ids, past_key_values=cache)               # one more
    """

    def __init__(self, config: GPT2Config, batch_size: int, max_length: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        shape = buffer_shape(config, batch_size, max_length)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.keys[0].size(0)

    @property
    def max_length(self) -> int:
        return self.keys[0].size(2)

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (B, nh, T, hd) new keys/values after the filled part; return views of all keys/values so far."""
        end = self.length + key.size(2)
        self.keys[layer_idx][:, :, self.length:end] = key
        self.values[layer_idx][:, :, self.length:end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def to_tuple(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """The filled part as the tuple-of-pairs `past_key_values` (views, not copies)."""
        return tuple((k[:, :, :self.length], v[:, :, :self.length]) for k, v in zip(self.keys, self.values))

    def reorder(self, index: torch.Tensor) -> None:
        """Select (and repeat) batch rows, as beam search does after each step (in place when the batch size stays:
        only the filled part is copied)."""
        if index.numel() != self.batch_size:
            self.keys = [k.index_select(0, index) for k in self.keys]
            self.values = [v.index_select(0, index) for v in self.values]
            return
        for buffer in (*self.keys, *self.values):
            buffer[:, :, :self.length] = buffer[:, :, :self.length].index_select(0, index)

    @classmethod
    def from_tuple(cls, past, max_length: int) -> "KVCache":
        """A cache of `max_length` positions holding a tuple-of-pairs `past_key_values`."""
        cache = cls.__new__(cls)
        shape, length = past_in_buffer(past, max_length)
        cache.keys, cache.values = [], []
        for key, value in past:
            for source, buffers in ((key, cache.keys), (value, cache.values)):
                buffer = source.new_zeros(shape)
                buffer[:, :, :length] = source
                buffers.append(buffer)
        cache.length = length
        return cache
