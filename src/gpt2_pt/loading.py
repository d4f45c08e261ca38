"""from_pretrained / save_pretrained for the PyTorch classes, over gpt2_core's checkpoint readers and name tables.

Loading builds the model on the meta device (no memory, no init) and assigns the checkpoint's memory-mapped arrays
as its parameters, so a safetensors model costs about one file's size of memory and no copy.

    >>> from gpt2_pt import GPT2LMHeadModel
    >>> model = GPT2LMHeadModel.from_pretrained("gpt2")                 # dir, HF cache or hub  # doctest: +SKIP
    >>> model.save_pretrained("out/", max_shard_size="200MB")            # transformers loads it # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import torch

from gpt2_core import checkpoint, layouts
from gpt2_core.config import GPT2Config

from . import modeling

logger = logging.getLogger(__name__)

_HUB_KEYS = ("revision", "cache_dir", "local_files_only", "token", "force_download")


def from_pretrained(pretrained_model_name_or_path, *, model_class=None, config: GPT2Config | None = None,
                    torch_dtype=None, dtype=None, device=None, **kwargs):
    """Load a model from a directory, the Hugging Face cache or the hub.

    Reads model.safetensors (memory-mapped), sharded safetensors, pytorch_model.bin (torch.load with
    weights_only=True and mmap=True) or a transformers-TF tf_model.h5, with or without the `transformer.` prefix.
    `model_class` defaults to the config's `architectures[0]` (else GPT2LMHeadModel); `torch_dtype` (or `dtype`)
    defaults to the file's dtype ("auto"); other keyword arguments are the resolver's (`revision`, `cache_dir`,
    `local_files_only`, `token`, `force_download`) or config fields to override.

    Checkpoint tensors of another head are dropped and a head the checkpoint lacks is initialised at random (both
    logged by name, as transformers does); any other missing, unexpected or wrong-shape tensor raises
    layouts.CheckpointMismatchError listing them all. A truncated or corrupt file raises checkpoint.CheckpointError
    naming the file.
    """
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs}
    fields = {f.name for f in dataclasses.fields(GPT2Config)} - {"extra"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"from_pretrained got unknown keyword arguments {unknown}: expected `torch_dtype`, "
                         f"`device`, {', '.join(_HUB_KEYS)} or GPT2Config fields")
    if config is None:
        config = GPT2Config.from_pretrained(pretrained_model_name_or_path, **hub_kwargs, **kwargs)
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    if model_class is None:
        model_class = _class_from_config(config)
    target_dtype = _resolve_dtype(torch_dtype if torch_dtype is not None else dtype)

    files = checkpoint.find_weights(pretrained_model_name_or_path, **hub_kwargs)
    arrays = read_arrays(files)
    with torch.device("meta"):
        model = model_class(config)
    head = layouts.head_of(model_class.__name__)
    state = _fit_to_head(layouts.to_canonical(arrays, files.layout), model, head)

    prefix = "transformer." if head == "base" else ""  # GPT2Model's own names lack it
    tensors = {name[len(prefix):]: _as_tensor(array) for name, array in state.items()}
    missing = model.load_state_dict(tensors, strict=False, assign=True).missing_keys
    _tie(model)
    _init_missing(model, [name for name in missing if name != "lm_head.weight"])
    if target_dtype is not None or device is not None:
        model.to(device=device, dtype=target_dtype)
    return model.eval()


def read_arrays(files: checkpoint.WeightFiles) -> dict[str, np.ndarray]:
    """The checkpoint's arrays under its own names; .bin files go through torch.load (weights only, mmap)."""
    if files.kind.startswith("pytorch_bin"):
        return checkpoint.state_from_torch_bin(files.paths, _torch_load, index=files.index)
    return checkpoint.read_weights(files)[0]


def _torch_load(path):
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _class_from_config(config):
    for name in config.architectures or ():
        name = name[2:] if name.startswith("TF") else name
        if name in layouts.MODEL_CLASSES.values():
            return getattr(modeling, name)
    return modeling.GPT2LMHeadModel


def _resolve_dtype(value):
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"`torch_dtype` should be a floating torch dtype, its name, or 'auto'. Received: {value!r}")
    return value


def _fit_to_head(state, model, head):
    """Check `state` against the model's parameters (layouts.check_state) after what transformers tolerates:
    tensors of other heads are dropped, and this head's own tensors may be missing (they get random init)."""
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


def _as_tensor(array):
    if not array.flags.writeable:  # torch wants writable memory; only odd readers hand out read-only arrays
        array = array.copy()
    return torch.from_numpy(array)


def _tie(model):
    if model.config.tie_word_embeddings and hasattr(model, "lm_head"):
        model.lm_head.weight = model.transformer.wte.weight


def _init_missing(model, names):
    """Give the head modules the checkpoint lacked real memory and transformers' random init."""
    for path in sorted({name.rsplit(".", 1)[0] for name in names}):
        module = model.get_submodule(path)
        module.to_empty(device="cpu")
        modeling.initialise(model.config, module)


def save_pretrained(model, save_directory, *, max_shard_size="5GB", safe_serialization=True) -> None:
    """Write config.json and model.safetensors (shards + index above `max_shard_size`), each file atomically.

    The files are what transformers 5 writes: canonical names (none of `transformer.` for GPT2Model), the tied
    lm_head left out, `architectures` set to the class name.
    """
    if not safe_serialization:
        raise ValueError("save_pretrained writes safetensors only. Received: safe_serialization=False")
    head = layouts.head_of(type(model).__name__)
    prefix = "transformer." if head == "base" else ""
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.lm_head.weight is model.transformer.wte.weight:
            continue  # tied: transformers writes only wte
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            # gpt2_core writes from numpy, which has no bfloat16; float32 holds every bfloat16 value exactly.
            logger.warning("Saving bfloat16 tensor %s as float32 (numpy has no bfloat16)", name)
            tensor = tensor.float()
        state[prefix + name] = tensor.numpy()
    os.makedirs(save_directory, exist_ok=True)
    checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class=head), save_directory,
                            max_shard_size=max_shard_size)
    dataclasses.replace(model.config, architectures=[type(model).__name__]).save_pretrained(save_directory)
