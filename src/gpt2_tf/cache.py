"""KVCache: preallocated keys and values for fast decoding in TensorFlow, written in place (the one cache contract's
fast form: per layer (batch, n_head, seq, head_dim)). This file mirrors gpt2_pt/cache.py; what differs is the
framework reason stated in the class docstring."""

from __future__ import annotations

import tensorflow as tf

from gpt2_core.cache_shapes import buffer_shape, past_in_buffer
from gpt2_core.config import GPT2Config


class KVCache:
    """Preallocated keys and values for fast decoding, written in place.

    Per layer one key and one value buffer of shape (batch, n_head, max_length, head_dim), tf.Variables outside
    any model's weights; `length` (an int32 tf.Variable) positions are filled. Passed as `past_key_values`, a
    call writes its T new keys/values at [length, length + T), attends over the whole buffer with the keys from
    length + T on masked, advances `length` by T and returns this same object as `past_key_values`. Shapes never
    depend on `length`, so one program traced under tf.function(jit_compile=True) serves every position (the
    framework reason this differs from gpt2_pt's KVCache, which slices to the filled part). For the same reason
    `attention_mask` may cover the whole buffer, (batch, max_length), as well as (batch, length + T).

        >>> cache = KVCache(model.config, batch_size=1, max_length=64)
        >>> out = model(prompt_ids, past_key_values=cache)             # int(cache.length) == prompt length
        >>> out = model(next_ids, past_key_values=cache)               # one more
    """

    def __init__(self, config: GPT2Config, batch_size: int, max_length: int, *, dtype="float32"):
        shape = buffer_shape(config, batch_size, max_length)
        self.keys = [tf.Variable(tf.zeros(shape, dtype), trainable=False) for _ in range(config.n_layer)]
        self.values = [tf.Variable(tf.zeros(shape, dtype), trainable=False) for _ in range(config.n_layer)]
        self.length = tf.Variable(0, dtype=tf.int32, trainable=False)

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def max_length(self) -> int:
        return self.keys[0].shape[2]

    def update(self, layer_idx: int, key: tf.Tensor, value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Write (B, nh, T, hd) new keys/values at [length, length + T); return the whole buffers (B, nh,
        max_length, hd): the caller masks the keys from length + T on."""
        B, H, T = self.batch_size, self.keys[0].shape[1], tf.shape(key)[2]
        # where each new (row, head, t) goes: [row, head, length + t], one scatter for any T
        rows, heads, steps = tf.meshgrid(tf.range(B), tf.range(H), tf.range(T) + self.length, indexing="ij")
        at = tf.stack([rows, heads, steps], axis=-1)  # (B, nh, T, 3)
        self.keys[layer_idx].scatter_nd_update(at, tf.cast(key, self.keys[layer_idx].dtype))
        self.values[layer_idx].scatter_nd_update(at, tf.cast(value, self.values[layer_idx].dtype))
        return self.keys[layer_idx], self.values[layer_idx]

    def to_tuple(self) -> tuple[tuple[tf.Tensor, tf.Tensor], ...]:
        """The filled part as the tuple-of-pairs `past_key_values` (copies)."""
        n = self.length
        return tuple((k[:, :, :n], v[:, :, :n]) for k, v in zip(self.keys, self.values))

    def reorder(self, index) -> None:
        """Select (and repeat) batch rows, as beam search does after each step (in place when the batch size
        stays; a new batch size gets new buffers, eagerly only)."""
        index = tf.convert_to_tensor(index)
        if index.shape[0] != self.batch_size:
            self.keys = [tf.Variable(tf.gather(k, index), trainable=False) for k in self.keys]
            self.values = [tf.Variable(tf.gather(v, index), trainable=False) for v in self.values]
            return
        for buffer in (*self.keys, *self.values):
            buffer.assign(tf.gather(buffer, index))

    @classmethod
    def from_tuple(cls, past, max_length: int) -> "KVCache":
        """A cache of `max_length` positions holding a tuple-of-pairs `past_key_values`."""
        cache = cls.__new__(cls)
        _, length = past_in_buffer(past, max_length)
        pad = [[0, 0], [0, 0], [0, max_length - length], [0, 0]]
        cache.keys = [tf.Variable(tf.pad(k, pad), trainable=False) for k, _ in past]
        cache.values = [tf.Variable(tf.pad(v, pad), trainable=False) for _, v in past]
        cache.length = tf.Variable(length, dtype=tf.int32, trainable=False)
        return cache
