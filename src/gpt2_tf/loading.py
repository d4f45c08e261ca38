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

import logging
import os

import keras
import numpy as np

from gpt2_core import checkpoint, layouts, pretrained
from gpt2_core.config import GPT2Config
from gpt2_core.dtypes import dtype_name, is_bfloat16

from . import modeling

logger = logging.getLogger(__name__)

_TORCH_KINDS = ("pytorch_bin", "pytorch_bin_sharded")


def from_pretrained(pretrained_model_name_or_path, *, model_class=None, config: GPT2Config | None = None,
                    dtype=None, **kwargs):
    """Load a model from a directory, the Hugging Face cache or the hub.

    Reads model.safetensors (memory-mapped), sharded safetensors, a transformers-TF tf_model.h5, or
    pytorch_model.bin when torch is importable (gpt2_tf never needs torch otherwise), with or without the
    `transformer.` prefix. `model_class` defaults to the config's `architectures[0]` (else TFGPT2LMHeadModel);
    `dtype` is a Keras dtype policy name ("float32", "mixed_bfloat16", ...); other keyword arguments are the
    resolver's (`revision`, `cache_dir`, `local_files_only`, `token`, `force_download`) or config fields to override.
    LM-head classes get `model.generation_config` from generation_config.json (else from the config), which
    `generate` uses.

    Checkpoint tensors of another head are dropped and a head the checkpoint lacks keeps its random init (both
    logged by name, as transformers does); any other missing, unexpected or wrong-shape tensor raises
    layouts.CheckpointMismatchError listing them all. A truncated or corrupt file raises checkpoint.CheckpointError
    naming the file.
    """
    config, hub_kwargs = pretrained.load_config(pretrained_model_name_or_path, config, kwargs, accepted=("dtype",))
    if model_class is None:
        model_class = getattr(modeling, "TF" + layouts.class_name_from_config(config))

    files = _find_weights(pretrained_model_name_or_path, hub_kwargs)
    arrays = read_arrays(files)
    model = model_class(config) if dtype is None else model_class(config, dtype=dtype)
    head = layouts.head_of(model_class.__name__)
    state = layouts.fit_to_head(layouts.to_canonical(arrays, files.layout), config, head,
                                model_name=model_class.__name__)

    variables = state_variables(model)
    loaded = set()
    for name, array in state.items():
        variable = variables[name]
        if id(variable) in loaded:  # the tied lm_head is wte: assigned once
            continue
        variable.assign(np.asarray(array, dtype=variable.dtype))
        loaded.add(id(variable))
    if head in pretrained.GENERATING_HEADS:
        model.generation_config = pretrained.load_generation_config(pretrained_model_name_or_path, config,
                                                                    **hub_kwargs)
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
    """Write config.json, tf_model.h5 as transformers-TF writes them and, for LM-head classes,
    generation_config.json (`model.generation_config`), each file atomically.

    `safe_serialization=True` also writes model.safetensors (shards + index above `max_shard_size`) under the
    PyTorch names, in the variables' dtype (bfloat16 included), which transformers 5 and gpt2_pt load; an untied
    lm_head, which tf_model.h5 cannot hold, is saved that way only. tf_model.h5 has no bfloat16: bfloat16 weights
    go there as float32. `architectures` is set to the class name without "TF", as transformers-TF does.
    """
    head = layouts.head_of(_class_name(model))
    state = {}
    for name, variable in state_variables(model).items():
        if name == "lm_head.weight" and variable is model.transformer.wte.weight:
            continue  # tied: transformers writes only wte
        state[name] = variable.numpy()  # bfloat16 comes as an ml_dtypes array, which the writers take
    untied = "lm_head.weight" in state
    if untied and not safe_serialization:
        raise ValueError("tf_model.h5 (transformers-TF's layout) has no place for an untied lm_head; save with "
                         "safe_serialization=True, which writes model.safetensors only. Received: "
                         "tie_word_embeddings=False, safe_serialization=False")
    os.makedirs(save_directory, exist_ok=True)
    if not untied:
        bf16 = any(is_bfloat16(array) for array in state.values())
        checkpoint.write_tf_h5(layouts.from_canonical(state, "hf_tf", model_class=head),
                               os.path.join(save_directory, checkpoint.TF2_WEIGHTS_NAME), "TF" + _class_name(model),
                               dtype="float32" if bf16 else None)
    if safe_serialization:
        checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class=head), save_directory,
                                max_shard_size=max_shard_size)
    stored = dtype_name(state["transformer.wte.weight"])
    pretrained.save_configs(save_directory, model.config, _class_name(model),
                            dtype="float32" if stored == "bfloat16" and not safe_serialization else stored,
                            generation_config=getattr(model, "generation_config", None))
