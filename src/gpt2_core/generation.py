"""The framework-neutral decoding loop in numpy: prepare, then greedy, sampling or beam search, with stop strings.

A backend supplies a `DecodeBackend`: it turns token ids into next-token logits with its own model and cache, and
draws uniform random numbers from its own generator. Everything else -- lengths, logits processors, sampling,
beam bookkeeping, stopping, padding of finished rows, streaming -- is here once, so both backends decode the same
way. Names, defaults and semantics follow transformers' `generate`, so greedy and beam search give the same tokens.
The settings live in generation_config.py, the score processing in logits_process.py; both are importable from here
too, as before.

    >>> from gpt2_core.generation import GenerationConfig
    >>> GenerationConfig(do_sample=True, top_p=0.9).top_k
    50
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import numpy as np

from .generation_config import (DEFAULT_MAX_LENGTH, GENERATION_CONFIG_NAME, GenerationConfig, check_in_vocab,
                                config_for, resolve_lengths, warn_ignored_fields)
from .logits_process import (LogitsProcessor, bad_word_tables, epsilon_filter, eta_filter, log_softmax,
                             min_p_filter, sample_from, sample_without_replacement, top_k_filter, top_p_filter,
                             typical_filter)

__all__ = ["DEFAULT_MAX_LENGTH", "GENERATION_CONFIG_NAME", "DecodeBackend", "GenerationConfig", "LogitsProcessor",
           "StopStrings", "Streamer", "config_for", "decode", "epsilon_filter", "eta_filter", "is_plain_greedy",
           "log_softmax", "min_p_filter", "positions_from_mask", "prepare", "resolve_lengths", "sample_from",
           "sample_without_replacement", "top_k_filter", "top_p_filter", "typical_filter"]

logger = logging.getLogger(__name__)


class DecodeBackend(Protocol):
    """What a framework provides to `decode`. Arrays are numpy; logits (N, V) float32 for the last position."""

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def step(self, tokens: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def reorder(self, index: np.ndarray) -> None: ...

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray: ...


class Streamer(Protocol):
    def put(self, value) -> None: ...

    def end(self) -> None: ...


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """(B, T) position ids that count only the kept tokens, so a left-padded row sees the positions it would
    see alone."""
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def prepare(config: GenerationConfig, input_ids: np.ndarray, attention_mask: np.ndarray | None, *,
            n_positions: int, vocab_size: int, tokenizer=None
            ) -> tuple[GenerationConfig, np.ndarray, np.ndarray, int, int]:
    """Check everything before any model work; return (config, ids, mask, max_length, min_length).

    The pad token falls back to the first eos token (with a warning), as in transformers.
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim == 1:
        input_ids = input_ids[None, :]
    if input_ids.ndim != 2 or input_ids.shape[0] == 0:
        raise ValueError(f"`input_ids` should have shape (batch, length). Received shape {input_ids.shape}")
    if not np.issubdtype(input_ids.dtype, np.integer):
        raise ValueError(f"`input_ids` should hold integers. Received dtype {input_ids.dtype}")
    input_ids = input_ids.astype(np.int64)
    if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(f"`input_ids` should be in [0, {vocab_size}). Received values from {input_ids.min()} to "
                         f"{input_ids.max()}")
    warn_ignored_fields(config)
    if config.stop_strings is not None and tokenizer is None:
        raise ValueError("`stop_strings` needs the tokenizer to read the generated text: pass `tokenizer=` to "
                         "generate, as in transformers")
    for name in ("pad_token_id", "bos_token_id"):
        value = getattr(config, name)
        if value is not None and value >= vocab_size:
            raise ValueError(f"`{name}` should be < vocab_size={vocab_size}. Received: {name}={value}")
    if any(t >= vocab_size for t in config.eos_token_ids):
        raise ValueError(f"`eos_token_id` should be < vocab_size={vocab_size}. Received: {config.eos_token_id}")
    if config.pad_token_id is None and config.eos_token_ids:
        if input_ids.shape[0] > 1 or config.num_return_sequences > 1:
            logger.warning("pad_token_id is not set: finished rows are padded with eos_token_id=%d",
                           config.eos_token_ids[0])
        config = config.copy(pad_token_id=config.eos_token_ids[0])
    if attention_mask is None:
        # Like transformers: without a mask, a pad token that is no eos token marks padding.
        pad = config.pad_token_id
        if pad is not None and pad not in config.eos_token_ids and (input_ids == pad).any():
            attention_mask = (input_ids != pad).astype(np.int64)
        else:
            attention_mask = np.ones_like(input_ids)
    attention_mask = np.asarray(attention_mask)
    if attention_mask.ndim == 1:
        attention_mask = attention_mask[None, :]
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"`attention_mask` should have the shape of input_ids {input_ids.shape}. "
                         f"Received shape {attention_mask.shape}")
    attention_mask = (attention_mask != 0).astype(np.int64)
    if (attention_mask.sum(axis=1) == 0).any():
        raise ValueError("Every row of `attention_mask` should keep at least one token")
    if (attention_mask[:, -1] == 0).any():
        logger.warning("The attention mask shows right padding: generation continues after the padding; "
                       "pad prompts on the left (tokenizer padding_side='left') for correct results")
    max_length, min_length = resolve_lengths(config, input_ids.shape[1], n_positions)
    bad_word_tables(config.bad_words_ids, config.eos_token_ids, vocab_size)  # raises on out-of-vocab ids
    check_in_vocab(config, vocab_size)
    if config.exponential_decay_length_penalty is not None and not config.eos_token_ids:
        raise ValueError("`exponential_decay_length_penalty` raises the eos score: it needs an eos_token_id. "
                         "Received: eos_token_id=None")
    return config, input_ids, attention_mask, max_length, min_length


def decode(backend: DecodeBackend, config: GenerationConfig, input_ids: np.ndarray, attention_mask: np.ndarray, *,
           max_length: int, min_length: int, streamer: Streamer | None = None, tokenizer=None) -> np.ndarray:
    """Run greedy, sampling or beam search (after `prepare`); return (batch * num_return_sequences, length) ids.
    `tokenizer` reads the text for `stop_strings`."""
    out_of_time = _clock(config.max_time)
    ids = np.repeat(input_ids, config.rows_per_prompt, axis=0)
    mask = np.repeat(attention_mask, config.rows_per_prompt, axis=0)
    ignore_before = (mask != 0).argmax(axis=1) if (mask == 0).any() else None
    if config.num_beams > 1:
        if streamer is not None:
            raise ValueError("A streamer cannot be used with beam search: set num_beams=1")
        keep = (len(config.eos_token_ids) + 1) if config.do_sample else 1
        processor = LogitsProcessor(config, prompt_length=ids.shape[1], min_length=min_length,
                                    max_length=max_length, vocab_size=_UNKNOWN_VOCAB, ignore_before=ignore_before,
                                    min_tokens_to_keep=max(keep, 2) if config.do_sample else 1)
        return _beam_search(backend, config, processor, ids, mask, max_length, out_of_time)
    processor = LogitsProcessor(config, prompt_length=ids.shape[1], min_length=min_length, max_length=max_length,
                                vocab_size=_UNKNOWN_VOCAB, ignore_before=ignore_before)
    stops = None if config.stop_strings is None else StopStrings(config.stop_strings, tokenizer)
    return _greedy_or_sample(backend, config, processor, ids, mask, max_length, streamer, out_of_time, stops)


def _clock(max_time: float | None):
    """A () -> bool that turns True `max_time` seconds from now (never, for None): transformers' MaxTimeCriteria,
    checked after each new token, so at least one comes."""
    if max_time is None:
        return lambda: False
    deadline = time.monotonic() + max_time
    return lambda: time.monotonic() > deadline


_UNKNOWN_VOCAB = 1 << 62  # ids were checked against the vocabulary in `prepare`


def is_plain_greedy(config: GenerationConfig) -> bool:
    """Greedy decoding whose only logits processing is the eos ban below min_length, and whose only stops are eos
    and max_length: what a backend may run as one compiled loop (gpt2_tf does). Kept beside `decode`, which reads
    the stopping fields (LogitsProcessor reads the others), so that a new field cannot be skipped there in silence."""
    return (not config.do_sample and config.num_beams == 1 and config.num_return_sequences == 1
            and config.repetition_penalty == 1.0 and config.no_repeat_ngram_size == 0
            and config.bad_words_ids is None and config.max_time is None and config.stop_strings is None
            and config.sequence_bias is None and config.forced_bos_token_id is None
            and config.forced_eos_token_id is None and config.exponential_decay_length_penalty is None
            and not config.suppress_tokens and not config.begin_suppress_tokens
            # log-softmax keeps the order, but its rounding can tie two close scores, and argmax picks the first
            and not config.renormalize_logits)


class StopStrings:
    """transformers' StopStringCriteria: a row stops when one of the strings appears in its text overlapping the
    token just made (so it may start in earlier tokens, the prompt included, and end inside the new one).

    Matched on the UTF-8 bytes of the tokens, so a character split across tokens matches too (transformers
    decodes each token alone, where such a character is U+FFFD).
    """

    def __init__(self, strings: str | list[str], tokenizer):
        self.patterns = [x.encode("utf-8") for x in ([strings] if isinstance(strings, str) else strings)]
        self.token_bytes = _token_bytes(tokenizer)
        # each token holds at least one byte: this many tokens cover any match that overlaps the last one
        self.window = max(map(len, self.patterns)) + 1

    def __call__(self, row: np.ndarray) -> bool:
        tail = [self.token_bytes[t] if t < len(self.token_bytes) else b"" for t in row[-self.window:].tolist()]
        data = b"".join(tail)
        boundary = len(data) - len(tail[-1])  # where the new token starts
        return any(data.find(p, max(0, boundary - len(p) + 1)) != -1 for p in self.patterns)


def _token_bytes(tokenizer) -> list[bytes]:
    """The bytes of every token id: our GPT2Tokenizer's table, else each id decoded alone (any tokenizer)."""
    table = getattr(tokenizer, "token_bytes", None)
    if table is not None:
        return table()
    return [tokenizer.decode([i]).encode("utf-8") for i in range(len(tokenizer))]


def _greedy_or_sample(backend, config, processor, ids, mask, max_length, streamer, out_of_time, stops=None):
    n, prompt_length = ids.shape
    fill = config.pad_token_id if config.pad_token_id is not None else 0  # set whenever eos is (see `prepare`)
    out = np.full((n, max_length), fill, dtype=np.int64)
    out[:, :prompt_length] = ids
    full_mask = np.ones((n, max_length), dtype=np.int64)
    full_mask[:, :prompt_length] = mask
    eos = np.asarray(config.eos_token_ids, dtype=np.int64)
    unfinished = np.ones(n, dtype=bool)
    if streamer is not None:
        streamer.put(ids.copy())
    logits = backend.prefill(ids, mask)
    length = prompt_length
    while True:
        scores = processor(out[:, :length], np.asarray(logits, dtype=np.float32), warp=config.do_sample)
        if config.do_sample:
            tokens = sample_from(scores, backend.uniform((n,)))
        else:
            tokens = scores.argmax(axis=-1)
        if eos.size:  # as transformers: without eos ids, rows stopped by a stop string are not padded
            tokens = np.where(unfinished, tokens, fill)
        out[:, length] = tokens
        length += 1
        if streamer is not None:
            streamer.put(tokens.copy())
        if eos.size:
            unfinished &= ~np.isin(tokens, eos)
        if stops is not None:
            unfinished &= [not (alive and stops(row)) for alive, row in zip(unfinished, out[:, :length])]
        if length >= max_length or not unfinished.any() or out_of_time():
            break
        logits = backend.step(tokens, full_mask[:, :length])
    if streamer is not None:
        streamer.end()
    return out[:, :length]


def _beam_search(backend, config, processor, ids, mask, max_length, out_of_time):
    """Vectorised beam search with transformers' exact bookkeeping.

    Each step keeps the best `keep` = (1 + #eos) * num_beams continuations over all beams, so that num_beams of
    them can go on even if the best ones all end. Ended ones compete, length-penalised, for the num_beams places of
    the finished pool; the search stops when no running beam can beat the pool (per `early_stopping`).
    """
    num_beams = config.num_beams
    n, prompt_length = ids.shape
    batch = n // num_beams
    eos = np.asarray(config.eos_token_ids, dtype=np.int64)
    keep = max(2, 1 + eos.size) * num_beams
    lp, early = float(config.length_penalty), config.early_stopping
    big = np.float32(-1.0e9)
    fill = config.pad_token_id if config.pad_token_id is not None else 0  # (no eos: every row runs to the end)

    running = np.full((batch, num_beams, max_length), fill, dtype=np.int64)
    running[:, :, :prompt_length] = ids.reshape(batch, num_beams, prompt_length)
    running_scores = np.zeros((batch, num_beams), dtype=np.float32)
    running_scores[:, 1:] = big  # only the first copy of each prompt may expand at the first step
    running_origin = np.full((batch, num_beams, max_length - prompt_length), -1, dtype=np.int64)
    finished = running.copy()
    finished_scores = np.full((batch, num_beams), big, dtype=np.float32)
    finished_origin = running_origin.copy()
    is_finished = np.zeros((batch, num_beams), dtype=bool)
    can_improve = np.ones((batch, 1), dtype=bool)
    top_mask = np.arange(keep) < num_beams
    full_mask = np.ones((n, max_length), dtype=np.int64)
    full_mask[:, :prompt_length] = mask

    logits = backend.prefill(ids, mask)
    length = prompt_length
    while True:
        flat = running[:, :, :length].reshape(n, length)
        log_probs = processor(flat, log_softmax(np.asarray(logits, dtype=np.float32)), warp=config.do_sample)
        vocab = log_probs.shape[-1]
        total = (log_probs.reshape(batch, num_beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)

        # best `keep` continuations over all beams (or `keep` drawn without replacement when sampling)
        if config.do_sample:
            top = sample_without_replacement(total, keep, backend.uniform(total.shape))
            top_scores = np.take_along_axis(total, top, axis=-1)
            order = np.argsort(-top_scores, axis=-1, kind="stable")
            top, top_scores = np.take_along_axis(top, order, -1), np.take_along_axis(top_scores, order, -1)
        else:
            top, top_scores = _topk(total, keep)
        beam, token = top // vocab, top % vocab
        cand = np.take_along_axis(running, beam[:, :, None], axis=1)
        cand[:, :, length] = token
        cand_origin = np.take_along_axis(running_origin, beam[:, :, None], axis=1)
        cand_origin[:, :, length - prompt_length] = beam + np.arange(batch)[:, None] * num_beams
        ends = np.isin(token, eos) if eos.size else np.zeros_like(token, dtype=bool)
        if length + 1 >= max_length or out_of_time():
            ends[:] = True  # every beam ends here: the pools are finalised as at the last position

        # the num_beams best that did not end keep running
        alive_scores = top_scores + ends.astype(np.float32) * big
        pick = _topk(alive_scores, num_beams)[0]
        running = np.take_along_axis(cand, pick[:, :, None], axis=1)
        running_scores = np.take_along_axis(alive_scores, pick, axis=1)
        running_origin = np.take_along_axis(cand_origin, pick[:, :, None], axis=1)

        # ended ones among the top num_beams join the finished pool, length-penalised
        just_ended = ends & top_mask[None, :]
        end_scores = top_scores / np.float32((length + 1 - prompt_length) ** lp)
        full = is_finished.all(axis=-1, keepdims=True) & (early is True)
        end_scores = end_scores + full.astype(np.float32) * big
        end_scores = end_scores + (~can_improve).astype(np.float32) * big
        end_scores = end_scores + (~just_ended).astype(np.float32) * big
        merged_scores = np.concatenate([finished_scores, end_scores], axis=1)
        best = _topk(merged_scores, num_beams)[0]
        finished = np.take_along_axis(np.concatenate([finished, cand], axis=1), best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        finished_origin = np.take_along_axis(np.concatenate([finished_origin, cand_origin], axis=1),
                                             best[:, :, None], axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just_ended], axis=1), best, axis=1)

        length += 1
        # can a running beam still beat the worst finished one?
        if early == "never" and lp > 0.0:
            best_length = max_length - prompt_length
        else:
            best_length = length - prompt_length
        best_running = running_scores[:, :1] / np.float32(best_length ** lp)
        worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), np.float32(-1.0e9))
        can_improve = can_improve & (best_running > worst_finished).any(axis=-1, keepdims=True)
        stop = (not can_improve.any()) or (is_finished.all() and early is True) or ends.all()
        if stop:
            break
        backend.reorder(running_origin[:, :, length - 1 - prompt_length].reshape(-1))
        logits = backend.step(running[:, :, length - 1].reshape(-1), full_mask[:, :length])

    r = config.num_return_sequences
    sequences = finished[:, :r].reshape(batch * r, max_length)
    origin = finished_origin[:, :r].reshape(batch * r, -1)
    generated = int((origin >= 0).sum(axis=1).max())
    return sequences[:, :prompt_length + generated]


def _topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest per row, sorted descending; equal values keep their index order (as torch.topk on CPU)."""
    index = np.argsort(-x, axis=-1, kind="stable")[:, :k]
    return index, np.take_along_axis(x, index, axis=-1)
