"""`generate` for the TensorFlow GPT-2: the decoding itself is gpt2_core.generation's; this file runs the model.

Two ways to run it, same tokens:
- `_LeanDecoder` (default): a decode-specialised forward written against the layers' weights, with a
  preallocated key/value cache (tf.Variables, written in place), the LM head on the last position only, compiled
  with XLA: one program for the prompt, one for each new token, traced once and kept on the model for the next call.
  Per generated token it is one pass over the weights with nothing else in the way (GEMVs are the whole cost).
- `_ModelDecoder`: calls the model's own forward with its cache (used when the lean path does not cover a config).

    >>> ids = model.generate(tf.constant([[464, 3290]]), max_new_tokens=8)              # greedy
    >>> ids = model.generate(prompt, do_sample=True, top_p=0.9, seed=0)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gpt2_core.generation import GenerationConfig, decode, prepare

from . import modeling

EXECUTION_MODES = ("xla", "graph", "eager")


def generate(model, input_ids, attention_mask=None, generation_config: GenerationConfig | None = None,
             streamer=None, seed: int | None = None, *, execution: str = "xla", **kwargs) -> tf.Tensor:
    """Prompt followed by new tokens, shape (batch * num_return_sequences, length); see GenerationConfig.

    `kwargs` override fields of `generation_config` (else `model.generation_config`, else the model config's
    special tokens). `seed` makes sampling reproducible without touching the global seed (tf.random.set_seed and
    keras.utils.set_random_seed work too). The result has the dtype of `input_ids` (int32 or int64; int32 for a
    list). `execution` runs the lean decoder compiled with XLA ("xla", the fastest once compiled), as a TF graph
    without XLA ("graph") or eagerly ("eager"); the tokens are the same.
    """
    config = _base_config(model, generation_config).copy(**kwargs)  # unknown kwargs raise here
    if execution not in EXECUTION_MODES:
        raise ValueError(f"`execution` should be one of {EXECUTION_MODES}. Received: execution={execution!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` should be None or an integer. Received: seed={seed!r}")
    out_dtype = _int_dtype(input_ids)
    ids_np = _to_numpy(input_ids, "input_ids")
    mask_np = None if attention_mask is None else _to_numpy(attention_mask, "attention_mask")
    mc = model.config
    config, ids_np, mask_np, max_length, min_length = prepare(
        config, ids_np, mask_np, n_positions=mc.n_positions, vocab_size=mc.vocab_size)

    rows = ids_np.shape[0] * max(config.num_beams, config.num_return_sequences)
    if _LeanDecoder.supports(model):
        runner = _LeanDecoder(model, rows, max_length, seed=seed, execution=execution)
    else:
        runner = _ModelDecoder(model, rows, max_length, seed=seed)
    out = decode(runner, config, ids_np, mask_np, max_length=max_length, min_length=min_length,
                 streamer=None if streamer is None else _TFStreamer(streamer, out_dtype))
    return tf.constant(out, dtype=out_dtype)


def _base_config(model, generation_config):
    if generation_config is not None:
        if not isinstance(generation_config, GenerationConfig):
            raise ValueError("`generation_config` should be a gpt2_core GenerationConfig. "
                             f"Received: {type(generation_config).__name__}")
        return generation_config
    own = getattr(model, "generation_config", None)
    if isinstance(own, GenerationConfig):
        return own
    return GenerationConfig.from_model_config(model.config)


def _int_dtype(input_ids):
    # as transformers-TF: the output keeps the prompt's integer dtype (int32 for a Python list, like tf.constant)
    dtype = getattr(input_ids, "dtype", None)
    if dtype is None:
        return tf.int32
    dtype = tf.as_dtype(dtype)
    return dtype if dtype in (tf.int32, tf.int64) else tf.int64


def _to_numpy(x, name):
    if isinstance(x, (tf.Tensor, tf.Variable)):
        if x.dtype.is_floating and name == "input_ids":
            raise ValueError(f"`input_ids` should hold integers. Received dtype {x.dtype.name}")
        return x.numpy()
    return np.asarray(x)


class _TFStreamer:
    """Hands the streamer numpy arrays of the output's dtype: streamers (ours and transformers') call `.tolist()`,
    which tf tensors lack."""

    def __init__(self, streamer, dtype):
        self.streamer, self.dtype = streamer, dtype.as_numpy_dtype

    def put(self, value):
        self.streamer.put(value.astype(self.dtype))

    def end(self):
        self.streamer.end()


def _positions(mask: np.ndarray) -> np.ndarray:
    # positions count the real tokens only, so a left-padded row sees the positions it would see alone
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)


class _Sampler:
    def __init__(self, seed):
        self.generator = None if seed is None else tf.random.Generator.from_seed(int(seed))

    def uniform(self, shape):
        # without a seed, drawn by tf.random so that tf.random.set_seed makes sampling reproducible
        if self.generator is None:
            return tf.random.uniform(shape, dtype=tf.float64).numpy()
        return self.generator.uniform(shape, dtype=tf.float64).numpy()


class _ModelDecoder(_Sampler):
    """Runs the model's own forward eagerly; its cache is the model's tuple of (key, value) pairs."""

    def __init__(self, model, rows, max_length, *, seed):
        super().__init__(seed)
        self.model, self.past = model, None

    def _run(self, ids, mask, positions):
        out = self.model(input_ids=tf.constant(ids), attention_mask=tf.constant(mask),
                         position_ids=tf.constant(positions), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return tf.cast(out.logits[:, -1], tf.float32).numpy()

    def prefill(self, input_ids, attention_mask):
        return self._run(input_ids, attention_mask, _positions(attention_mask))

    def step(self, tokens, attention_mask):
        return self._run(tokens[:, None], attention_mask, _positions(attention_mask)[:, -1:])

    def reorder(self, index):
        index = tf.constant(index)
        self.past = tuple((tf.gather(k, index), tf.gather(v, index)) for k, v in self.past)


# ---------------------------------------------------------------------------------------------------------------
# The lean decoder


class _Linear:
    """y = x @ W + b for a Conv1D weight (in, out) or a Linear weight (out, in), reading the variable in place."""

    def __init__(self, layer):
        self.weight, self.bias = layer.weight, layer.bias
        self.transposed = isinstance(layer, modeling.Linear)

    def __call__(self, x, dtype):  # x: (rows, in)
        y = tf.matmul(x, tf.cast(self.weight, dtype), transpose_b=self.transposed)
        return y if self.bias is None else tf.nn.bias_add(y, tf.cast(self.bias, dtype))


def _layer_norm(x, weight, bias, eps):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + eps) * tf.cast(weight, x.dtype) + tf.cast(bias, x.dtype)


class _LeanDecoder(_Sampler):
    """GPT-2 forward for generation only: preallocated per-layer key/value variables (rows, heads, capacity,
    head_dim) written in place, no dropout, no outputs but the last position's logits.

    The compiled programs and their cache live on the model (`_Program`, one per rows x capacity x execution), so
    a second generate call of the same shape neither traces nor compiles again. The capacity is max_length rounded
    up to a power of two (at most n_positions): calls of nearby lengths share one program; masked keys past the
    end cost a little attention, nothing else.
    """

    @staticmethod
    def supports(model) -> bool:
        body, head = getattr(model, "transformer", None), getattr(model, "lm_head", None)
        c = getattr(model, "config", None)
        if body is None or head is None or c is None:
            return False
        if getattr(c, "add_cross_attention", False) or getattr(c, "reorder_and_upcast_attn", False):
            return False
        if not all(hasattr(body, name) for name in ("wte", "wpe", "h", "ln_f")):
            return False
        block = body.h[0]
        return all(hasattr(block, n) for n in ("ln_1", "attn", "ln_2", "mlp")) and \
            hasattr(block.attn, "c_attn") and hasattr(block.mlp, "c_fc") and callable(getattr(block.mlp, "act", None))

    def __init__(self, model, rows, max_length, *, seed=None, execution="xla"):
        super().__init__(seed)
        capacity = min(1 << (max_length - 1).bit_length(), model.config.n_positions)
        self.program = _program(model, rows, capacity, execution)
        self.length = 0

    def prefill(self, input_ids, attention_mask):
        self.length = input_ids.shape[1]
        return self.program.prefill(tf.constant(input_ids, tf.int32), tf.constant(_positions(attention_mask)),
                                    tf.constant(attention_mask != 0)).numpy()

    def step(self, tokens, attention_mask):
        # the mask the core passes covers the cache and the new token: it becomes the keys the token may see
        key_ok = np.zeros((len(tokens), self.program.capacity), dtype=bool)
        key_ok[:, :attention_mask.shape[1]] = attention_mask != 0
        positions = attention_mask.sum(axis=1) - 1
        logits = self.program.step(tf.constant(tokens, tf.int32), tf.constant(positions, tf.int32),
                                   tf.constant(key_ok), tf.constant(self.length, tf.int32))
        self.length += 1
        return logits.numpy()

    def reorder(self, index):
        self.program.reorder(tf.constant(index, tf.int32))


_MAX_PROGRAMS = 4
_MAX_CACHE_BYTES = 1 << 30


def _program(model, rows, capacity, execution) -> "_Program":
    """The model's program for this shape, built on first use; the least recently used go beyond 4 programs or
    1 GiB of key/value cache (the newest always stays)."""
    programs = model.__dict__.get("_gpt2_decode_programs")
    if programs is None:
        programs = {}
        object.__setattr__(model, "_gpt2_decode_programs", programs)  # not a Keras-tracked attribute
    key = (rows, capacity, execution)
    program = programs.pop(key, None) or _Program(model, rows, capacity, execution)
    programs[key] = program  # dicts keep insertion order: the last is the most recently used
    while len(programs) > 1 and (len(programs) > _MAX_PROGRAMS or
                                 sum(p.cache_bytes for p in programs.values()) > _MAX_CACHE_BYTES):
        del programs[next(iter(programs))]
    return program


class _Program:
    """The lean forward's two entry points for one (rows, capacity), with their key/value variables."""

    def __init__(self, model, rows, capacity, execution):
        c = model.config
        body = model.transformer
        self.rows, self.capacity = rows, capacity
        self.n_head, self.head_dim = c.n_head, c.n_embd // c.n_head
        self.eps = c.layer_norm_epsilon
        self.dtype = tf.as_dtype(model.compute_dtype)
        self.wte, self.wpe = body.wte.weight, body.wpe.weight
        self.layers = []
        for block in body.h:
            self.layers.append(dict(
                ln_1=(block.ln_1.weight, block.ln_1.bias), ln_2=(block.ln_2.weight, block.ln_2.bias),
                c_attn=_Linear(block.attn.c_attn), attn_proj=_Linear(block.attn.c_proj),
                c_fc=_Linear(block.mlp.c_fc), mlp_proj=_Linear(block.mlp.c_proj), scale=block.attn.scale,
                act=block.mlp.act))
        self.ln_f = (body.ln_f.weight, body.ln_f.bias)
        self.lm_head = _Linear(model.lm_head)
        shape = (rows, self.n_head, capacity, self.head_dim)
        self.keys = [tf.Variable(tf.zeros(shape, self.dtype), trainable=False) for _ in self.layers]
        self.values = [tf.Variable(tf.zeros(shape, self.dtype), trainable=False) for _ in self.layers]
        self.cache_bytes = 2 * len(self.layers) * int(np.prod(shape)) * self.dtype.size

        # Fixed signatures: one trace each whatever the prompt length (XLA compiles once per prompt length).
        ids = tf.TensorSpec((rows, None), tf.int32)
        one = tf.TensorSpec((rows,), tf.int32)
        signatures = dict(
            prefill=(ids, ids, tf.TensorSpec((rows, None), tf.bool)),
            step=(one, one, tf.TensorSpec((rows, capacity), tf.bool), tf.TensorSpec((), tf.int32)),
            reorder=(one,))
        for name, signature in signatures.items():
            function = getattr(self, "_" + name)
            if execution != "eager":
                function = tf.function(function, input_signature=signature, jit_compile=execution == "xla",
                                       autograph=False)
            setattr(self, name, function)

    def trace_counts(self) -> dict[str, int]:
        """How often each compiled entry point was traced (tests check that decoding never retraces)."""
        return {name: getattr(self, name).experimental_get_tracing_count()
                for name in ("prefill", "step", "reorder")
                if hasattr(getattr(self, name), "experimental_get_tracing_count")}

    def _forward(self, ids, positions, mask, write):
        """ids, positions: (rows, T); mask: (rows, 1, T, capacity) the keys each query may see -> last-position
        logits (rows, vocab) float32. `write(i, k, v)` stores layer i's new keys/values, returns all of them."""
        rows, t = tf.shape(ids)[0], tf.shape(ids)[1]
        dtype = self.dtype
        h = tf.gather(tf.cast(self.wte, dtype), ids) + tf.gather(tf.cast(self.wpe, dtype), positions)  # (rows, T, E)
        for i, layer in enumerate(self.layers):
            a = _layer_norm(h, *layer["ln_1"], self.eps)
            qkv = layer["c_attn"](tf.reshape(a, (rows * t, -1)), dtype)          # (rows*T, 3E)
            qkv = tf.transpose(tf.reshape(qkv, (rows, t, 3, self.n_head, self.head_dim)), (2, 0, 3, 1, 4))
            q, k, v = qkv[0], qkv[1], qkv[2]                                     # (rows, H, T, D)
            keys, values = write(i, k, v)                                        # (rows, H, capacity, D)
            scores = tf.matmul(q, keys, transpose_b=True) * tf.cast(layer["scale"], dtype)  # (rows, H, T, capacity)
            weights = tf.nn.softmax(tf.where(mask, scores, dtype.min), axis=-1)
            a = tf.matmul(weights, values)                                       # (rows, H, T, D)
            a = tf.reshape(tf.transpose(a, (0, 2, 1, 3)), (rows * t, -1))
            h = h + tf.reshape(layer["attn_proj"](a, dtype), (rows, t, -1))
            m = _layer_norm(h, *layer["ln_2"], self.eps)
            m = layer["mlp_proj"](layer["act"](layer["c_fc"](tf.reshape(m, (rows * t, -1)), dtype)), dtype)
            h = h + tf.reshape(m, (rows, t, -1))
        last = _layer_norm(h[:, -1], *self.ln_f, self.eps)  # only the last position needs logits
        return tf.cast(self.lm_head(last, dtype), tf.float32)

    def _prefill(self, ids, positions, key_ok):
        t = tf.shape(ids)[1]
        pad = [[0, 0], [0, 0], [0, self.capacity - t], [0, 0]]

        def write(i, k, v):
            self.keys[i].assign(tf.pad(k, pad))
            self.values[i].assign(tf.pad(v, pad))
            return self.keys[i], self.values[i]

        query, key = tf.range(t)[:, None], tf.range(self.capacity)[None, :]
        key_ok = tf.pad(key_ok, [[0, 0], [0, self.capacity - t]])
        # a padding query sees itself only, so no softmax row is empty
        mask = (key <= query) & (key_ok[:, None, :] | (key == query))          # (rows, T, capacity)
        return self._forward(ids, positions, mask[:, None], write)

    def _step(self, tokens, positions, key_ok, index):
        # where the new key/value of each (row, head) goes: [row, head, index]
        rows, heads = tf.meshgrid(tf.range(self.rows), tf.range(self.n_head), indexing="ij")
        at = tf.stack([rows, heads, tf.fill(tf.shape(rows), index)], axis=-1)  # (rows, H, 3)

        def write(i, k, v):
            self.keys[i].scatter_nd_update(at, k[:, :, 0])
            self.values[i].scatter_nd_update(at, v[:, :, 0])
            return self.keys[i], self.values[i]

        return self._forward(tokens[:, None], positions[:, None], key_ok[:, None, None, :], write)

    def _reorder(self, index):
        for buffers in (self.keys, self.values):
            for b in buffers:
                b.assign(tf.gather(b, index))
        return tf.constant(0)
