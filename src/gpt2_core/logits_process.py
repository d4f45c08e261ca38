"""Logits processors and sampling draws on numpy arrays: ids (N, L) int64, scores (N, V) float32.

`LogitsProcessor` applies every processor a GenerationConfig asks for (penalties, bans, forced tokens, biases),
then the sampling filters (temperature, top-k, top-p, min-p, typical, epsilon, eta), in transformers' order and
with its arithmetic, so the scores match transformers' LogitsProcessor classes. `sample_from` and
`sample_without_replacement` turn scores and a backend's uniform draws into tokens.
"""

from __future__ import annotations

import numpy as np

from .generation_config import GenerationConfig, check_in_vocab, id_list


class LogitsProcessor:
    """All processors `config` asks for, built once per generate call. `max_length` (total, prompt included) is
    where `forced_eos_token_id` applies."""

    def __init__(self, config: GenerationConfig, *, prompt_length: int, min_length: int, vocab_size: int,
                 ignore_before: np.ndarray | None, min_tokens_to_keep: int = 1, max_length: int | None = None):
        if config.forced_eos_token_id is not None and max_length is None:
            raise ValueError("`forced_eos_token_id` needs the max_length it applies at")
        check_in_vocab(config, vocab_size)
        self.config = config
        self.prompt_length = prompt_length
        self.min_length = min_length
        self.max_length = max_length
        self.eos = np.asarray(config.eos_token_ids, dtype=np.int64)
        # Left padding is no part of the text: the repetition penalty skips it (transformers does too).
        self.ignore_before = ignore_before
        self.min_tokens_to_keep = min_tokens_to_keep
        self.bad_single, self.bad_multi = bad_word_tables(config.bad_words_ids, config.eos_token_ids, vocab_size)
        self.bias = None if config.sequence_bias is None else _sequence_bias_tables(config.sequence_bias)
        self.forced_eos = np.asarray(id_list(config.forced_eos_token_id), dtype=np.int64)
        # transformers' begin index: the prompt's length, one more when a forced bos comes first after 1 token
        self.begin_index = prompt_length + int(prompt_length == 1 and config.forced_bos_token_id is not None)

    def __call__(self, ids: np.ndarray, scores: np.ndarray, *, warp: bool) -> np.ndarray:
        """transformers' `_get_logits_processor` order: sequence bias, repetition penalty, no-repeat n-grams, bad
        words, min length, forced bos, forced eos, length penalty on eos, suppressed tokens, then the warpers
        (sampling only) and the renormalisation last."""
        c, length = self.config, ids.shape[1]
        if self.bias is not None:
            scores = _sequence_bias(ids, scores, *self.bias)
        if c.repetition_penalty != 1.0:
            scores = _repetition_penalty(ids, scores, float(c.repetition_penalty), self.ignore_before)
        if c.no_repeat_ngram_size > 0:
            scores = _no_repeat_ngram(ids, scores, c.no_repeat_ngram_size)
        if self.bad_single is not None or self.bad_multi:
            scores = _ban_bad_words(ids, scores, self.bad_single, self.bad_multi)
        if self.eos.size and length < self.min_length:
            scores = _suppress(scores, self.eos)
        if c.forced_bos_token_id is not None and length == 1:
            scores = _force(scores, [c.forced_bos_token_id])
        if self.forced_eos.size and length == self.max_length - 1:
            scores = _force(scores, self.forced_eos)
        if c.exponential_decay_length_penalty is not None:
            start, factor = c.exponential_decay_length_penalty
            scores = _exponential_decay(scores, self.eos, length - self.prompt_length - start, factor)
        if c.suppress_tokens:
            scores = _suppress(scores, c.suppress_tokens)
        if c.begin_suppress_tokens and length == self.begin_index:
            scores = _suppress(scores, c.begin_suppress_tokens)
        if warp:
            scores = self.warp(scores)
        if c.renormalize_logits:
            scores = log_softmax(scores)
        return scores

    def warp(self, scores: np.ndarray) -> np.ndarray:
        """The sampling-only processors, in transformers' order: temperature, top-k, top-p, min-p, typical-p,
        epsilon, eta."""
        c, keep = self.config, self.min_tokens_to_keep
        if c.temperature != 1.0:
            scores = scores / np.float32(c.temperature)
        if c.top_k:
            scores = top_k_filter(scores, max(c.top_k, keep))
        if c.top_p < 1.0:
            scores = top_p_filter(scores, c.top_p, keep)
        if c.min_p is not None:
            scores = min_p_filter(scores, c.min_p, keep)
        if c.typical_p < 1.0:
            scores = typical_filter(scores, c.typical_p, keep)
        if c.epsilon_cutoff > 0:
            scores = epsilon_filter(scores, c.epsilon_cutoff, keep)
        if c.eta_cutoff > 0:
            scores = eta_filter(scores, c.eta_cutoff, keep)
        return scores


def _sequence_bias_tables(pairs):
    """transformers' SequenceBiasLogitsProcessor tables: the one-token biases, then the longer sequences grouped
    by prefix length as (prefixes (G, k), last tokens (G,), biases (G,)). A sequence given twice: the last wins."""
    biases = {tuple(ids): bias for ids, bias in pairs}
    single = [(ids[0], bias) for ids, bias in biases.items() if len(ids) == 1]
    groups: dict[int, list] = {}
    for ids, bias in biases.items():
        if len(ids) > 1:
            groups.setdefault(len(ids) - 1, []).append((ids, bias))
    multi = [(np.array([ids[:-1] for ids, _ in group], dtype=np.int64),
              np.array([ids[-1] for ids, _ in group], dtype=np.int64),
              np.array([bias for _, bias in group], dtype=np.float32)) for group in groups.values()]
    return (np.array([t for t, _ in single], dtype=np.int64), np.array([b for _, b in single], dtype=np.float32),
            multi)


def _sequence_bias(ids, scores, single_ids, single_biases, multi):
    """Add each bias to the last token of its sequence where the row ends with the rest of it (one-token
    sequences: always). Biases sum in transformers' order, in float32, so the scores match bit for bit."""
    bias = np.zeros_like(scores)
    bias[:, single_ids] = single_biases
    rows = np.arange(ids.shape[0])[:, None]
    for prefixes, last, values in multi:
        k = prefixes.shape[1]
        if k <= ids.shape[1]:
            match = (ids[:, None, ids.shape[1] - k:] == prefixes[None]).all(axis=-1)  # (N, G)
            np.add.at(bias, (rows, last[None, :]), np.where(match, values, np.float32(0)))
    return scores + bias


def _suppress(scores, tokens):
    scores = scores.copy()
    scores[:, np.asarray(tokens, dtype=np.int64)] = -np.inf
    return scores


def _force(scores, tokens):
    """Only `tokens` (score 0) remain."""
    forced = np.full_like(scores, -np.inf)
    forced[:, np.asarray(tokens, dtype=np.int64)] = 0
    return forced


def _exponential_decay(scores, eos, steps, factor):
    """transformers' ExponentialDecayLengthPenalty, `steps` tokens past its start: each eos score grows by
    |score| * (factor ** steps - 1), |.| so that a negative score grows too; an infinite one stays."""
    if steps <= 0 or not eos.size:
        return scores
    scores = scores.copy()
    eos_scores = scores[:, eos]
    size = np.where(np.isfinite(eos_scores), np.abs(eos_scores), np.float32(0))
    scores[:, eos] = eos_scores + size * np.float32(factor ** steps - 1)
    return scores


def _repetition_penalty(ids, scores, penalty, ignore_before):
    scores = scores.copy()
    rows = np.arange(ids.shape[0])[:, None]
    seen = scores[rows, ids]
    seen = np.where(seen < 0, seen * np.float32(penalty), seen / np.float32(penalty))
    if ignore_before is not None:
        keep = np.arange(ids.shape[1])[None, :] >= ignore_before[:, None]
        scores[rows.repeat(ids.shape[1], 1)[keep], ids[keep]] = seen[keep]
    else:
        scores[rows, ids] = seen
    return scores


def _no_repeat_ngram(ids, scores, n):
    """Ban each token that would complete an n-gram already present in the row (prompt included)."""
    length = ids.shape[1]
    if length < n:
        return scores
    scores = scores.copy()
    windows = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1)  # (N, L-n+1, n)
    prefix = ids[:, length - n + 1:]                                   # the last n-1 tokens
    matches = (windows[:, :, :-1] == prefix[:, None, :]).all(axis=-1)
    rows, cols = np.nonzero(matches)
    scores[rows, windows[rows, cols, -1]] = -np.inf
    return scores


def bad_word_tables(bad_words_ids, eos_ids, vocab_size):
    """(the banned single tokens or None, [(prefix ids, last id)] for longer words); ValueError for an id outside the
    vocabulary (`prepare` calls it for that check alone)."""
    if bad_words_ids is None:
        return None, []
    # A bad "word" that is exactly one eos id is ignored, as in transformers (use min_new_tokens for that).
    words = [list(map(int, w)) for w in bad_words_ids if not (len(w) == 1 and int(w[0]) in eos_ids)]
    too_big = sorted({t for w in words for t in w if t >= vocab_size})
    if too_big:
        raise ValueError(f"`bad_words_ids` holds ids outside the vocabulary (vocab_size={vocab_size}): {too_big}")
    single = np.array(sorted({w[0] for w in words if len(w) == 1}), dtype=np.int64)
    multi = [(np.array(w[:-1], dtype=np.int64), w[-1]) for w in words if len(w) > 1]
    return (single if single.size else None), multi


def _ban_bad_words(ids, scores, single, multi):
    scores = scores.copy()
    if single is not None:
        scores[:, single] = -np.inf
    for prefix, last in multi:
        if prefix.size <= ids.shape[1]:
            hit = (ids[:, ids.shape[1] - prefix.size:] == prefix).all(axis=1)
            scores[hit, last] = -np.inf
    return scores


def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[-1])
    return -np.partition(-scores, k - 1, axis=-1)[:, k - 1:k]


def top_k_filter(scores: np.ndarray, k: int) -> np.ndarray:
    return np.where(scores < _kth_largest(scores, k), np.float32(-np.inf), scores)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def top_p_filter(scores: np.ndarray, top_p: float, min_keep: int = 1) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (ties at the edge kept)."""
    order = np.argsort(scores, axis=-1, kind="stable")  # ascending
    sorted_scores = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(_softmax(sorted_scores), axis=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[:, -min_keep:] = False
    remove = np.empty_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, np.float32(-np.inf), scores)


def min_p_filter(scores: np.ndarray, min_p: float, min_keep: int = 1) -> np.ndarray:
    """Keep the tokens at least min_p times as likely as the most likely one (and the `min_keep` likeliest)."""
    probs = _softmax(scores)
    remove = probs < min_p * probs.max(axis=-1, keepdims=True)
    if min_keep > 1:
        likeliest = np.argsort(-probs, axis=-1, kind="stable")[:, :min_keep]
        np.put_along_axis(remove, likeliest, False, axis=-1)
    return np.where(remove, np.float32(-np.inf), scores)


def typical_filter(scores: np.ndarray, mass: float, min_keep: int = 1) -> np.ndarray:
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy, up to `mass`."""
    logp = log_softmax(scores)
    p = np.exp(logp)
    entropy = -np.nansum(logp * p, axis=-1, keepdims=True)
    shifted = np.abs(-logp - entropy)
    order = np.argsort(shifted, axis=-1, kind="stable")
    sorted_shifted = np.take_along_axis(shifted, order, axis=-1)
    cumulative = np.cumsum(_softmax(np.take_along_axis(scores, order, axis=-1)), axis=-1)
    last = np.minimum((cumulative < mass).sum(axis=-1), scores.shape[-1] - 1)
    remove_sorted = sorted_shifted > np.take_along_axis(sorted_shifted, last[:, None], axis=-1)
    remove_sorted[:, :min_keep] = False
    remove = np.empty_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, np.float32(-np.inf), scores)


def epsilon_filter(scores: np.ndarray, epsilon: float, min_keep: int = 1) -> np.ndarray:
    """Epsilon sampling: drop the tokens less likely than `epsilon` (but never the `min_keep` likeliest)."""
    return _cut_below(scores, _softmax(scores), np.float32(epsilon), min_keep)


def eta_filter(scores: np.ndarray, eta: float, min_keep: int = 1) -> np.ndarray:
    """Eta sampling: epsilon sampling whose cutoff, min(eta, sqrt(eta) * exp(-entropy)), falls as the
    distribution spreads."""
    logp = log_softmax(scores)
    p = np.exp(logp)
    # log p clamped as torch's Categorical.entropy does, so that 0 * -inf counts 0
    entropy = -(p * np.maximum(logp, np.finfo(np.float32).min)).sum(axis=-1, keepdims=True)
    eta = np.float32(eta)
    return _cut_below(scores, p, np.minimum(eta, np.sqrt(eta) * np.exp(-entropy)), min_keep)


def _cut_below(scores, probs, cutoff, min_keep):
    """Drop the tokens whose probability is under `cutoff`, except the `min_keep` likeliest (ties included)."""
    remove = (probs < cutoff) & (scores < _kth_largest(scores, min_keep))
    return np.where(remove, np.float32(-np.inf), scores)


def sample_from(scores: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """One token per row from softmax(scores), by inverting the CDF at the backend's uniform draws."""
    probs = _softmax(scores.astype(np.float64))
    cdf = np.cumsum(probs, axis=-1)
    u = uniform.reshape(-1, 1) * cdf[:, -1:]
    tokens = (cdf <= u).sum(axis=-1)
    # Never land on a zero-probability token at the top edge through rounding.
    return _nearest_allowed(tokens, probs)


def _nearest_allowed(tokens, probs):
    tokens = np.minimum(tokens, probs.shape[-1] - 1)
    bad = probs[np.arange(len(tokens)), tokens] == 0
    for row in np.nonzero(bad)[0]:
        tokens[row] = np.nonzero(probs[row])[0][-1]
    return tokens.astype(np.int64)


def sample_without_replacement(scores: np.ndarray, k: int, uniform: np.ndarray) -> np.ndarray:
    """k distinct indices per row, drawn in proportion to softmax(scores) (Gumbel top-k)."""
    gumbel = -np.log(-np.log(np.clip(uniform, 1e-300, 1.0 - 1e-16)))
    keys = np.where(np.isneginf(scores), -np.inf, scores.astype(np.float64) + gumbel)
    return np.argsort(-keys, axis=-1, kind="stable")[:, :k]
