"""The TensorFlow slot runner for gpt2_core.scheduler (continuous batching): the model's own call over one
key/value cache of `n_slots` rows, each row one request at its own length.

Static shapes, so the decoding step is traced (and XLA-compiled) once: every step runs all `n_slots` rows,
free ones included (a dummy token at position 0 of a row nobody reads), where gpt2_pt's runner runs only the
active rows. Each row writes its new key/value at its own length and sees only its own keys (an attention mask as
wide as the cache), and gets its own position, so a request's numbers are those of its solo `generate` run up to
fp32 rounding. A prefill runs the prompt alone on a one-row cache as a TF graph without XLA (XLA would compile
once per prompt length, stalling every running request), then copies its keys/values into the slot's row.

    >>> runner = TFSlotRunner(model, n_slots=8)
    >>> logits = runner.prefill(0, np.array([464, 3290]))          # (vocab,)
    >>> logits = runner.step(np.array([0]), np.array([logits.argmax()]))   # (1, vocab)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .generation import EXECUTION_MODES
from .modeling import KVCache, TFGPT2PreTrainedModel


class _RowsCache(KVCache):
    """KVCache whose rows write their new keys/values at their own lengths (`lengths`, an int32 variable, one per
    row) instead of one shared length. The model reads `length` as the past length; the step sets it to the last
    position, so the causal mask of its one query allows every key and the row mask alone decides."""

    def __init__(self, config, batch_size, max_length, *, dtype="float32"):
        super().__init__(config, batch_size, max_length, dtype=dtype)
        self.lengths = tf.Variable(tf.zeros((batch_size,), tf.int32), trainable=False)

    def update(self, layer_idx, key, value):
        # (B, nh, T, hd): row r's new (head, t) goes to [r, head, lengths[r] + t], one scatter
        B, H, T = self.batch_size, self.keys[0].shape[1], tf.shape(key)[2]
        rows, heads, steps = tf.meshgrid(tf.range(B), tf.range(H), tf.range(T), indexing="ij")
        at = tf.stack([rows, heads, steps + tf.gather(self.lengths, rows)], axis=-1)  # (B, nh, T, 3)
        self.keys[layer_idx].scatter_nd_update(at, tf.cast(key, self.keys[layer_idx].dtype))
        self.values[layer_idx].scatter_nd_update(at, tf.cast(value, self.values[layer_idx].dtype))
        return self.keys[layer_idx], self.values[layer_idx]


class TFSlotRunner:
    """`n_slots` rows of key/value cache of `max_length` positions (default: the model's n_positions) over
    `model` (a gpt2_tf TFGPT2LMHeadModel); see gpt2_core.scheduler.SlotRunner for the protocol. `execution`
    as in generate: "xla" compiles the step with XLA (the prefill runs as a graph), "graph", or "eager"."""

    def __init__(self, model: TFGPT2PreTrainedModel, n_slots: int, max_length: int | None = None, *,
                 execution: str = "xla"):
        if not isinstance(model, TFGPT2PreTrainedModel) or not hasattr(model, "lm_head"):
            raise ValueError(f"`model` should be a gpt2_tf TFGPT2LMHeadModel. Received: {type(model).__name__}")
        config = model.config
        max_length = config.n_positions if max_length is None else max_length
        if isinstance(n_slots, bool) or not isinstance(n_slots, int) or n_slots < 1:
            raise ValueError(f"`n_slots` should be an integer >= 1. Received: n_slots={n_slots!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= config.n_positions:
            raise ValueError(f"`max_length` should be an integer in [1, n_positions={config.n_positions}]. "
                             f"Received: max_length={max_length!r}")
        if execution not in EXECUTION_MODES:
            raise ValueError(f"`execution` should be one of {EXECUTION_MODES}. Received: execution={execution!r}")
        self.model = model
        self.n_slots, self.max_length, self.vocab_size = n_slots, max_length, config.vocab_size
        self.cache = _RowsCache(config, n_slots, max_length, dtype=model.compute_dtype)
        self.prompt_cache = KVCache(config, 1, max_length, dtype=model.compute_dtype)
        self.active = np.zeros(n_slots, dtype=bool)
        self.lengths = np.zeros(n_slots, dtype=np.int32)  # per slot: the positions filled
        self.generators: dict[int, tf.random.Generator] = {}

        ids, one = tf.TensorSpec((1, None), tf.int32), tf.TensorSpec((n_slots, 1), tf.int32)
        scalar = tf.TensorSpec((), tf.int32)
        compiled = execution != "eager"
        self._prefill_last = self._compile(lambda i, s: self._prefill(i, s, 1), (ids, scalar), compiled, False)
        self._prefill_all = self._compile(lambda i, s: self._prefill(i, s, 0), (ids, scalar), compiled, False)
        self._step = self._compile(self._step_all, (one, tf.TensorSpec((n_slots, max_length), tf.int32), one),
                                   compiled, execution == "xla")

    @staticmethod
    def _compile(function, signature, compiled, xla):
        if not compiled:
            return function
        return tf.function(function, input_signature=signature, jit_compile=xla, autograph=False)

    def _check_slot(self, slot):
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= slot < self.n_slots:
            raise ValueError(f"`slot` should be an integer in [0, {self.n_slots}). Received: slot={slot!r}")

    def _prefill(self, ids, slot, logits_to_keep):
        self.prompt_cache.length.assign(0)
        out = self.model(input_ids=ids, past_key_values=self.prompt_cache, use_cache=True,
                         logits_to_keep=logits_to_keep)
        T = tf.shape(ids)[1]
        for source, target in zip((*self.prompt_cache.keys, *self.prompt_cache.values),
                                  (*self.cache.keys, *self.cache.values)):
            target[slot, :, :T].assign(source[0, :, :T])
        return tf.cast(out.logits[0], tf.float32)  # (T or 1, vocab)

    def _step_all(self, tokens, mask, positions):
        self.cache.lengths.assign(positions[:, 0])
        self.cache.length.assign(self.max_length - 1)
        out = self.model(input_ids=tokens, past_key_values=self.cache, attention_mask=mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        return tf.cast(out.logits[:, -1], tf.float32)  # (n_slots, vocab)

    def prefill(self, slot: int, prompt_ids, *, all_logits: bool = False) -> np.ndarray:
        self._check_slot(slot)
        ids = np.asarray(prompt_ids, dtype=np.int32).reshape(1, -1)
        if not 1 <= ids.shape[1] <= self.max_length:
            raise ValueError(f"The prompt should hold 1 to max_length={self.max_length} tokens. Received: "
                             f"{ids.shape[1]} tokens")
        prefill = self._prefill_all if all_logits else self._prefill_last
        logits = prefill(tf.constant(ids), tf.constant(slot, tf.int32)).numpy()
        self.active[slot], self.lengths[slot] = True, ids.shape[1]
        return logits if all_logits else logits[-1]

    def step(self, slots, tokens) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        active = np.flatnonzero(self.active)
        if sorted(slots.tolist()) != active.tolist() or tokens.shape != slots.shape:
            raise ValueError(f"`step` takes one token for each active slot {active.tolist()}. Received: "
                             f"slots={slots.tolist()}, {tokens.size} tokens")
        if (self.lengths[active] >= self.max_length).any():
            raise ValueError(f"A slot is full: its max_length={self.max_length} positions are filled")
        all_tokens = np.zeros((self.n_slots, 1), dtype=np.int32)  # free rows: token 0 at position 0, unread
        all_tokens[slots, 0] = tokens
        # row r sees its own keys 0 .. lengths[r] (the new one included)
        mask = (np.arange(self.max_length)[None, :] <= self.lengths[:, None]).astype(np.int32)
        logits = self._step(tf.constant(all_tokens), tf.constant(mask), tf.constant(self.lengths[:, None]))
        self.lengths[active] += 1
        return logits.numpy()[slots]

    def free(self, slot: int) -> None:
        """Release the slot; its row is overwritten by the next prefill and masked until then."""
        self._check_slot(slot)
        self.active[slot], self.lengths[slot] = False, 0

    def warmup(self) -> None:
        """Run a one-token request through slot 0 and free it, so that the first real request does not wait for
        tracing, compiling or first allocations. Only while no slot is in use."""
        if self.active.any():
            raise ValueError("warmup() needs every slot free")
        for all_logits in (False, True):
            self.prefill(0, np.zeros(1, dtype=np.int64), all_logits=all_logits)
        self.step(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
        self.free(0)

    def seed(self, slot: int, seed: int | None) -> None:
        self._check_slot(slot)
        self.generators[slot] = (tf.random.Generator.from_non_deterministic_state() if seed is None
                                 else tf.random.Generator.from_seed(int(seed)))

    def uniform(self, slot: int) -> float:
        # generate(seed=seed) draws tf.random.Generator.from_seed(seed).uniform((1,), float64) per token
        generator = self.generators.get(slot)
        if generator is None:
            raise ValueError(f"slot {slot} has no random stream: call seed(slot, seed) first")
        return float(generator.uniform((1,), dtype=tf.float64).numpy()[0])
