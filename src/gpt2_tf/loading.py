"""from_pretrained / save_pretrained for the TensorFlow classes, over gpt2_core's checkpoint readers and name tables.

The twin of gpt2_pt/loading.py. Reads tf_model.h5 as transformers-TF wrote it (any Keras model prefix, old and new
embedding names), model.safetensors (single or sharded, memory-mapped, no torch), and pytorch_model.bin only when
torch happens to be importable. Writes config.json + tf_model.h5 in transformers-TF's exact layout, and
model.safetensors under PyTorch names on request.

    >>> from gpt2_tf import TFGPT2LMHeadModel
    >>> model = TFGPT2LMHeadModel.from_pretrained("gpt2")                # dir, HF cache or hub  # doctest: +SKIP
    >>> model.save_pretrained("out/")                                    # transformers-TF loads it  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os

import keras
import numpy as np

from gpt2_core import checkpoint, layouts
from gpt2_core.config import GPT2Config

from . import modeling

logger = logging.getLogger(__name__)

_HUB_KEYS = ("revision", "cache_dir", "local_files_only", "token", "force_download")
_TORCH_KINDS = ("pytorch_bin", "pytorch_bin_sharded")


def from_pretrained(pretrained_model_name_or_path, *, model_class=None, config: GPT2Config | None = None,
                    dtype=None, **kwargs):
    """Load a model from a directory, the Hugging Face cache or the hub.

    Reads model.safetensors (memory-mapped), sharded safetensors, a transformers-TF tf_model.h5, or
    pytorch_model.bin when torch is importable (gpt2_tf never needs torch otherwise), with or without the
    `transformer.` prefix. `model_class` defaults to the config's `architectures[0]` (else TFGPT2LMHeadModel);
    `dtype` is a Keras dtype policy name ("float32", "mixed_bfloat16", ...); other keyword arguments are the
    resolver's (`revision`, `cache_dir`, `local_files_only`, `token`, `force_download`) or config fields to override.

    Checkpoint tensors of another head are dropped and a head the checkpoint lacks keeps its random init (both
    logged by name, as transformers does); any other missing, unexpected or wrong-shape tensor raises
    layouts.CheckpointMismatchError listing them all. A truncated or corrupt file raises checkpoint.CheckpointError
    naming the file.
    """
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs}
    fields = {f.name for f in dataclasses.fields(GPT2Config)} - {"extra"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"from_pretrained got unknown keyword arguments {unknown}: expected `dtype`, "
                         f"{', '.join(_HUB_KEYS)} or GPT2Config fields")
    if config is None:
        config = GPT2Config.from_pretrained(pretrained_model_name_or_path, **hub_kwargs, **kwargs)
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    if model_class is None:
        model_class = _class_from_config(config)

    files = _find_weights(pretrained_model_name_or_path, hub_kwargs)
    arrays = read_arrays(files)
    model = model_class(config) if dtype is None else model_class(config, dtype=dtype)
    head = layouts.head_of(model_class.__name__)
    state = _fit_to_head(layouts.to_canonical(arrays, files.layout), model, head)

    variables = state_variables(model)
    loaded = set()
    for name, array in state.items():
        variable = variables[name]
        if id(variable) in loaded:  # the tied lm_head is wte: assigned once
            continue
        variable.assign(np.asarray(array, dtype=variable.dtype))
        loaded.add(id(variable))
    return model


# safetensors first (memory-mapped), then transformers-TF's own file, and a torch pickle only when nothing else is
# there: reading it is the one time gpt2_tf imports torch.
_CANDIDATES = (checkpoint.SAFE_WEIGHTS_NAME, checkpoint.SAFE_WEIGHTS_INDEX_NAME, checkpoint.TF2_WEIGHTS_NAME,
               checkpoint.WEIGHTS_NAME, checkpoint.WEIGHTS_INDEX_NAME)


def _find_weights(name_or_path, hub_kwargs) -> checkpoint.WeightFiles:
    return checkpoint.find_weights(name_or_path, candidates=_CANDIDATES, **hub_kwargs)


def read_arrays(files: checkpoint.WeightFiles) -> dict[str, np.ndarray]:
    """The checkpoint's arrays under its own names; .bin files go through torch.load (weights only, mmap)."""
    if files.kind in _TORCH_KINDS:
        try:
            import torch  # noqa: F401  (only here: a torch pickle needs torch to read)
        except ImportError as e:
            raise checkpoint.NeedsTorch(files.paths[0], "is a torch pickle (pytorch_model.bin), the model has no "
                                        "safetensors or tf_model.h5, and torch is not installed: install torch, or "
                                        "convert the file to model.safetensors (gpt2-convert)") from e
        return checkpoint.state_from_torch_bin(files.paths, _torch_load, index=files.index)
    return checkpoint.read_weights(files)[0]


def _torch_load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _class_from_config(config):
    for name in config.architectures or ():
        name = name[2:] if name.startswith("TF") else name
        if name in layouts.MODEL_CLASSES.values():
            return getattr(modeling, "TF" + name)
    return modeling.TFGPT2LMHeadModel


def _fit_to_head(state, model, head):
    """Check `state` against the model's parameters (layouts.check_state) after what transformers tolerates:
    tensors of other heads are dropped, and this head's own tensors may be missing (they keep random init)."""
    config = model.config
    expected = layouts.expected_shapes(config, head)
    every_head = set().union(*(layouts.expected_shapes(config, h) for h in layouts.HEADS))
    foreign = [name for name in state if name not in expected and name in every_head]
    if foreign:
        logger.warning("Checkpoint tensors not used by %s: %s", type(model).__name__, ", ".join(foreign))
    state = {name: array for name, array in state.items() if name not in foreign}
    own = set(expected) - set(layouts.expected_shapes(config, "base")) - set(layouts.TIED_TO)
    absent = [name for name in expected if name in own and name not in state]
    if absent:
        logger.warning("%s weights not in the checkpoint, initialised at random: %s", type(model).__name__,
                       ", ".join(absent))
        expected = {name: shape for name, shape in expected.items() if name not in absent}
    tied = ("lm_head.weight",) if config.tie_word_embeddings else ()
    return layouts.check_state(expected, state, tied=tied)


def state_variables(model) -> dict[str, keras.Variable]:
    """Canonical name -> variable, as torch's state_dict names a model's parameters (a tied weight under both
    of its names). Walks the public attributes in definition order: the attribute names are the weight names."""
    out: dict[str, keras.Variable] = {}

    def walk(layer, prefix):
        for attr, value in vars(layer).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, keras.Variable):
                out[prefix + attr] = value
            elif isinstance(value, keras.layers.Layer):
                walk(value, f"{prefix}{attr}.")
            elif isinstance(value, list) and value and all(isinstance(v, keras.layers.Layer) for v in value):
                for i, sub in enumerate(value):
                    walk(sub, f"{prefix}{attr}.{i}.")

    head = layouts.head_of(_class_name(model))
    walk(model, "transformer." if head == "base" else "")  # GPT2Model's own names lack it; canonical names have it
    return out


def _class_name(model) -> str:
    name = type(model).__name__
    return name[2:] if name.startswith("TF") else name


def save_pretrained(model, save_directory, *, safe_serialization=False, max_shard_size="5GB") -> None:
    """Write config.json and tf_model.h5 as transformers-TF writes them, each file atomically.

    `safe_serialization=True` also writes model.safetensors (shards + index above `max_shard_size`) under the
    PyTorch names, which transformers 5 and gpt2_pt load; an untied lm_head, which tf_model.h5 cannot hold, is
    saved that way only. `architectures` is set to the class name without "TF", as transformers-TF does.
    """
    head = layouts.head_of(_class_name(model))
    state = {}
    for name, variable in state_variables(model).items():
        if name == "lm_head.weight" and variable is model.transformer.wte.weight:
            continue  # tied: transformers writes only wte
        state[name] = np.asarray(variable.numpy(), dtype=np.float32) if variable.dtype == "bfloat16" else \
            variable.numpy()
    untied = "lm_head.weight" in state
    if untied and not safe_serialization:
        raise ValueError("tf_model.h5 (transformers-TF's layout) has no place for an untied lm_head; save with "
                         "safe_serialization=True, which writes model.safetensors only. Received: "
                         "tie_word_embeddings=False, safe_serialization=False")
    os.makedirs(save_directory, exist_ok=True)
    if not untied:
        checkpoint.write_tf_h5(layouts.from_canonical(state, "hf_tf", model_class=head),
                               os.path.join(save_directory, checkpoint.TF2_WEIGHTS_NAME), "TF" + _class_name(model))
    if safe_serialization:
        checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class=head), save_directory,
                                max_shard_size=max_shard_size)
    dataclasses.replace(model.config, architectures=[_class_name(model)]).save_pretrained(save_directory)
