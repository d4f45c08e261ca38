"""GenerationConfig and the framework-neutral decoding loop (greedy, sampling, beam search) in numpy.

A backend supplies a `DecodeBackend`: it turns token ids into next-token logits with its own model and cache, and
draws uniform random numbers from its own generator. Everything else -- lengths, logits processors, sampling,
beam bookkeeping, stopping, padding of finished rows, streaming -- is here once, so both backends decode the same
way. Names, defaults and semantics follow transformers' `generate`, so greedy and beam search give the same tokens.

    >>> from gpt2_core.generation import GenerationConfig
    >>> GenerationConfig(do_sample=True, top_p=0.9).top_k
    50
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import hub
from .io_utils import read_json_object, save_text

logger = logging.getLogger(__name__)

GENERATION_CONFIG_NAME = "generation_config.json"


class _DefaultLength(int):
    """The unset `max_length`: equals 20 but means "20 new tokens", as in transformers 5 (an explicit value is the
    total length, prompt included)."""


DEFAULT_MAX_LENGTH = _DefaultLength(20)

# Keys transformers writes that describe the file, not the decoding.
_METADATA_KEYS = ("transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash")


@dataclass
class GenerationConfig:
    """How `generate` decodes. Field names, defaults and checks are transformers'.

        >>> config = GenerationConfig(num_beams=4, num_return_sequences=2, max_new_tokens=32)
        >>> config.update(length_penalty=0.8)
        {}
    """

    max_length: int = DEFAULT_MAX_LENGTH
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    do_sample: bool = False
    num_beams: int = 1
    use_cache: bool = True
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    num_return_sequences: int = 1
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    max_time: float | None = None  # seconds from the first model call (after any weight packing or compiling)
    stop_strings: str | list[str] | None = None  # needs `tokenizer=` in generate, as in transformers
    epsilon_cutoff: float = 0.0  # sampling: drop tokens less likely than this (0: off)
    eta_cutoff: float = 0.0  # sampling: drop tokens less likely than min(eta, sqrt(eta) * exp(-entropy)) (0: off)
    renormalize_logits: bool = False  # log-softmax after every processor
    forced_bos_token_id: int | None = None  # forced after a 1-token prompt (transformers forces it at length 1)
    forced_eos_token_id: int | list[int] | None = None  # forced as the last token, at max_length - 1
    exponential_decay_length_penalty: tuple[int, float] | None = None  # (start_index, decay_factor)
    suppress_tokens: list[int] | None = None  # never generated
    begin_suppress_tokens: list[int] | None = None  # not generated first
    sequence_bias: list[list] | None = None  # [[token ids], bias] pairs; a {tuple(ids): bias} dict is converted
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # transformers' own forms, so a file we write loads there and a saved config reads back equal
        if self.sequence_bias is not None:
            self.sequence_bias = _sequence_bias_pairs(self.sequence_bias)
        if isinstance(self.exponential_decay_length_penalty, list):
            self.exponential_decay_length_penalty = tuple(self.exponential_decay_length_penalty)
        self.validate()

    # -- validation: everything that can be checked without the prompt and the model
    def validate(self) -> None:
        """Raise ValueError naming the first field (or combination) that cannot work."""
        _check_int("max_length", self.max_length, minimum=1)
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1, optional=True)
        _check_int("min_length", self.min_length, minimum=0)
        _check_int("min_new_tokens", self.min_new_tokens, minimum=0, optional=True)
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "never"):
            raise ValueError(f"`early_stopping` should be True, False or 'never'. "
                             f"Received: early_stopping={self.early_stopping!r}")
        for name in ("do_sample", "use_cache", "renormalize_logits"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` should be a bool. Received: {name}={getattr(self, name)!r}")
        _check_int("num_beams", self.num_beams, minimum=1)
        _check_int("num_return_sequences", self.num_return_sequences, minimum=1)
        _check_int("top_k", self.top_k, minimum=0, optional=True)
        _check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, minimum=0)
        for name in ("temperature", "top_p", "typical_p", "repetition_penalty", "length_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"`{name}` should be a number. Received: {name}={value!r}")
        max_time = self.max_time
        if max_time is not None and (isinstance(max_time, bool) or not isinstance(max_time, (int, float))
                                     or not max_time > 0):
            raise ValueError(f"`max_time` should be None or a number of seconds > 0. Received: max_time={max_time!r}")
        stops = self.stop_strings
        if stops is not None and not (isinstance(stops, str) and stops) and not (
                isinstance(stops, (list, tuple)) and stops and all(isinstance(x, str) and x for x in stops)):
            raise ValueError(f"`stop_strings` should be None, a non-empty string or a non-empty list of them. "
                             f"Received: stop_strings={stops!r}")
        if stops is not None and self.num_beams > 1:
            raise ValueError("`stop_strings` works with greedy decoding and sampling, not beam search. Received: "
                             f"num_beams={self.num_beams}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"`temperature` should be > 0 when sampling (for greedy decoding set do_sample=False). "
                             f"Received: temperature={self.temperature!r}")
        for name in ("top_p", "typical_p"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"`{name}` should be in (0, 1]. Received: {name}={value!r}")
        if self.min_p is not None and (isinstance(self.min_p, bool) or not isinstance(self.min_p, (int, float))
                                       or not 0 <= self.min_p <= 1):
            raise ValueError(f"`min_p` should be None or in [0, 1]. Received: min_p={self.min_p!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"`repetition_penalty` should be > 0. Received: repetition_penalty={self.repetition_penalty!r}")
        for name in ("pad_token_id", "bos_token_id", "forced_bos_token_id"):
            _check_int(name, getattr(self, name), minimum=0, optional=True)
        for name in ("eos_token_id", "forced_eos_token_id"):
            _check_token_ids(name, getattr(self, name), single=True)
        for name in ("suppress_tokens", "begin_suppress_tokens"):
            _check_token_ids(name, getattr(self, name), single=False)
        self._check_processor_fields()
        if self.bad_words_ids is not None:
            words = self.bad_words_ids
            if (not isinstance(words, (list, tuple)) or not words
                    or any(not isinstance(w, (list, tuple)) or not w for w in words)
                    or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0 for w in words for t in w)):
                raise ValueError("`bad_words_ids` should be a non-empty list of non-empty lists of token ids. "
                                 f"Received: bad_words_ids={words!r}")
        if self.num_return_sequences > 1:
            if self.num_beams == 1 and not self.do_sample:
                raise ValueError("Greedy decoding returns one sequence per prompt: `num_return_sequences` > 1 needs "
                                 f"do_sample=True or num_beams > 1. Received: num_return_sequences="
                                 f"{self.num_return_sequences}")
            if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
                raise ValueError(f"`num_return_sequences` should be <= `num_beams`. Received: num_return_sequences="
                                 f"{self.num_return_sequences}, num_beams={self.num_beams}")

    def _check_processor_fields(self) -> None:
        for name in ("epsilon_cutoff", "eta_cutoff"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < 1):
                raise ValueError(f"`{name}` should be in [0, 1) (0 turns it off). Received: {name}={value!r}")
        decay = self.exponential_decay_length_penalty
        if decay is not None and not (isinstance(decay, (list, tuple)) and len(decay) == 2 and _is_id(decay[0])
                                      and _is_number(decay[1]) and decay[1] > 0):
            raise ValueError("`exponential_decay_length_penalty` should be None or a (start_index, decay_factor) "
                             "pair: an integer >= 0 and a number > 0. Received: exponential_decay_length_penalty="
                             f"{decay!r}")
        if self.sequence_bias is not None:
            _sequence_bias_pairs(self.sequence_bias)
        # as transformers: a forced token that is also suppressed leaves no token at all (all scores -inf)
        suppressed = set(self.suppress_tokens or ())
        for name in ("forced_bos_token_id", "forced_eos_token_id"):
            forced = set(_as_list(getattr(self, name)))
            if suppressed and forced and forced <= suppressed:
                raise ValueError(f"Every token of `{name}` is also in `suppress_tokens`, which leaves no token to "
                                 f"generate at that step. Received: {name}={getattr(self, name)!r}, "
                                 f"suppress_tokens={self.suppress_tokens!r}")

    @property
    def rows_per_prompt(self) -> int:
        """Rows decoded for each prompt: its beams, or its returned sequences."""
        return max(self.num_beams, self.num_return_sequences)

    @property
    def eos_token_ids(self) -> list[int]:
        """`eos_token_id` as a list (empty when unset)."""
        return _as_list(self.eos_token_id)

    # -- overrides
    def update(self, **kwargs) -> dict[str, Any]:
        """Set the known fields among `kwargs` (validated together); return the unknown ones, as transformers."""
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        unused = {k: v for k, v in kwargs.items() if k not in known}
        candidate = dataclasses.replace(self, **{k: v for k, v in kwargs.items() if k in known})  # validates
        for k in known:
            setattr(self, k, getattr(candidate, k))
        return unused

    def copy(self, **overrides) -> "GenerationConfig":
        """A deep copy with `overrides` applied; an unknown key raises ValueError naming it."""
        new = copy.deepcopy(self)
        unused = new.update(**overrides)
        if unused:
            raise ValueError(f"Unknown generation argument(s): {', '.join(sorted(unused))}")
        return new

    # -- dict / json: unknown keys round-trip through `extra`; only non-default values are written
    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides) -> "GenerationConfig":
        data = {**copy.deepcopy(data), **overrides}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        # None means "the default" in transformers' files.
        kwargs = {k: v for k, v in data.items() if k in known and v is not None}
        extra = {k: v for k, v in data.items() if k not in known and k not in _METADATA_KEYS}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        defaults = GenerationConfig()
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "max_length" and isinstance(value, _DefaultLength):
                continue
            if value != getattr(defaults, f.name) or f.name == "max_length":
                out[f.name] = copy.deepcopy(value)
        out.update(copy.deepcopy(self.extra))
        return out

    def to_json_string(self) -> str:
        return json.dumps({k: (int(v) if isinstance(v, _DefaultLength) else v) for k, v in self.to_dict().items()},
                          indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "GenerationConfig":
        data = read_json_object(path)
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        self.validate()
        return save_text(save_directory, GENERATION_CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "GenerationConfig":
        """Read generation_config.json from a directory, the HF cache or the hub; fields in `kwargs` override it.

        Raises OSError when the model has no generation_config.json (use `from_model_config` then).
        """
        resolve_kwargs = hub.pop_resolve_kwargs(kwargs)
        path = hub.resolve_file(name_or_path, GENERATION_CONFIG_NAME, **resolve_kwargs)
        if path is None:
            raise OSError(f"{os.fspath(name_or_path)!r} has no {GENERATION_CONFIG_NAME}")
        return cls.from_dict(cls.from_json_file(path).to_dict(), **kwargs)

    @classmethod
    def from_model_config(cls, config) -> "GenerationConfig":
        """The special tokens of a GPT2Config, everything else default (what transformers derives)."""
        return cls(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                   pad_token_id=config.pad_token_id)


def _is_id(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 0


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and value == value


def _as_list(ids) -> list[int]:
    """A token id, a list of them or None, as a list."""
    if ids is None:
        return []
    return [int(t) for t in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


def _check_token_ids(name: str, value, *, single: bool) -> None:
    """None, or a list of token ids: non-empty when a single id is allowed too (eos_token_id), possibly empty when
    not (suppress_tokens)."""
    if value is None or (single and _is_id(value)):
        return
    if isinstance(value, (list, tuple)) and (value or not single) and all(map(_is_id, value)):
        return
    what = "an id or a non-empty list of ids" if single else "a list of ids"
    raise ValueError(f"`{name}` should be None or {what} (integers >= 0). Received: {name}={value!r}")


def _sequence_bias_pairs(value) -> list[list]:
    """`sequence_bias` as transformers 5 writes it: [[token ids], bias] pairs with float biases. The older
    {tuple(ids): bias} dict is accepted, as transformers does; int biases too (transformers wants floats)."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not (isinstance(pairs, (list, tuple)) and pairs and all(
            isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], (list, tuple)) and pair[0]
            and all(map(_is_id, pair[0])) and _is_number(pair[1]) for pair in pairs)):
        raise ValueError("`sequence_bias` should be None or a non-empty list of [[token ids], bias] pairs (or a dict "
                         f"{{tuple of ids: bias}}). Received: sequence_bias={value!r}")
    return [[[int(t) for t in ids], float(bias)] for ids, bias in pairs]


def _check_int(name: str, value, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "None or " if optional else ""
        raise ValueError(f"`{name}` should be {kind}an integer >= {minimum}. Received: {name}={value!r}")


# ---------------------------------------------------------------------------------------------------------------
# Lengths: checked against the prompt and the model before any work


def resolve_lengths(config: GenerationConfig, prompt_length: int, n_positions: int) -> tuple[int, int]:
    """(max_length, min_length) in total tokens, prompt included, as transformers 5 derives them.

    max_new_tokens wins over max_length; an unset max_length means 20 new tokens, capped at the model's context.
    Raises ValueError when the prompt or the requested length does not fit the model.
    """
    if prompt_length < 1:
        raise ValueError("The prompt should hold at least one token. Received: input_ids of length 0")
    if prompt_length > n_positions:
        raise ValueError(f"The prompt is {prompt_length} tokens, longer than the model's context "
                         f"(n_positions={n_positions})")
    if config.max_new_tokens is not None:
        max_length = prompt_length + config.max_new_tokens
        if max_length > n_positions:
            raise ValueError(f"`max_new_tokens`={config.max_new_tokens} after a {prompt_length}-token prompt passes "
                             f"the model's context (n_positions={n_positions}); at most "
                             f"{n_positions - prompt_length} new tokens fit")
    elif isinstance(config.max_length, _DefaultLength):
        max_length = min(prompt_length + config.max_length, n_positions)
        if max_length <= prompt_length:
            raise ValueError(f"The prompt is {prompt_length} tokens: it fills the model's context "
                             f"(n_positions={n_positions}) and leaves no room for new tokens")
    else:
        max_length = config.max_length
        if prompt_length >= max_length:
            raise ValueError(f"The prompt is {prompt_length} tokens but `max_length`={max_length} (prompt included); "
                             "raise max_length or set max_new_tokens")
        if max_length > n_positions:
            raise ValueError(f"`max_length`={max_length} passes the model's context (n_positions={n_positions})")
    min_length = config.min_length
    if config.min_new_tokens is not None:
        min_length = prompt_length + config.min_new_tokens
    return max_length, min_length


# ---------------------------------------------------------------------------------------------------------------
# Logits processors on numpy arrays: ids (N, L) int64, scores (N, V) float32. Order and arithmetic are transformers'.


class LogitsProcessor:
    """All processors `config` asks for, built once per generate call. `max_length` (total, prompt included) is
    where `forced_eos_token_id` applies."""

    def __init__(self, config: GenerationConfig, *, prompt_length: int, min_length: int, vocab_size: int,
                 ignore_before: np.ndarray | None, min_tokens_to_keep: int = 1, max_length: int | None = None):
        if config.forced_eos_token_id is not None and max_length is None:
            raise ValueError("`forced_eos_token_id` needs the max_length it applies at")
        _check_in_vocab(config, vocab_size)
        self.config = config
        self.prompt_length = prompt_length
        self.min_length = min_length
        self.max_length = max_length
        self.eos = np.asarray(config.eos_token_ids, dtype=np.int64)
        # Left padding is no part of the text: the repetition penalty skips it (transformers does too).
        self.ignore_before = ignore_before
        self.min_tokens_to_keep = min_tokens_to_keep
        self.bad_single, self.bad_multi = _bad_word_tables(config.bad_words_ids, config.eos_token_ids, vocab_size)
        self.bias = None if config.sequence_bias is None else _sequence_bias_tables(config.sequence_bias)
        self.forced_eos = np.asarray(_as_list(config.forced_eos_token_id), dtype=np.int64)
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


def _check_in_vocab(config, vocab_size):
    """The processors' token ids are rows of the scores (bad_words_ids: see _bad_word_tables)."""
    fields = {"forced_bos_token_id": _as_list(config.forced_bos_token_id),
              "forced_eos_token_id": _as_list(config.forced_eos_token_id),
              "suppress_tokens": config.suppress_tokens or [],
              "begin_suppress_tokens": config.begin_suppress_tokens or [],
              "sequence_bias": [t for ids, _ in config.sequence_bias or [] for t in ids]}
    for name, ids in fields.items():
        too_big = sorted({int(t) for t in ids if t >= vocab_size})
        if too_big:
            raise ValueError(f"`{name}` holds ids outside the vocabulary (vocab_size={vocab_size}): {too_big}")


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


def _bad_word_tables(bad_words_ids, eos_ids, vocab_size):
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


# ---------------------------------------------------------------------------------------------------------------
# The loop


class DecodeBackend(Protocol):
    """What a framework provides to `decode`. Arrays are numpy; logits (N, V) float32 for the last position."""

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def step(self, tokens: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def reorder(self, index: np.ndarray) -> None: ...

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray: ...


class Streamer(Protocol):
    def put(self, value) -> None: ...

    def end(self) -> None: ...


def config_for(model, generation_config: GenerationConfig | None = None) -> GenerationConfig:
    """The settings a `generate` call starts from: the one passed, else the model's own generation_config (read
    with the checkpoint), else the special tokens of its GPT2Config."""
    if generation_config is not None:
        if not isinstance(generation_config, GenerationConfig):
            raise ValueError("`generation_config` should be a gpt2_core GenerationConfig. "
                             f"Received: {type(generation_config).__name__}")
        return generation_config
    own = getattr(model, "generation_config", None)
    if isinstance(own, GenerationConfig):
        return own
    return GenerationConfig.from_model_config(model.config)


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """(B, T) position ids that count only the kept tokens, so a left-padded row sees the positions it would
    see alone."""
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


# Fields of transformers' GenerationConfig that leave the tokens as they are (what to return, how to cache).
_NO_EFFECT_ON_TOKENS = frozenset({
    "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "cache_implementation", "cache_config", "compile_config", "low_memory", "disable_compile"})


def _warn_ignored_fields(config: GenerationConfig) -> None:
    """A generation_config.json may carry transformers fields we do not implement (guidance_scale,
    remove_invalid_values, ...); passed as arguments they raise, read from a file they are kept for saving but cannot
    steer the decoding: say so rather than decode differently in silence."""
    ignored = sorted(k for k in config.extra if k not in _NO_EFFECT_ON_TOKENS)
    if ignored:
        warnings.warn("generate ignores these generation config fields, which it does not implement: "
                      + ", ".join(f"{k}={config.extra[k]!r}" for k in ignored), UserWarning, stacklevel=3)


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
    _warn_ignored_fields(config)
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
    _bad_word_tables(config.bad_words_ids, config.eos_token_ids, vocab_size)  # raises on out-of-vocab ids
    _check_in_vocab(config, vocab_size)
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
    and max_length: what a backend may run as one compiled loop (gpt2_tf does). Kept here, beside what `decode`
    and LogitsProcessor consult, so that a new field cannot be skipped there in silence."""
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
    table = getattr(tokenizer, "_bytes_table", None)
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
