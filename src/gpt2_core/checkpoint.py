"""The weight files of a model <-> numpy arrays: which files a model directory or hub id holds, reading them all
(single, sharded, pytorch_model.bin through a backend), and saving a state as model.safetensors or shards plus an
index, as transformers does.

Readers return arrays under the file's own names; `layouts.to_canonical` renames them. Nothing here imports a
framework: pytorch_model.bin is a pickle only torch can read, so `read_weights` raises NeedsTorch for it and the
backends finish with `state_from_torch_bin(paths, torch_load)`. One file of each format is its own module's job:
gpt2_core.safetensors_file (memory-mapped reads, streaming writes) and gpt2_core.keras_h5 (tf_model.h5); their
functions, and the errors (gpt2_core.checkpoint_errors), import from here as before.

    >>> from gpt2_core import checkpoint, layouts
    >>> files = checkpoint.find_weights("gpt2")                                   # doctest: +SKIP
    >>> arrays, layout = checkpoint.read_weights(files)                          # doctest: +SKIP
    >>> state = layouts.to_canonical(arrays, layout)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from . import hub
from .checkpoint_errors import CheckpointError, NeedsTorch, WeightsNotFoundError
from .io_utils import atomic_write_text
from .keras_h5 import H5_ATTR_LIMIT, KERAS_VERSION, read_tf_h5, write_tf_h5  # noqa: F401  (imported from here)
from .safetensors_file import (BF16_MODES, check_bf16, read_safetensors, read_safetensors_header,  # noqa: F401
                               stored_dtype, stored_nbytes, write_safetensors)

logger = logging.getLogger(__name__)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF2_WEIGHTS_NAME = "tf_model.h5"
# Preference order, as transformers' PyTorch from_pretrained.
WEIGHTS_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, TF2_WEIGHTS_NAME)
KINDS = {
    SAFE_WEIGHTS_NAME: "safetensors",
    SAFE_WEIGHTS_INDEX_NAME: "safetensors_sharded",
    WEIGHTS_NAME: "pytorch_bin",
    WEIGHTS_INDEX_NAME: "pytorch_bin_sharded",
    TF2_WEIGHTS_NAME: "tf_h5",
}
LAYOUT_OF_KIND = {"safetensors": "hf_pt", "safetensors_sharded": "hf_pt", "pytorch_bin": "hf_pt",
                  "pytorch_bin_sharded": "hf_pt", "tf_h5": "hf_tf"}


@dataclass(frozen=True)
class WeightFiles:
    """The weight files of one model: `paths` are the files holding tensors (the shards, for a sharded
    checkpoint, whose index json is `index`); `directory` is the folder they sit in."""

    kind: str
    paths: tuple[str, ...]
    directory: str
    index: str | None = None

    @property
    def layout(self) -> str:
        return LAYOUT_OF_KIND[self.kind]


# ---------------------------------------------------------------------------------------------------------------
# Finding
def find_weights(name_or_path, *, candidates: Iterable[str] = WEIGHTS_NAMES, **hub_kwargs) -> WeightFiles:
    """The weight files of a model directory or hub id, trying `candidates` in order (first found wins).

    `hub_kwargs` (revision, cache_dir, local_files_only, token, force_download) go to `hub.resolve_file`.
    Raises hub.ModelNotFoundError for an unknown model, WeightsNotFoundError when it has no weights file, and
    CheckpointError when an index lists a shard that cannot be found.
    """
    candidates = tuple(candidates)
    for filename in candidates:
        if filename not in KINDS:
            raise ValueError(f"`candidates` should name files among {', '.join(WEIGHTS_NAMES)}. "
                             f"Received: {filename!r}")
        path = hub.resolve_file(name_or_path, filename, **hub_kwargs)
        if path is None:
            continue
        kind = KINDS[filename]
        if not filename.endswith(".index.json"):
            return WeightFiles(kind, (path,), os.path.dirname(path))
        shards = []
        for shard in _shard_names(read_index(path)):
            shard_path = hub.resolve_file(name_or_path, shard, **hub_kwargs)
            if shard_path is None:
                raise CheckpointError(path, f"lists shard {shard!r}, which {name_or_path!s} does not have")
            shards.append(shard_path)
        return WeightFiles(kind, tuple(shards), os.path.dirname(path), index=path)
    raise WeightsNotFoundError(None, f"{os.fspath(name_or_path)!r} has no weights file: looked for "
                                     f"{', '.join(candidates)}")


def weight_files(path) -> WeightFiles:
    """WeightFiles for one local file (a .safetensors, an index .json, a .bin or an .h5)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such file")
    base = os.path.basename(path)
    directory = os.path.dirname(os.path.abspath(path))
    if base.endswith(".index.json"):
        kind = "safetensors_sharded" if ".safetensors" in base else "pytorch_bin_sharded"
        shards = tuple(os.path.join(directory, s) for s in _shard_names(read_index(path)))
        for shard in shards:
            if not os.path.isfile(shard):
                raise CheckpointError(path, f"lists shard {os.path.basename(shard)!r}, which is missing")
        return WeightFiles(kind, shards, directory, index=path)
    for suffix, kind in ((".safetensors", "safetensors"), (".bin", "pytorch_bin"), (".pt", "pytorch_bin"),
                         (".h5", "tf_h5")):
        if base.endswith(suffix):
            return WeightFiles(kind, (path,), directory)
    raise CheckpointError(path, "unknown weights file type (expected .safetensors, .index.json, .bin or .h5)")


# ---------------------------------------------------------------------------------------------------------------
# Reading
def read_weights(files: WeightFiles | str | os.PathLike, *, bf16: str = "float32"
                 ) -> tuple[dict[str, np.ndarray], str]:
    """Read every tensor of `files` (or of one file, or a local model directory) -> (arrays under the file's names,
    layout name).

    safetensors are memory-mapped (copy-on-write: the arrays are writable, the file is never modified, and pages
    are read only when touched). numpy has no bfloat16: `bf16="float32"` upcasts bfloat16 tensors (exactly, a
    copy), `bf16="bits"` returns them as `dtypes.BF16Array` views of the file (no copy; a backend views them as its
    own bfloat16). tf_model.h5 datasets are memory-mapped too when stored contiguously. pytorch_model.bin raises
    NeedsTorch.
    """
    check_bf16(bf16)
    if not isinstance(files, WeightFiles):
        files = find_weights(files) if os.path.isdir(files) else weight_files(files)
    if files.kind.startswith("pytorch_bin"):
        raise NeedsTorch(files.paths[0], "is a torch pickle (pytorch_model.bin) and gpt2_core cannot read it "
                         "without torch; load it through gpt2_pt (or read it with checkpoint.state_from_torch_bin), "
                         "or convert it to model.safetensors")
    if files.kind == "safetensors":
        return read_safetensors(files.paths[0], bf16=bf16), "hf_pt"
    if files.kind == "safetensors_sharded":
        return _read_sharded(files, bf16), "hf_pt"
    if files.kind == "tf_h5":
        return read_tf_h5(files.paths[0]), "hf_tf"
    raise ValueError(f"`files.kind` should be one of {', '.join(LAYOUT_OF_KIND)}. Received: {files.kind!r}")


def read_index(path) -> dict[str, Any]:
    """A validated sharded-checkpoint index (`metadata`, `weight_map`)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"is not a valid index (not valid JSON: {e})") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise CheckpointError(path, "is not a valid index: `weight_map` should map tensor names to shard files")
    for shard in set(weight_map.values()):
        # Shards sit beside the index; a name climbing out of the folder is a corrupt (or hostile) index.
        if os.path.isabs(shard) or ".." in shard.replace("\\", "/").split("/"):
            raise CheckpointError(path, f"lists shard {shard!r} outside the checkpoint folder")
    return index


def _shard_names(index: dict[str, Any]) -> list[str]:
    return sorted(set(index["weight_map"].values()))


def _read_sharded(files: WeightFiles, bf16: str) -> dict[str, np.ndarray]:
    if files.index is None:
        raise ValueError("A sharded WeightFiles needs `index`, the path of its index json. Received: index=None")
    index = read_index(files.index)
    by_file = {os.path.basename(p): p for p in files.paths}
    out: dict[str, np.ndarray] = {}
    where: dict[str, str] = {}
    for shard in _shard_names(index):
        path = by_file.get(os.path.basename(shard))
        if path is None or not os.path.isfile(path):
            raise CheckpointError(files.index, f"lists shard {shard!r}, which is missing")
        arrays = read_safetensors(path, bf16=bf16)
        for name, array in arrays.items():
            if name in out:
                raise CheckpointError(path, f"holds {name!r}, which {where[name]} holds too")
            if index["weight_map"].get(name) != shard:
                logger.warning("%s holds %r, which the index %s does not place there", path, name, files.index)
            out[name] = array
            where[name] = os.path.basename(path)
    for name, shard in index["weight_map"].items():
        if where.get(name) != os.path.basename(shard):
            raise CheckpointError(files.index, f"places {name!r} in {shard!r}, which lacks it")
    return out


# ---------------------------------------------------------------------------------------------------------------
# .bin (torch pickles), finished by a backend that has torch
def state_from_torch_bin(paths: Iterable[str], torch_load: Callable[[str], Mapping[str, Any]], *,
                         convert: Callable[[Any], Any] | None = None, index: str | None = None) -> dict[str, Any]:
    """Merge the state dicts that `torch_load(path)` returns for each file, with our checks and error messages.

    `torch_load` is the backend's loader, e.g. ``lambda p: torch.load(p, map_location="cpu", weights_only=True,
    mmap=True)``; core never imports torch. `convert` maps each value (default: to numpy, bfloat16 upcast to
    float32; pass ``lambda t: t`` to keep torch tensors). `index` (a .bin.index.json) is checked against the shards.
    """
    convert = _torch_to_numpy if convert is None else convert
    out: dict[str, Any] = {}
    where: dict[str, str] = {}
    for path in paths:
        path = os.fspath(path)
        try:
            part = torch_load(path)
        except FileNotFoundError as e:
            raise CheckpointError(path, "no such file") from e
        except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError... for a damaged pickle
            raise CheckpointError(path, f"could not be read by torch (truncated or corrupt?): {e}") from e
        if not isinstance(part, Mapping):
            raise CheckpointError(path, f"holds a {type(part).__name__}, not a state dict")
        for name, value in part.items():
            if name in out:
                raise CheckpointError(path, f"holds {name!r}, which {where[name]} holds too")
            out[name] = convert(value)
            where[name] = os.path.basename(path)
    if index is not None:
        for name, shard in read_index(index)["weight_map"].items():
            if where.get(name) != os.path.basename(shard):
                raise CheckpointError(index, f"places {name!r} in {shard!r}, which lacks it")
    return out


def _torch_to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor, handled by duck typing so that core never imports torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()  # numpy has no bfloat16; the upcast is exact
        return value.numpy()
    return np.asarray(value)


# ---------------------------------------------------------------------------------------------------------------
# Writing
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(size: int | str) -> int:
    """Bytes in `size`: an int, or a string like "5GB" (10**9), "500MB", "2GiB" (2**30), "100kB"."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"`max_shard_size` should be positive. Received: max_shard_size={size!r}")
        return size
    match = _SIZE.match(size) if isinstance(size, str) else None
    if not match or float(match[1]) <= 0:
        raise ValueError("`max_shard_size` should be a positive int (bytes) or a string like '5GB', '500MB', "
                         f"'2GiB'. Received: max_shard_size={size!r}")
    return int(float(match[1]) * _UNITS[(match[2] or "b").lower()])


def plan_shards(state: Mapping[str, np.ndarray], limit: int, *, dtype: str | None = None) -> list[list[str]]:
    """Split the names of `state`, in order, into shards of at most `limit` bytes once cast to `dtype` (a tensor
    larger than the limit gets a shard of its own). Always at least one shard."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, array in state.items():
        nbytes = stored_nbytes(np.asanyarray(array), dtype)
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def shard_filenames(filename: str, count: int) -> list[str]:
    """[filename] for one shard, else transformers' names: model.safetensors -> model-00001-of-00003.safetensors."""
    if count == 1:
        return [filename]
    stem, ext = filename.split(".", 1)
    return [f"{stem}-{i:05d}-of-{count:05d}.{ext}" for i in range(1, count + 1)]


def write_index(path, state: Mapping[str, np.ndarray], shards: list[list[str]], filenames: list[str], *,
                dtype: str | None = None) -> str:
    """The index json of a sharded checkpoint (transformers' `metadata` and sorted `weight_map`), atomically."""
    arrays = [np.asanyarray(a) for a in state.values()]
    index = {"metadata": {"total_parameters": int(sum(a.size for a in arrays)),
                          "total_size": int(sum(stored_nbytes(a, dtype) for a in arrays))},
             "weight_map": dict(sorted((name, filename) for names, filename in zip(shards, filenames)
                                       for name in names))}
    atomic_write_text(path, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return os.fspath(path)


_OUR_FILES = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?")


def save_weights(state: Mapping[str, np.ndarray], directory, *, max_shard_size: int | str = "5GB",
                 metadata: Mapping[str, str] | None = None, dtype: str | None = None,
                 on_tensor: Callable[[str], None] | None = None) -> list[str]:
    """Save `state` as model.safetensors, or as shards plus model.safetensors.index.json when it passes
    `max_shard_size` (shards filled in order; a tensor larger than the limit gets a shard of its own).

    Tensors stream one at a time (see `write_safetensors`, which also explains `dtype` and `on_tensor`). Files of
    an earlier save that the new one does not use are removed, so a directory never holds both a stale
    model.safetensors and a new sharded checkpoint. Returns the paths written (index last).
    """
    limit = parse_size(max_shard_size)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    shards = plan_shards(state, limit, dtype=dtype)
    filenames = shard_filenames(SAFE_WEIGHTS_NAME, len(shards))
    written = [write_safetensors({name: state[name] for name in names}, os.path.join(directory, filename),
                                 metadata, dtype=dtype, on_tensor=on_tensor)
               for names, filename in zip(shards, filenames)]
    if len(shards) > 1:
        written.append(write_index(os.path.join(directory, SAFE_WEIGHTS_INDEX_NAME), state, shards, filenames,
                                   dtype=dtype))
    keep = {os.path.basename(p) for p in written}
    for filename in os.listdir(directory):
        if _OUR_FILES.fullmatch(filename) and filename not in keep:
            os.remove(os.path.join(directory, filename))
    return written


