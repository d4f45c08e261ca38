"""Typed request bodies for every route, with the checks that need no model (ranges, types, unsupported fields).

Checks that need the model (token ids inside the vocabulary, prompt + max_tokens within n_positions, a known model
name) are in completions.py. Field names, defaults and ranges are OpenAI's legacy completions API; `top_k`,
`min_p` and `repetition_penalty` are the extensions vLLM and llama.cpp's server accept under the same names.
Unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Annotated, Union

from .errors import show
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator, \
    model_validator

MAX_LOGPROBS = 5  # OpenAI's limit for the legacy completions API
MAX_N = 128

Number = Union[StrictInt, StrictFloat]
TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
Prompt = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1)], TokenIds,
               Annotated[list[TokenIds], Field(min_length=1)]]


def _received(name, value) -> str:
    return f"Received: {name}={show(value)}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_default=True)


class StreamOptions(_Body):
    include_usage: StrictBool = False


class CompletionRequest(_Body):
    """POST /v1/completions."""

    prompt: Prompt
    model: StrictStr | None = None
    max_tokens: StrictInt | None = 16
    temperature: Number | None = 1.0
    top_p: Number | None = 1.0
    top_k: StrictInt | None = 0  # 0 (or vLLM's -1): off
    min_p: Number | None = 0.0
    n: StrictInt | None = 1
    best_of: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    logprobs: StrictInt | None = None
    echo: StrictBool | None = False
    presence_penalty: Number | None = 0.0
    frequency_penalty: Number | None = 0.0
    repetition_penalty: Number | None = 1.0
    logit_bias: dict[str, Number] | None = None
    suffix: StrictStr | None = None
    user: StrictStr | None = None

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, v):
        if v is not None and v < 1:
            raise ValueError(f"`max_tokens` should be at least 1. {_received('max_tokens', v)}")
        return 16 if v is None else v

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v):
        if v is not None and not v >= 0:
            raise ValueError(f"`temperature` should be >= 0 (0 is greedy). {_received('temperature', v)}")
        return 1.0 if v is None else float(v)

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, v):
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"`top_p` should be in (0, 1]. {_received('top_p', v)}")
        return 1.0 if v is None else float(v)

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v):
        if v is not None and v < -1:
            raise ValueError(f"`top_k` should be >= 0 (0 or -1: off). {_received('top_k', v)}")
        return 0 if v is None or v == -1 else v

    @field_validator("min_p")
    @classmethod
    def _min_p(cls, v):
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"`min_p` should be in [0, 1]. {_received('min_p', v)}")
        return 0.0 if v is None else float(v)

    @field_validator("n")
    @classmethod
    def _n(cls, v):
        if v is not None and not 1 <= v <= MAX_N:
            raise ValueError(f"`n` should be between 1 and {MAX_N}. {_received('n', v)}")
        return 1 if v is None else v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if any(s == "" for s in stops):
            raise ValueError(f"`stop` should hold non-empty strings. {_received('stop', v)}")
        return stops

    @field_validator("seed")
    @classmethod
    def _seed(cls, v):
        if v is not None and not 0 <= v < 2**63 - MAX_N:
            raise ValueError(f"`seed` should be a non-negative 63-bit integer. {_received('seed', v)}")
        return v

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, v):
        if v is not None and not 0 <= v <= MAX_LOGPROBS:
            raise ValueError(f"`logprobs` should be between 0 and {MAX_LOGPROBS}. {_received('logprobs', v)}")
        return v

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _penalty(cls, v, info):
        if v is not None and not -2 <= v <= 2:
            raise ValueError(f"`{info.field_name}` should be in [-2, 2]. {_received(info.field_name, v)}")
        return 0.0 if v is None else float(v)

    @field_validator("repetition_penalty")
    @classmethod
    def _repetition_penalty(cls, v):
        if v is not None and not v > 0:
            raise ValueError(f"`repetition_penalty` should be > 0 (1: off). {_received('repetition_penalty', v)}")
        return 1.0 if v is None else float(v)

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v):
        if v is None:
            return None
        out = {}
        for key, bias in v.items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"`logit_bias` keys should be token ids. {_received('logit_bias', v)}")
            if not -100 <= bias <= 100:
                raise ValueError(f"`logit_bias` values should be in [-100, 100]. Received: logit_bias[{key!r}]={bias!r}")
            out[int(key)] = float(bias)
        return out

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v):
        if v:
            raise ValueError(f"`suffix` is not supported (GPT-2 has no insertion mode). {_received('suffix', v)}")
        return None

    @model_validator(mode="after")
    def _combinations(self):
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError(f"`best_of` is not supported: only best_of == n (the default) is served, and n="
                             f"{self.n}. {_received('best_of', self.best_of)}")
        if self.stream_options is not None and not self.stream:
            raise ValueError(f"`stream_options` is only allowed with stream=true. "
                             f"{_received('stream_options', self.stream_options.model_dump())}")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TokenizeRequest(_Body):
    """POST /tokenize (llama.cpp's server): `content` -> `{"tokens": [...]}`."""

    content: StrictStr
    add_special: StrictBool = False  # GPT-2 adds no special tokens either way; accepted for llama.cpp clients


class DetokenizeRequest(_Body):
    """POST /detokenize: `tokens` -> `{"content": ...}`."""

    tokens: list[StrictInt]


class AutocompleteRequest(_Body):
    """POST /autocomplete in Write With Transformer's shape."""

    context: StrictStr
    samples: StrictInt = Field(3, ge=1, le=MAX_N)
    gen_length: StrictInt = Field(20, ge=1)
    temperature: Number = Field(1.0, ge=0)
    top_p: Number = Field(0.9, gt=0, le=1)
    top_k: StrictInt = Field(0, ge=0)
    max_time: Number | None = Field(None, gt=0)  # seconds; the texts generated so far are returned at the limit
    model_size: StrictStr | None = None  # WWT's field: one model is served, so it is ignored
