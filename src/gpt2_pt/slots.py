"""The PyTorch slot runner for gpt2_core.scheduler (continuous batching): the model's own forward over one
key/value cache of `n_slots` rows, each row one request at its own length.

Rows stay packed: the active requests hold rows 0..k-1 (a freed row takes the last active row's keys and values,
one copy of its filled part), so a decoding step for k requests is one forward of k rows over plain views of the
cache, no gather. Each row writes its new key/value at its own length and sees only its own keys (an attention
mask), and gets its own position, so a request's numbers are those of its solo `generate` run up to fp32
rounding of the batched products (tests/pt/test_slots.py measures it). A prefill runs the prompt alone, writing
straight into its row (the same forward `generate` runs for a one-row prompt, so its logits are exact).

    >>> runner = SlotRunner(model, n_slots=8)
    >>> logits = runner.prefill(0, np.array([464, 3290]))          # (vocab,)
    >>> logits = runner.step(np.array([0]), np.array([logits.argmax()]))   # (1, vocab)
"""

from __future__ import annotations

import numpy as np
import torch

from .modeling import GPT2PreTrainedModel, KVCache


class _RowsCache(KVCache):
    """KVCache over the first rows of the slot cache's buffers, where every row writes its new keys/values at its
    own length (`lengths`, one per row) instead of one shared length. The model reads `length` as the past
    length: the longest row's, so the attention mask (batch, length + 1) covers every row's keys."""

    def __init__(self, keys, values, lengths: torch.Tensor):
        self.keys, self.values, self.lengths = keys, values, lengths
        self.length = int(lengths.max())

    def update(self, layer_idx, key, value):
        # (B, nh, 1, hd): row r's new key goes to position lengths[r]; all rows' keys up to the longest come back
        rows = torch.arange(key.size(0), device=key.device)
        self.keys[layer_idx][rows, :, self.lengths] = key[:, :, 0]
        self.values[layer_idx][rows, :, self.lengths] = value[:, :, 0]
        end = self.length + 1
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]


class SlotRunner:
    """`n_slots` rows of key/value cache of `max_length` positions (default: the model's n_positions) over
    `model` (a gpt2_pt GPT2LMHeadModel); see gpt2_core.scheduler.SlotRunner for the protocol."""

    def __init__(self, model: GPT2PreTrainedModel, n_slots: int, max_length: int | None = None):
        if not isinstance(model, GPT2PreTrainedModel) or not hasattr(model, "lm_head"):
            raise ValueError(f"`model` should be a gpt2_pt GPT2LMHeadModel. Received: {type(model).__name__}")
        config = model.config
        max_length = config.n_positions if max_length is None else max_length
        if isinstance(n_slots, bool) or not isinstance(n_slots, int) or n_slots < 1:
            raise ValueError(f"`n_slots` should be an integer >= 1. Received: n_slots={n_slots!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= config.n_positions:
            raise ValueError(f"`max_length` should be an integer in [1, n_positions={config.n_positions}]. "
                             f"Received: max_length={max_length!r}")
        self.model = model
        self.n_slots, self.max_length, self.vocab_size = n_slots, max_length, config.vocab_size
        parameter = next(model.parameters())
        self.device = parameter.device
        self.cache = KVCache(config, n_slots, max_length, dtype=parameter.dtype, device=self.device)
        self.row_of: dict[int, int] = {}  # slot -> row; the rows in use are 0 .. len(row_of) - 1
        self.lengths = np.zeros(n_slots, dtype=np.int64)  # per row: the positions filled
        self.generators: dict[int, torch.Generator] = {}

    def _check_slot(self, slot):
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= slot < self.n_slots:
            raise ValueError(f"`slot` should be an integer in [0, {self.n_slots}). Received: slot={slot!r}")

    @torch.inference_mode()
    def prefill(self, slot: int, prompt_ids, *, all_logits: bool = False) -> np.ndarray:
        self._check_slot(slot)
        ids = np.asarray(prompt_ids, dtype=np.int64).reshape(1, -1)
        if not 1 <= ids.shape[1] <= self.max_length:
            raise ValueError(f"The prompt should hold 1 to max_length={self.max_length} tokens. Received: "
                             f"{ids.shape[1]} tokens")
        self.free(slot)  # whatever the slot held
        row = len(self.row_of)
        # a one-row KVCache whose buffers are this row of the slot cache: the prompt's keys land in place
        view = KVCache.__new__(KVCache)
        view.keys = [k[row:row + 1] for k in self.cache.keys]
        view.values = [v[row:row + 1] for v in self.cache.values]
        view.length = 0
        out = self.model(input_ids=torch.from_numpy(ids).to(self.device), past_key_values=view, use_cache=True,
                         logits_to_keep=0 if all_logits else 1)
        self.row_of[slot] = row
        self.lengths[row] = ids.shape[1]
        logits = out.logits[0].float().cpu().numpy()
        return logits if all_logits else logits[-1]

    @torch.inference_mode()
    def step(self, slots, tokens) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        k = len(self.row_of)
        if sorted(slots.tolist()) != sorted(self.row_of) or tokens.shape != slots.shape:
            raise ValueError(f"`step` takes one token for each active slot {sorted(self.row_of)}. Received: "
                             f"slots={slots.tolist()}, {tokens.size} tokens")
        if (self.lengths[:k] >= self.max_length).any():
            raise ValueError(f"A slot is full: its max_length={self.max_length} positions are filled")
        rows = np.array([self.row_of[int(s)] for s in slots])
        by_row = np.empty(k, dtype=np.int64)
        by_row[rows] = tokens
        lengths = self.lengths[:k]
        positions = torch.from_numpy(lengths.copy()).to(self.device)
        cache = _RowsCache([b[:k] for b in self.cache.keys], [b[:k] for b in self.cache.values], positions)
        # row r sees its own keys 0 .. lengths[r] (the new one included); all ones (no mask) when lengths agree
        mask = np.arange(cache.length + 1)[None, :] <= lengths[:, None]
        out = self.model(input_ids=torch.from_numpy(by_row[:, None]).to(self.device), past_key_values=cache,
                         attention_mask=torch.from_numpy(mask).to(self.device), position_ids=positions[:, None],
                         use_cache=True, logits_to_keep=1)
        self.lengths[:k] += 1
        return out.logits[:, -1].float().cpu().numpy()[rows]

    @torch.inference_mode()
    def free(self, slot: int) -> None:
        """Release the slot's row; the last row in use moves into it, so rows stay packed."""
        self._check_slot(slot)
        row = self.row_of.pop(slot, None)
        if row is None:
            return
        last = len(self.row_of)
        if row != last:
            moved = next(s for s, r in self.row_of.items() if r == last)
            n = int(self.lengths[last])
            for buffer in (*self.cache.keys, *self.cache.values):
                buffer[row, :, :n] = buffer[last, :, :n]
            self.row_of[moved], self.lengths[row] = row, n
        self.lengths[last] = 0

    def seed(self, slot: int, seed: int | None) -> None:
        self._check_slot(slot)
        generator = torch.Generator()
        if seed is None:
            generator.seed()  # a non-deterministic seed
        else:
            generator.manual_seed(int(seed))
        self.generators[slot] = generator

    def uniform(self, slot: int) -> float:
        # generate(generator=torch.Generator().manual_seed(seed)) draws torch.rand((1,), float64) per token
        generator = self.generators.get(slot)
        if generator is None:
            raise ValueError(f"slot {slot} has no random stream: call seed(slot, seed) first")
        return float(torch.rand((1,), generator=generator, dtype=torch.float64)[0])
