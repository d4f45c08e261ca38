"""Perplexity with a sliding window, framework-neutral: the loop of transformers' documented recipe
("Perplexity of fixed-length models") over a backend function that scores token windows.

The recipe, and so this loop: windows of `max_length` tokens start every `stride` tokens; a window scores only
its last `trg_len` tokens (those the previous window did not reach), the rest are context; the window's mean
loss is weighted by `trg_len - 1` ("num_valid_tokens - batch_size", the recipe's count for the label shift) and
the weights are summed into `tokens`; it stops at the window that reaches the end of the text.

    >>> result = sliding_window_perplexity(nll_fn, ids, max_length=1024, stride=512)     # doctest: +SKIP
    >>> result.perplexity, result.nll, result.tokens                                      # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

# A backend's scorer: ids (B, T) int64 -> the negative log-likelihood of ids[:, 1:] given the tokens before
# each, (B, T - 1) float (float64 or float32).
TokenNLL = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Window:
    begin: int
    end: int
    target_length: int  # the last `target_length` tokens of ids[begin:end] are scored


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float               # mean negative log-likelihood per counted token (nats)
    tokens: int              # the recipe's count of scored tokens
    bits_per_byte: float | None = None
    windows: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def windows(seq_len: int, max_length: int, stride: int) -> Iterator[Window]:
    """The recipe's windows over a text of `seq_len` tokens."""
    if max_length < 2:
        raise ValueError(f"max_length should be at least 2. Received: max_length={max_length}")
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride should be between 1 and max_length ({max_length}). Received: stride={stride}")
    prev_end = 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        yield Window(begin, end, end - prev_end)
        prev_end = end
        if end == seq_len:
            break


def sliding_window_perplexity(token_nll: TokenNLL, ids: Sequence[int] | np.ndarray, *, max_length: int,
                              stride: int = 512, batch_size: int = 1, n_bytes: int | None = None,
                              progress: Callable[[int], None] | None = None) -> PerplexityResult:
    """Perplexity of `ids` under the model behind `token_nll`, exactly as transformers' recipe computes it.

    Windows of equal length go to `token_nll` `batch_size` at a time (batching changes no number). `n_bytes`
    (the UTF-8 size of the text) adds bits per byte: all scored tokens' NLL in bits over the bytes.
    `progress(k)` is called with the number of windows just finished.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"the text should have at least 2 tokens to score. Received: {ids.size} token(s)")
    if batch_size < 1:
        raise ValueError(f"batch_size should be a positive integer. Received: batch_size={batch_size}")
    nll_sum, counted, scored_nll, scored = 0.0, 0, 0.0, 0
    todo = list(windows(ids.size, max_length, stride))
    k = 0
    while k < len(todo):
        group = [todo[k]]
        length = todo[k].end - todo[k].begin
        while len(group) < batch_size and k + len(group) < len(todo) and \
                todo[k + len(group)].end - todo[k + len(group)].begin == length:
            group.append(todo[k + len(group)])
        nll = np.asarray(token_nll(np.stack([ids[w.begin:w.end] for w in group])), dtype=np.float64)
        for row, w in zip(nll, group):
            # labels ids[begin+1:end]; the recipe masks all but the last target_length of the window, and the
            # first label position has no prediction, so min(target_length, length - 1) predictions are scored
            n_scored = min(w.target_length, length - 1)
            window_nll = row[length - 1 - n_scored:]
            mean = window_nll.mean()
            num_loss_tokens = w.target_length - 1  # the recipe: num_valid_tokens - batch_size
            nll_sum += mean * num_loss_tokens
            counted += num_loss_tokens
            scored_nll += window_nll.sum()
            scored += n_scored
        k += len(group)
        if progress is not None:
            progress(len(group))
    avg = nll_sum / counted if counted else float("nan")
    bpb = None if not n_bytes else scored_nll / math.log(2) / n_bytes
    return PerplexityResult(perplexity=math.exp(avg), nll=avg, tokens=counted, bits_per_byte=bpb,
                            windows=len(todo))


def unigram_perplexity(train_ids: np.ndarray, test_ids: np.ndarray, vocab_size: int) -> float:
    """The perplexity of `test_ids` under token frequencies counted on `train_ids` (add-one smoothing): the
    baseline a language model should beat by far."""
    counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(math.exp(-logp[np.asarray(test_ids, dtype=np.int64)].mean()))
