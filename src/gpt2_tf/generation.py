"""`generate` for the TensorFlow GPT-2: the decoding itself is gpt2_core.generation's; this file runs the model.

One runner, `_ModelRunner`: the model's own call over a KVCache preallocated for the whole generation (keys and
values written in place, tf.Variables), with `logits_to_keep=1` so the LM head only sees the last position. The
prompt and the one-token step are each compiled once with tf.function (XLA by default): the cache's shapes never
depend on the position, so one traced step serves every position, and the programs stay on the model for the next
call of the same shape. Per generated token that is one pass over the weights (the GEMVs are the whole cost).

Plain greedy decoding (no logits processor but min_length, no streamer), the common case, runs whole in one
compiled call: prompt, then a tf.while_loop of step + argmax, so no token goes back to Python. That saves the
per-token call (~1 ms of dispatch for ~170 captured variables, plus the logits' trip to numpy): 5-9% of a
gpt2-small token on one CPU thread. Everything else goes through gpt2_core's `decode`, one call per token.

    >>> ids = model.generate(tf.constant([[464, 3290]]), max_new_tokens=8)              # greedy
    >>> ids = model.generate(prompt, do_sample=True, top_p=0.9, seed=0)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gpt2_core.generation import (GenerationConfig, config_for, decode, is_plain_greedy, positions_from_mask,
                                  prepare)

from .modeling import KVCache

EXECUTION_MODES = ("xla", "graph", "eager")


def generate(model, input_ids, attention_mask=None, generation_config: GenerationConfig | None = None,
             streamer=None, seed: int | None = None, *, execution: str = "xla", tokenizer=None,
             **kwargs) -> tf.Tensor:
    """Prompt followed by new tokens, shape (batch * num_return_sequences, length); see GenerationConfig.

    `kwargs` override fields of `generation_config` (else `model.generation_config`, else the model config's
    special tokens). `seed` makes sampling reproducible without touching the global seed (tf.random.set_seed and
    keras.utils.set_random_seed work too). The result has the dtype of `input_ids` (int32 or int64; int32 for a
    list). `execution` runs the model compiled with XLA ("xla", the fastest once compiled), as a TF graph
    without XLA ("graph") or eagerly ("eager"); the tokens are the same. `tokenizer` reads the generated text for
    `stop_strings` (as in transformers).
    """
    config = config_for(model, generation_config).copy(**kwargs)  # unknown kwargs raise here
    if execution not in EXECUTION_MODES:
        raise ValueError(f"`execution` should be one of {EXECUTION_MODES}. Received: execution={execution!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` should be None or an integer. Received: seed={seed!r}")
    out_dtype = _int_dtype(input_ids)
    ids_np = _to_numpy(input_ids, "input_ids")
    mask_np = None if attention_mask is None else _to_numpy(attention_mask, "attention_mask")
    mc = model.config
    config, ids_np, mask_np, max_length, min_length = prepare(
        config, ids_np, mask_np, n_positions=mc.n_positions, vocab_size=mc.vocab_size, tokenizer=tokenizer)

    rows = ids_np.shape[0] * config.rows_per_prompt
    runner = _ModelRunner(model, rows, max_length, seed=seed, execution=execution)
    if execution != "eager" and streamer is None and is_plain_greedy(config):
        out = runner.greedy(ids_np, mask_np, max_length=max_length, min_length=min_length,
                            pad_token_id=config.pad_token_id, eos_token_ids=config.eos_token_ids)
    else:
        out = decode(runner, config, ids_np, mask_np, max_length=max_length, min_length=min_length,
                     streamer=None if streamer is None else _TFStreamer(streamer, out_dtype), tokenizer=tokenizer)
    return tf.constant(out, dtype=out_dtype)


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


class _ModelRunner:
    """What `decode` drives: prefill, step, reorder (beam search) and uniform draws, over the model's own call.

    The model's `_Program` for (rows, capacity, execution) holds the KVCache and the compiled entry points
    (`greedy`: the whole plain-greedy decoding in one call). The
    capacity is max_length rounded up to a power of two (at most n_positions): calls of nearby lengths share one
    program; masked keys past the end cost a little attention, nothing else. Every call passes the mask and the
    positions, so each entry point has one signature and is traced once (XLA compiles the prompt once per
    prompt length).
    """

    def __init__(self, model, rows, max_length, *, seed=None, execution="xla"):
        self.generator = None if seed is None else tf.random.Generator.from_seed(int(seed))
        capacity = min(1 << (max_length - 1).bit_length(), model.config.n_positions)
        self.shape = (model, rows, capacity, execution)
        self.program = None

    def prefill(self, input_ids, attention_mask):
        self.program = _program(*self.shape)  # here, not in __init__: `decode` checks its arguments first
        return self.program.prefill(tf.constant(input_ids, tf.int32), tf.constant(attention_mask, tf.int32),
                                    tf.constant(positions_from_mask(attention_mask).astype(np.int32))).numpy()

    def step(self, tokens, attention_mask):
        # the mask the core passes covers the cache and the new token; the program's is the whole buffer wide
        mask = np.zeros((len(tokens), self.program.capacity), dtype=np.int32)
        mask[:, :attention_mask.shape[1]] = attention_mask
        return self.program.step(tf.constant(tokens[:, None], tf.int32), tf.constant(mask),
                                 tf.constant(positions_from_mask(attention_mask)[:, -1:], tf.int32)).numpy()

    def reorder(self, index):
        self.program.reorder(tf.constant(index, tf.int32))

    def greedy(self, input_ids, attention_mask, *, max_length, min_length, pad_token_id, eos_token_ids):
        """gpt2_core's greedy `decode` (no logits processor but min_length, no streamer) in one compiled call."""
        self.program = _program(*self.shape)
        out, length = self.program.greedy(
            tf.constant(input_ids, tf.int32), tf.constant(attention_mask, tf.int32),
            tf.constant(positions_from_mask(attention_mask).astype(np.int32)), tf.constant(max_length, tf.int32),
            tf.constant(min_length, tf.int32), tf.constant(0 if pad_token_id is None else pad_token_id, tf.int32),
            tf.constant(eos_token_ids, tf.int32, shape=(len(eos_token_ids),)))
        return out.numpy()[:, :int(length)].astype(np.int64)

    def uniform(self, shape):
        # without a seed, drawn by tf.random so that tf.random.set_seed makes sampling reproducible
        if self.generator is None:
            return tf.random.uniform(shape, dtype=tf.float64).numpy()
        return self.generator.uniform(shape, dtype=tf.float64).numpy()


_MAX_PROGRAMS = 4
_MAX_CACHE_BYTES = 1 << 30


def _program(model, rows, capacity, execution) -> "_Program":
    """The model's program for this shape, built on first use; the least recently used go beyond 4 programs or
    1 GiB of key/value cache (the newest always stays)."""
    # On the model, not in a WeakKeyDictionary beside it as gpt2_pt keeps its weight copies: a program's traced
    # functions hold the model, so a weak key to it would never die.
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
    """The model's call for one (rows, capacity), with its KVCache: prefill, step, reorder and greedy (prefill
    plus a loop of steps), each compiled (or not: execution="eager") once."""

    def __init__(self, model, rows, capacity, execution):
        self.model, self.capacity = model, capacity
        self.cache = KVCache(model.config, rows, capacity, dtype=model.compute_dtype)
        self.cache_bytes = 2 * sum(int(np.prod(k.shape)) * k.dtype.size for k in self.cache.keys)

        # Fixed signatures: one trace each whatever the prompt length (XLA compiles once per prompt length).
        ids = tf.TensorSpec((rows, None), tf.int32)
        one = tf.TensorSpec((rows, 1), tf.int32)
        scalar = tf.TensorSpec((), tf.int32)
        signatures = dict(prefill=(ids, ids, ids), step=(one, tf.TensorSpec((rows, capacity), tf.int32), one),
                          reorder=(tf.TensorSpec((rows,), tf.int32),),
                          greedy=(ids, ids, ids, scalar, scalar, scalar, tf.TensorSpec((None,), tf.int32)))
        for name, signature in signatures.items():
            function = getattr(self, "_" + name)
            if execution != "eager":
                function = tf.function(function, input_signature=signature, jit_compile=execution == "xla",
                                       autograph=False)
            setattr(self, name, function)

    def trace_counts(self) -> dict[str, int]:
        """How often each compiled entry point was traced (tests check that decoding never retraces)."""
        return {name: getattr(self, name).experimental_get_tracing_count()
                for name in ("prefill", "step", "reorder", "greedy")
                if hasattr(getattr(self, name), "experimental_get_tracing_count")}

    def _forward(self, ids, mask, positions):
        out = self.model(input_ids=ids, past_key_values=self.cache, attention_mask=mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        return tf.cast(out.logits[:, -1], tf.float32)  # (rows, vocab)

    def _prefill(self, ids, mask, positions):
        self.cache.length.assign(0)  # a new generation: the buffers are overwritten from position 0
        return self._forward(ids, mask, positions)

    def _step(self, tokens, mask, positions):
        return self._forward(tokens, mask, positions)

    def _greedy(self, ids, mask, positions, max_length, min_length, pad, eos):
        # gpt2_core.generation._greedy_or_sample with do_sample=False, step for step: the prompt, then per token the
        # eos ban below min_length, argmax (numpy's and TF's both take the first of equal maxima), pad after eos,
        # until max_length or every row has ended. Returns the (rows, capacity) ids and the length filled.
        rows, prompt_length, capacity = tf.shape(ids)[0], tf.shape(ids)[1], self.capacity
        out = tf.pad(ids, [[0, 0], [0, capacity - prompt_length]])  # (rows, capacity)
        full_mask = tf.concat([mask, tf.ones((rows, capacity - prompt_length), tf.int32)], axis=1)
        kept = tf.reduce_sum(mask, axis=1, keepdims=True)  # (rows, 1): the prompt tokens the mask keeps
        vocab_ids = tf.range(self.model.config.vocab_size)
        is_eos = tf.reduce_any(vocab_ids[:, None] == eos[None, :], axis=1)  # (vocab,)
        columns = tf.range(capacity)[None, :]

        def choose(logits, out, length, unfinished):
            banned = tf.logical_and(is_eos, length < min_length)
            tokens = tf.argmax(tf.where(banned[None, :], -np.inf, logits), axis=-1, output_type=tf.int32)  # (rows,)
            tokens = tf.where(unfinished, tokens, pad)  # without eos ids every row stays unfinished
            out = tf.where(columns == length, tokens[:, None], out)
            unfinished = tf.logical_and(unfinished, tf.logical_not(tf.gather(is_eos, tokens)))
            return out, length + 1, unfinished, tokens

        def running(out, length, unfinished, tokens):
            return tf.logical_and(length < max_length, tf.reduce_any(unfinished))

        def step(out, length, unfinished, tokens):
            logits = self._forward(tokens[:, None], full_mask, kept + (length - prompt_length) - 1)
            return choose(logits, out, length, unfinished)

        state = choose(self._prefill(ids, mask, positions), out, prompt_length, tf.ones((rows,), tf.bool))
        out, length, _, _ = tf.while_loop(running, step, state, maximum_iterations=capacity)
        return out, length

    def _reorder(self, index):
        self.cache.reorder(index)
        return tf.constant(0)
