"""What from_pretrained and save_pretrained do alike in both backends: sort the keyword arguments, read config.json
and generation_config.json, and write them back. The weights themselves go through `checkpoint` and `layouts`.

    >>> from gpt2_core import pretrained
    >>> config, hub_kwargs = pretrained.load_config("gpt2", None, {"n_layer": 2, "revision": "main"},
    ...                                             accepted=["dtype"])                      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from . import hub, layouts
from .config import GPT2Config
from .generation import GENERATION_CONFIG_NAME, GenerationConfig

HUB_KEYS = hub.RESOLVE_KEYS
GENERATING_HEADS = ("lm", "double_heads")  # the classes transformers lets generate (and saves a generation config for)


def load_config(name_or_path, config: GPT2Config | None, kwargs: dict[str, Any], *,
                accepted=()) -> tuple[GPT2Config, dict[str, Any]]:
    """(config, resolver keyword arguments) from from_pretrained's leftover `kwargs`.

    `kwargs` may hold the resolver's keys (HUB_KEYS) and GPT2Config fields to override; anything else raises
    ValueError naming it and what is accepted (`accepted`: the backend's own options, for the message). `config`
    given: it is used (with the overrides) instead of the model's config.json.
    """
    kwargs = dict(kwargs)
    hub_kwargs = {k: kwargs.pop(k) for k in HUB_KEYS if k in kwargs}
    fields = {f.name for f in dataclasses.fields(GPT2Config)} - {"extra"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        expected = ", ".join(f"`{name}`" for name in (*accepted, *HUB_KEYS))
        raise ValueError(f"from_pretrained got unknown keyword arguments {unknown}: expected {expected} or "
                         "GPT2Config fields")
    if config is None:
        config = GPT2Config.from_pretrained(name_or_path, **hub_kwargs, **kwargs)
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    return config, hub_kwargs


def load_generation_config(name_or_path, config: GPT2Config, **hub_kwargs) -> GenerationConfig:
    """The model's generation_config.json (a directory, the HF cache or the hub, as config.json), else the
    defaults transformers derives from `config` (its special tokens)."""
    path = hub.resolve_file(name_or_path, GENERATION_CONFIG_NAME, **hub_kwargs)
    if path is None:
        return GenerationConfig.from_model_config(config)
    return GenerationConfig.from_json_file(path)


def config_for_saving(config: GPT2Config, class_name: str, dtype: str | None = None) -> GPT2Config:
    """A copy of `config` as transformers writes it for `class_name`: `architectures` = [the class name without
    "TF"], and `dtype` (transformers 5's key; also `torch_dtype` when the file had the old key) when given."""
    config = copy.deepcopy(config)
    config.architectures = [layouts.MODEL_CLASSES[layouts.head_of(class_name)]]
    if dtype is not None:
        config.extra["dtype"] = dtype
        if "torch_dtype" in config.extra:
            config.extra["torch_dtype"] = dtype
    return config


def save_configs(save_directory, config: GPT2Config, class_name: str, *, dtype: str | None = None,
                 generation_config: GenerationConfig | None = None) -> list[str]:
    """Write config.json (see `config_for_saving`) and, for the classes that generate, generation_config.json
    (`generation_config`, else the one derived from `config`), each atomically. Returns the paths written."""
    config = config_for_saving(config, class_name, dtype)
    written = [config.save_pretrained(save_directory)]
    if layouts.head_of(class_name) in GENERATING_HEADS:
        if not isinstance(generation_config, GenerationConfig):
            generation_config = GenerationConfig.from_model_config(config)
        written.append(generation_config.save_pretrained(save_directory))
    return written

