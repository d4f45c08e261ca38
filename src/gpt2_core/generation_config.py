"""GenerationConfig: how `generate` decodes -- transformers' fields, defaults and checks, generation_config.json in
and out, and the checks that need the prompt and the model (lengths, token ids in the vocabulary), run before any
model work.

    >>> from gpt2_core.generation_config import GenerationConfig
    >>> GenerationConfig(do_sample=True, top_p=0.9).top_k
    50
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import hub
from .io_utils import read_json_object, save_text

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
            forced = set(id_list(getattr(self, name)))
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
        return id_list(self.eos_token_id)

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


# ---------------------------------------------------------------------------------------------------------------
# Field checks


def _is_id(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 0


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and value == value


def id_list(ids) -> list[int]:
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
# Checked against the prompt and the model before any model work (by generation.prepare)


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


def check_in_vocab(config: GenerationConfig, vocab_size: int) -> None:
    """Raise ValueError naming the field whose token ids fall outside the vocabulary: the processors' ids are rows of
    the scores (bad_words_ids are checked by logits_process.bad_word_tables)."""
    fields = {"forced_bos_token_id": id_list(config.forced_bos_token_id),
              "forced_eos_token_id": id_list(config.forced_eos_token_id),
              "suppress_tokens": config.suppress_tokens or [],
              "begin_suppress_tokens": config.begin_suppress_tokens or [],
              "sequence_bias": [t for ids, _ in config.sequence_bias or [] for t in ids]}
    for name, ids in fields.items():
        too_big = sorted({int(t) for t in ids if t >= vocab_size})
        if too_big:
            raise ValueError(f"`{name}` holds ids outside the vocabulary (vocab_size={vocab_size}): {too_big}")


# Fields of transformers' GenerationConfig that leave the tokens as they are (what to return, how to cache).
_NO_EFFECT_ON_TOKENS = frozenset({
    "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "cache_implementation", "cache_config", "compile_config", "low_memory", "disable_compile"})


def warn_ignored_fields(config: GenerationConfig) -> None:
    """A generation_config.json may carry transformers fields we do not implement (guidance_scale,
    remove_invalid_values, ...); passed as arguments they raise, read from a file they are kept for saving but cannot
    steer the decoding: say so rather than decode differently in silence."""
    ignored = sorted(k for k in config.extra if k not in _NO_EFFECT_ON_TOKENS)
    if ignored:
        warnings.warn("generate ignores these generation config fields, which it does not implement: "
                      + ", ".join(f"{k}={config.extra[k]!r}" for k in ignored), UserWarning, stacklevel=3)

