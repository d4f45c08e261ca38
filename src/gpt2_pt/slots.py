"""The PyTorch slot runner for gpt2_core.scheduler (continuous batching): the model's own forward over one
key/value cache of `n_slots` rows, each row one request at its own length.

Rows stay packed: the active requests hold rows 0..k-1 (a freed row takes the last active row's keys and values,
one copy of its filled part), so a decoding step for k requests is one forward of k rows over plain views of the
cache, no gather. Each row writes its new key/value at its own length and sees only its own keys (an attention
mask), and gets its own position, so a request's numbers are those of its solo `generate` run up to fp32
rounding of the batched products (tests/pt/test_slots.py measures it). A prefill runs the prompt alone, writing
straight into its row (the same forward `generate` runs for a one-row prompt, so its logits are exact).

The products run through the kernel generate uses (gpt2_pt.kernels: measured per host and row class, on the
model's own weights): a prefill under `kernels.decoding(model, rows=1)` as generate's one-prompt run, a step of k
rows under `kernels.decoding(model, rows=k)`. Entering it costs a few milliseconds (a cache lookup, thread pools
resized), so the runner holds the arrangement across steps while the row class ("one", "few", "many") and the
calling thread stay the same, and lets it go when the last slot is freed.

    >>> runner = SlotRunner(model, n_slots=8)
    >>> logits = runner.prefill(0, np.array([464, 3290]))          # (vocab,)
    >>> logits = runner.step(np.array([0]), np.array([logits.argmax()]))   # (1, vocab)
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

from gpt2_core.slot_runner import check_prompt, check_slot, check_step, runner_max_length, warm_up

from . import kernels
from .generation import QUANTIZE_MODES, can_pack, int8_copy, packed_copy
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
    `model` (a gpt2_pt GPT2LMHeadModel); see gpt2_core.slot_runner.SlotRunner for the protocol.

    `quantize="int8"` runs on generate's int8 copy of the linear layers (gpt2_pt.generation.int8_copy), so its
    tokens are `generate(quantize="int8")`'s. `pack_weights=True` (opt-in, CPU, fp32, n_slots > 1): steps of 2 rows
    or more run on a copy of the linear weights prepacked for oneDNN (gpt2_pt.generation.packed_copy, as
    generate(pack_weights=True)), for the model's weight memory once more, made once: a model whose weights change
    afterwards needs a new runner. By default there is no second copy of the weights: the kernels measured fastest
    on this host run on the model's own."""

    def __init__(self, model: GPT2PreTrainedModel, n_slots: int, max_length: int | None = None, *,
                 quantize: str | None = None, pack_weights: bool = False):
        if not isinstance(model, GPT2PreTrainedModel) or not hasattr(model, "lm_head"):
            raise ValueError(f"`model` should be a gpt2_pt GPT2LMHeadModel. Received: {type(model).__name__}")
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"`quantize` should be one of {QUANTIZE_MODES}. Received: quantize={quantize!r}")
        config = model.config
        max_length = runner_max_length(n_slots, max_length, config.n_positions)
        # held here, not only in generate's per-model cache, which a generate call with another row count replaces
        packed = pack_weights and quantize is None and n_slots > 1 and can_pack(model)
        self.step_model = packed_copy(model, n_slots) if packed else None
        self.model = int8_copy(model) if quantize == "int8" else model
        if self.step_model is None:
            self.step_model = self.model
        # generate's rule: the calibrated kernels serve the fp32 model's own weights, not the int8 or packed copies
        self.arrangement = _Arrangement(model if quantize is None else None)
        self.n_slots, self.max_length, self.vocab_size = n_slots, max_length, config.vocab_size
        parameter = next(model.parameters())
        self.device = parameter.device
        self.cache = KVCache(config, n_slots, max_length, dtype=parameter.dtype, device=self.device)
        self.row_of: dict[int, int] = {}  # slot -> row; the rows in use are 0 .. len(row_of) - 1
        self.lengths = np.zeros(n_slots, dtype=np.int64)  # per row: the positions filled
        self.generators: dict[int, torch.Generator] = {}

    @torch.inference_mode()
    def prefill(self, slot: int, prompt_ids, *, all_logits: bool = False) -> np.ndarray:
        slot = check_slot(slot, self.n_slots)
        ids = check_prompt(prompt_ids, self.max_length)
        self.free(slot)  # whatever the slot held
        row = len(self.row_of)
        # a one-row KVCache whose buffers are this row of the slot cache: the prompt's keys land in place
        view = KVCache.__new__(KVCache)
        view.keys = [k[row:row + 1] for k in self.cache.keys]
        view.values = [v[row:row + 1] for v in self.cache.values]
        view.length = 0
        with self.arrangement.hold(1):  # as generate's one-prompt run
            out = self.model(input_ids=torch.from_numpy(ids).to(self.device), past_key_values=view, use_cache=True,
                             logits_to_keep=0 if all_logits else 1)
        self.row_of[slot] = row
        self.lengths[row] = ids.shape[1]
        logits = out.logits[0].float().cpu().numpy()
        return logits if all_logits else logits[-1]

    @torch.inference_mode()
    def step(self, slots, tokens) -> np.ndarray:
        k = len(self.row_of)
        slots, tokens = check_step(slots, tokens, list(self.row_of), self.lengths[:k], self.max_length)
        rows = np.array([self.row_of[int(s)] for s in slots])
        by_row = np.empty(k, dtype=np.int64)
        by_row[rows] = tokens
        lengths = self.lengths[:k]
        positions = torch.from_numpy(lengths.copy()).to(self.device)
        cache = _RowsCache([b[:k] for b in self.cache.keys], [b[:k] for b in self.cache.values], positions)
        # row r sees its own keys 0 .. lengths[r] (the new one included); all ones (no mask) when lengths agree
        mask = np.arange(cache.length + 1)[None, :] <= lengths[:, None]
        model = self.model if k == 1 else self.step_model
        with self.arrangement.hold(k if model is self.model else None):
            out = model(input_ids=torch.from_numpy(by_row[:, None]).to(self.device), past_key_values=cache,
                        attention_mask=torch.from_numpy(mask).to(self.device), position_ids=positions[:, None],
                        use_cache=True, logits_to_keep=1)
        self.lengths[:k] += 1
        return out.logits[:, -1].float().cpu().numpy()[rows]

    @torch.inference_mode()
    def free(self, slot: int) -> None:
        """Release the slot's row; the last row in use moves into it, so rows stay packed."""
        slot = check_slot(slot, self.n_slots)
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
        if not self.row_of:
            self.arrangement.release()

    def warmup(self) -> None:
        """A one-token request through slot 0, freed after: see gpt2_core.slot_runner.warm_up."""
        warm_up(self, busy=bool(self.row_of))

    def seed(self, slot: int, seed: int | None) -> None:
        slot = check_slot(slot, self.n_slots)
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


class _Arrangement:
    """`kernels.decoding(model, rows)` kept entered between calls while the row class and the calling thread stay
    the same (entering costs milliseconds; a step of a small model less than that). What it arranges is partly
    per thread (torch's thread count, the chosen kernels), so a call from another thread than the holder's runs
    under an arrangement of its own for that call only. `model=None`: no arrangement (int8 or packed weights)."""

    def __init__(self, model):
        self.model = model
        self.held: tuple[int, str] | None = None  # (thread id, row class) of the arrangement entered
        self.stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def hold(self, rows: int | None):
        """Run the body under the arrangement for `rows` rows (None: under none, as a packed step)."""
        if self.model is None or rows is None:
            self.release()
            yield
            return
        me = threading.get_ident()
        if self.held is not None and self.held[0] != me:
            with kernels.decoding(self.model, rows):
                yield
            return
        key = (me, kernels.row_class(rows))
        if self.held != key:
            self.release()
            self.stack.enter_context(kernels.decoding(self.model, rows))
            self.held = key
        yield

    def release(self) -> None:
        """Leave the arrangement (thread pools restored), from the thread that entered it; a no-op elsewhere."""
        if self.held is not None and self.held[0] == threading.get_ident():
            self.held = None
            self.stack.close()
