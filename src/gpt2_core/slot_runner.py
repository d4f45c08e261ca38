"""What a backend gives gpt2_core.scheduler: the SlotRunner protocol (a model over a key/value cache of n_slots
rows, one request per row), and the checks and warmup both runners (gpt2_pt.slots, gpt2_tf.slots) share.
Framework-neutral: numpy only."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SlotRunner(Protocol):
    """What a backend gives the scheduler: a model with a key/value cache of `n_slots` rows of `max_length`
    positions each. Arrays are numpy; logits float32."""

    n_slots: int
    max_length: int
    vocab_size: int

    def prefill(self, slot: int, prompt_ids: np.ndarray, *, all_logits: bool = False) -> np.ndarray:
        """Run the prompt into `slot` (whatever it held); the next-token logits (vocab,), or every position's
        (T, vocab) with `all_logits`."""

    def step(self, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """One token for each active slot (every prefilled, not freed slot, in any order); (len(slots), vocab)."""

    def free(self, slot: int) -> None: ...

    def uniform(self, slot: int) -> float:
        """The next uniform number of the slot's random stream: the one model.generate(seed=...) draws from."""

    def seed(self, slot: int, seed: int | None) -> None:
        """Restart the slot's random stream from `seed` (None: a fresh, unpredictable one)."""

    def warmup(self) -> None:
        """Trace/compile and allocate what the first requests would otherwise wait for (optional)."""


def runner_max_length(n_slots, max_length, n_positions: int) -> int:
    """Check a runner's `n_slots` and `max_length` (None: the model's n_positions); return max_length."""
    if isinstance(n_slots, bool) or not isinstance(n_slots, int) or n_slots < 1:
        raise ValueError(f"`n_slots` should be an integer >= 1. Received: n_slots={n_slots!r}")
    max_length = n_positions if max_length is None else max_length
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= n_positions:
        raise ValueError(f"`max_length` should be an integer in [1, n_positions={n_positions}]. "
                         f"Received: max_length={max_length!r}")
    return max_length


def check_slot(slot, n_slots: int) -> int:
    if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= slot < n_slots:
        raise ValueError(f"`slot` should be an integer in [0, {n_slots}). Received: slot={slot!r}")
    return int(slot)


def check_prompt(prompt_ids, max_length: int) -> np.ndarray:
    """The prompt as a (1, T) int64 array; 1 <= T <= max_length."""
    ids = np.asarray(prompt_ids, dtype=np.int64).reshape(1, -1)
    if not 1 <= ids.shape[1] <= max_length:
        raise ValueError(f"The prompt should hold 1 to max_length={max_length} tokens. Received: {ids.shape[1]} "
                         "tokens")
    return ids


def check_step(slots, tokens, active: list[int], lengths: np.ndarray, max_length: int):
    """(slots, tokens) as int64 arrays, once they hold one token for each of the `active` slots (any order) and
    no active slot's `lengths` has reached max_length."""
    slots = np.asarray(slots, dtype=np.int64).reshape(-1)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if sorted(slots.tolist()) != sorted(active) or tokens.shape != slots.shape:
        raise ValueError(f"`step` takes one token for each active slot {sorted(active)}. Received: "
                         f"slots={slots.tolist()}, {tokens.size} tokens")
    if (np.asarray(lengths) >= max_length).any():
        raise ValueError(f"A slot is full: its max_length={max_length} positions are filled")
    return slots, tokens


def warm_up(runner: SlotRunner, *, busy: bool) -> None:
    """A runner's warmup(): a one-token request through slot 0 (both prefills and a step), then freed, so that
    the first real request waits for no tracing, compiling or first allocation. Only while no slot is `busy`."""
    if busy:
        raise ValueError("warmup() needs every slot free")
    for all_logits in (False, True):
        runner.prefill(0, np.zeros(1, dtype=np.int64), all_logits=all_logits)
    runner.step(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    runner.free(0)
