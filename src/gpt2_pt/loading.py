"""from_pretrained / save_pretrained for the PyTorch classes, over gpt2_core's checkpoint readers and name tables.

Loading builds the model on the meta device (no memory, no init) and assigns the checkpoint's memory-mapped arrays
as its parameters, so a safetensors model costs about one file's size of memory and no copy.

    >>> from gpt2_pt import GPT2LMHeadModel
    >>> model = GPT2LMHeadModel.from_pretrained("gpt2")                 # dir, HF cache or hub  # doctest: +SKIP
    >>> model.save_pretrained("out/", max_shard_size="200MB")            # transformers loads it # doctest: +SKIP
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from gpt2_core import checkpoint, layouts, pretrained
from gpt2_core.config import GPT2Config
from gpt2_core.dtypes import BF16Array, bfloat16_bits, is_bfloat16

from . import modeling

logger = logging.getLogger(__name__)


def from_pretrained(pretrained_model_name_or_path, *, model_class=None, config: GPT2Config | None = None,
                    torch_dtype=None, dtype=None, device=None, **kwargs):
    """Load a model from a directory, the Hugging Face cache or the hub.

    Reads model.safetensors (memory-mapped), sharded safetensors, pytorch_model.bin (torch.load with
    weights_only=True and mmap=True) or a transformers-TF tf_model.h5, with or without the `transformer.` prefix.
    `model_class` defaults to the config's `architectures[0]` (else GPT2LMHeadModel). `torch_dtype` (or `dtype`)
    defaults to "auto", as in transformers 5: the config's `dtype`, else the checkpoint's first floating tensor's
    (a bfloat16 file loads as bfloat16 parameters straight from the file's memory map, no float32 copy). Other
    keyword arguments are the resolver's (`revision`, `cache_dir`, `local_files_only`, `token`, `force_download`)
    or config fields to override. LM-head classes get `model.generation_config` from generation_config.json (else
    from the config), which `generate` uses.

    Checkpoint tensors of another head are dropped and a head the checkpoint lacks is initialised at random (both
    logged by name, as transformers does); any other missing, unexpected or wrong-shape tensor raises
    layouts.CheckpointMismatchError listing them all. A truncated or corrupt file raises checkpoint.CheckpointError
    naming the file.
    """
    config, hub_kwargs = pretrained.load_config(pretrained_model_name_or_path, config, kwargs,
                                                accepted=("torch_dtype", "device"))
    if model_class is None:
        model_class = getattr(modeling, layouts.class_name_from_config(config))
    target_dtype = _resolve_dtype(torch_dtype if torch_dtype is not None else dtype)

    files = checkpoint.find_weights(pretrained_model_name_or_path, **hub_kwargs)
    arrays = read_arrays(files)
    with torch.device("meta"):
        model = model_class(config)
    head = layouts.head_of(model_class.__name__)
    state = layouts.fit_to_head(layouts.to_canonical(arrays, files.layout), config, head,
                                model_name=model_class.__name__)

    prefix = "transformer." if head == "base" else ""  # GPT2Model's own names lack it
    tensors = {name[len(prefix):]: _as_tensor(array) for name, array in state.items()}
    missing = model.load_state_dict(tensors, strict=False, assign=True).missing_keys
    _tie(model)
    _init_missing(model, [name for name in missing if name != "lm_head.weight"])
    if target_dtype is None:
        target_dtype = _auto_dtype(config, tensors.values())
    model.to(device=device, dtype=target_dtype)  # no copy for tensors already there
    if head in pretrained.GENERATING_HEADS:
        model.generation_config = pretrained.load_generation_config(pretrained_model_name_or_path, config,
                                                                    **hub_kwargs)
    return model.eval()


def read_arrays(files: checkpoint.WeightFiles) -> dict[str, np.ndarray]:
    """The checkpoint's arrays under its own names, bfloat16 as BF16Array bits (no copy); .bin files go through
    torch.load (weights only, mmap)."""
    if files.kind.startswith("pytorch_bin"):
        return checkpoint.state_from_torch_bin(files.paths, _torch_load, convert=to_numpy, index=files.index)
    return checkpoint.read_weights(files, bf16="bits")[0]


def _torch_load(path):
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as numpy sharing its memory (on the CPU); bfloat16 as its bits in a BF16Array."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BF16Array)
    return tensor.numpy()


def _as_tensor(array) -> torch.Tensor:
    if not array.flags.writeable:  # torch wants writable memory; only odd readers hand out read-only arrays
        array = array.copy()
    if is_bfloat16(array):
        return torch.from_numpy(bfloat16_bits(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.asarray(array))


def _resolve_dtype(value):
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"`torch_dtype` should be a floating torch dtype, its name, or 'auto'. Received: {value!r}")
    return value


def _auto_dtype(config, tensors):
    """transformers 5's "auto": the config's `dtype` (or older `torch_dtype`), else the first floating tensor's."""
    for key in ("dtype", "torch_dtype"):
        named = getattr(torch, str(config.extra.get(key)).removeprefix("torch."), None)
        if isinstance(named, torch.dtype) and named.is_floating_point:
            return named
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


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
    """Write config.json, model.safetensors (shards + index above `max_shard_size`) and, for LM-head classes,
    generation_config.json (`model.generation_config`), each file atomically.

    The files are what transformers 5 writes: canonical names (none of `transformer.` for GPT2Model), the tied
    lm_head left out, tensors in their own dtype (bfloat16 and float16 included, streamed without a copy),
    `architectures` set to the class name and `dtype` to the model's.
    """
    if not safe_serialization:
        raise ValueError("save_pretrained writes safetensors only. Received: safe_serialization=False")
    head = layouts.head_of(type(model).__name__)
    prefix = "transformer." if head == "base" else ""
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.lm_head.weight is model.transformer.wte.weight:
            continue  # tied: transformers writes only wte
        state[prefix + name] = to_numpy(tensor)
    checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class=head), save_directory,
                            max_shard_size=max_shard_size)
    pretrained.save_configs(save_directory, model.config, type(model).__name__,
                            dtype=str(model.dtype).removeprefix("torch."),
                            generation_config=getattr(model, "generation_config", None))
