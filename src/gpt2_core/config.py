"""GPT2Config: the transformers GPT-2 configuration, as a validated dataclass.

Field names and defaults equal transformers' `GPT2Config`, so a config.json written by either side reads the
same in the other. Keys we do not model (``task_specific_params``, ``n_ctx``, ...) are kept in ``extra`` and written
back unchanged.

    >>> from gpt2_core import GPT2Config
    >>> GPT2Config.from_pretrained("gpt2-medium").n_layer
    24
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from . import hub
from .io_utils import read_json_object, save_text

CONFIG_NAME = "config.json"

# Every activation both backends implement; the names are transformers' ACT2FN keys.
ACTIVATIONS = (
    "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate", "gelu", "gelu_python", "quick_gelu",
    "relu", "relu6", "silu", "swish", "mish", "tanh", "sigmoid", "linear",
)
SUMMARY_TYPES = ("last", "first", "mean", "cls_index", "attn")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# The hub's config.json of each released checkpoint, minus what equals our defaults. They are the offline
# fallback: a config.json found in a directory, the HF cache or the hub always wins.
_GPT2_COMMON = {"n_ctx": 1024, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}}
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": {**_GPT2_COMMON},
    "gpt2-medium": {**_GPT2_COMMON, "n_embd": 1024, "n_layer": 24, "n_head": 16},
    "gpt2-large": {**_GPT2_COMMON, "n_embd": 1280, "n_layer": 36, "n_head": 20},
    "gpt2-xl": {**_GPT2_COMMON, "n_embd": 1600, "n_layer": 48, "n_head": 25},
    "distilgpt2": {**_GPT2_COMMON, "n_layer": 6},
}
# The hub ids the five names moved to; both spellings resolve to the same preset.
PRESET_ALIASES = {
    "openai-community/gpt2": "gpt2",
    "openai-community/gpt2-medium": "gpt2-medium",
    "openai-community/gpt2-large": "gpt2-large",
    "openai-community/gpt2-xl": "gpt2-xl",
    "distilbert/distilgpt2": "distilgpt2",
}


def preset_name(name: str) -> str | None:
    """The canonical preset name for `name` (either spelling), or None when it is not one of the five."""
    name = str(name)
    if name in PRESETS:
        return name
    return PRESET_ALIASES.get(name)


@dataclass
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
    model_type: str = "gpt2"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._settle_labels()
        self.validate()

    # -- labels: transformers keeps num_labels, id2label and label2id consistent; so do we.
    def _settle_labels(self):
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            if self.num_labels is None:
                self.num_labels = len(self.id2label)
        if self.num_labels is None:
            self.num_labels = 2
        if self.id2label is None or len(self.id2label) != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if self.label2id is None or len(self.label2id) != self.num_labels:
            self.label2id = {v: k for k, v in self.id2label.items()}
        else:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot describe a GPT-2 model."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. Received: {name}={value!r}")
        if self.n_inner is not None and (isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int)
                                         or self.n_inner <= 0):
            raise ValueError(f"`n_inner` should be None or a positive integer. Received: n_inner={self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"`n_embd` should be divisible by `n_head`. Received: n_embd={self.n_embd}, n_head={self.n_head}")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(f"`activation_function` should be one of {', '.join(ACTIVATIONS)}. "
                             f"Received: activation_function={self.activation_function!r}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` should be a probability in [0, 1]. Received: {name}={value!r}")
        if not isinstance(self.layer_norm_epsilon, (int, float)) or self.layer_norm_epsilon <= 0:
            raise ValueError(f"`layer_norm_epsilon` should be positive. Received: {self.layer_norm_epsilon!r}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ValueError(f"`summary_type` should be one of {', '.join(SUMMARY_TYPES)}. "
                             f"Received: summary_type={self.summary_type!r}")
        if self.summary_activation not in (None, "tanh"):
            raise ValueError(f"`summary_activation` should be None or 'tanh'. "
                             f"Received: summary_activation={self.summary_activation!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"`problem_type` should be None or one of {', '.join(PROBLEM_TYPES[1:])}. "
                             f"Received: problem_type={self.problem_type!r}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"`{name}` should be None or a non-negative integer. Received: {name}={value!r}")

    # -- the transformers attribute aliases
    hidden_size = property(lambda self: self.n_embd)
    num_attention_heads = property(lambda self: self.n_head)
    num_hidden_layers = property(lambda self: self.n_layer)
    max_position_embeddings = property(lambda self: self.n_positions)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    # -- dict / json
    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides) -> "GPT2Config":
        data = {**copy.deepcopy(data), **overrides}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        # transformers writes these; they describe the file, not the model.
        for k in ("transformers_version",):
            extra.pop(k, None)
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        # json keys are strings; transformers writes id2label with string keys too.
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        del out["num_labels"]  # implied by id2label, and transformers does not write it either
        out.update(copy.deepcopy(self.extra))
        if out["architectures"] is None:
            del out["architectures"]
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "GPT2Config":
        data = read_json_object(path)
        model_type = data.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"{path} describes a {model_type!r} model, not 'gpt2'")
        return cls.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        return save_text(save_directory, CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "GPT2Config":
        """Read config.json from a directory, the HF cache or the hub; the five GPT-2 names also work offline.

        Keyword arguments that name config fields override the file; the rest (`revision`, `cache_dir`,
        `local_files_only`, `token`) go to the resolver.
        """
        resolve_kwargs = hub.pop_resolve_kwargs(kwargs)
        path = hub.resolve_file(name_or_path, CONFIG_NAME, fallback_ok=preset_name(name_or_path) is not None,
                                **resolve_kwargs)
        if path is not None:
            return cls.from_dict(cls.from_json_file(path).to_dict(), **kwargs)
        preset = preset_name(name_or_path)
        if preset is None:  # resolve_file raises for unknown names; this guards a future change there
            raise OSError(f"No config.json found for {str(name_or_path)!r}")
        return cls.from_dict({"architectures": ["GPT2LMHeadModel"], **PRESETS[preset]}, **kwargs)

    def num_parameters(self, *, with_lm_head: bool = False) -> int:
        """Parameters of GPT2Model (the LM head is tied to wte and adds none unless untied and asked for)."""
        d, inner = self.n_embd, self.inner_dim
        per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d)
        total = self.vocab_size * d + self.n_positions * d + self.n_layer * per_layer + 2 * d
        if with_lm_head and not self.tie_word_embeddings:
            total += self.vocab_size * d
        return total
