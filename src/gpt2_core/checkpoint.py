"""Checkpoint files <-> numpy arrays: safetensors (memory-mapped, single or sharded), tf_model.h5, and writers.

Readers return arrays under the file's own names; `layouts.to_canonical` renames them. Nothing here imports a
framework: pytorch_model.bin is a pickle only torch can read, so `read_weights` raises NeedsTorch for it and the
backends finish with `state_from_torch_bin(paths, torch_load)`.

safetensors headers are parsed and validated by the safetensors library. Two parts stay ours, for what the library
cannot do in numpy (bench/bench_pt_load.py, bench/bench_safetensors.py): the data is memory-mapped (its numpy
reader copies every tensor into memory and has no bfloat16), and the writer streams, casting one tensor at a time
(its writer needs every cast tensor in memory at once).

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
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

from . import hub, layouts
from .dtypes import BF16Array, bfloat16_bits, bfloat16_to_float32, cast, is_bfloat16
from .io_utils import atomic_path, atomic_write_text

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


class CheckpointError(OSError):
    """A checkpoint file is missing, truncated or corrupt. `path` names the file, the message says what is wrong."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class NeedsTorch(CheckpointError):
    """The file is a torch pickle (pytorch_model.bin): only torch can read it."""


class WeightsNotFoundError(CheckpointError):
    """The model exists but holds none of the weight files we can use."""


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
    _check_bf16(bf16)
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


BF16_MODES = ("float32", "bits")  # how readers hand out bfloat16 tensors: upcast, or BF16Array views


def _check_bf16(bf16: str) -> None:
    if bf16 not in BF16_MODES:
        raise ValueError(f"`bf16` should be one of {', '.join(BF16_MODES)}. Received: bf16={bf16!r}")


# safetensors dtype codes -> numpy dtypes (little-endian). BF16 has no numpy dtype: it is read as uint16 bits.
_ST_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_NP_TO_ST = {np.dtype(v).newbyteorder("="): k for k, v in _ST_DTYPES.items() if k != "BF16"}
_CAST_TO_ST = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def read_safetensors_header(path) -> tuple[dict[str, Any], dict[str, str], int]:
    """(tensor entries {name: {dtype, shape, data_offsets}} in file order, __metadata__, byte offset of the data) of
    a safetensors file, as the safetensors library parses and validates it.

    The library checks the header (JSON, dtypes, shapes, sizes) and that the tensors lie back to back in offset
    order and fill the data exactly, so each tensor's offsets follow from the sizes before it. It does not hand out
    the offsets themselves, which a memory map needs.
    """
    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            layout = []
            for name in f.offset_keys():
                view = f.get_slice(name)
                layout.append((name, view.get_dtype(), view.get_shape()))
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except SafetensorError as e:  # its message says what is wrong; a truncated file fails "not fully covered"
        raise CheckpointError(path, f"is not a valid safetensors file (truncated or corrupt?): {e}") from e
    header = {}
    offset = 0
    for name, dtype, shape in layout:
        if dtype not in _ST_DTYPES:
            raise CheckpointError(path, f"tensor {name!r}: dtype {dtype!r} is not supported without torch "
                                        f"(supported: {', '.join(_ST_DTYPES)})")
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_ST_DTYPES[dtype]).itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return header, metadata, os.path.getsize(path) - offset


def read_safetensors(path, names: Iterable[str] | None = None, *, bf16: str = "float32") -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file (or only `names`) as numpy arrays memory-mapped from the file (bfloat16:
    see `read_weights`)."""
    _check_bf16(bf16)
    path = os.fspath(path)
    header, _, data_start = read_safetensors_header(path)
    if names is not None:
        names = list(names)
        absent = [n for n in names if n not in header]
        if absent:
            raise CheckpointError(path, f"has no tensor {', '.join(map(repr, absent))}")
        header = {n: header[n] for n in names}
    data_size = os.path.getsize(path) - data_start
    # mode "c": copy-on-write pages, so callers may write into arrays without touching the file.
    buffer = (np.memmap(path, dtype=np.uint8, mode="c", offset=data_start, shape=(data_size,)) if data_size
              else np.zeros(0, np.uint8))
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = buffer[begin:end].view(_ST_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        if entry["dtype"] == "BF16":
            array = array.view(BF16Array) if bf16 == "bits" else bfloat16_to_float32(array)
        out[name] = array
    return out


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
# tf_model.h5: the Keras 2 weights-file layout transformers-TF writes.
#   root attrs:  layer_names = [b"transformer", ...] (top-level Keras layers), backend, keras_version
#   /<layer>     attrs: weight_names = [b"<model>/<layer>/.../<w>:0", ...]; datasets at /<layer>/<weight name>
#   /top_level_model_weights  weight_names = [] (an empty float64 array, as Keras writes it)
# Keras splits a string-list attribute over `name0`, `name1`, ... when it passes HDF5's 64 KiB header limit.
H5_ATTR_LIMIT = 64512
KERAS_VERSION = "2.21.0"  # the tf-keras whose save_weights this layout reproduces (transformers-TF 4.57)


def read_tf_h5(path) -> dict[str, np.ndarray]:
    """Every weight of a Keras/transformers-TF .h5 weights file, under its full weight name."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except OSError as e:
        raise CheckpointError(path, f"is not a readable HDF5 file (truncated or corrupt): {e}") from e
    out: dict[str, np.ndarray] = {}
    try:
        with f:
            layer_names = _h5_strings(f.attrs, "layer_names")
            if layer_names is None:  # not written by Keras: take every group
                layer_names = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
            for layer in [*layer_names, "top_level_model_weights"]:
                if layer not in f:
                    if layer == "top_level_model_weights":
                        continue
                    raise CheckpointError(path, f"lists layer {layer!r} in layer_names but has no such group")
                group = f[layer]
                names = _h5_strings(group.attrs, "weight_names")
                if names is None:
                    names = _h5_dataset_paths(group)
                for name in names:
                    if name not in group:
                        raise CheckpointError(path, f"lists weight {name!r} but has no such dataset")
                    out[name] = _h5_array(group[name], path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"could not be read (truncated or corrupt HDF5): {e}") from e
    return out


def _h5_dataset_paths(group) -> list[str]:
    import h5py

    paths: list[str] = []
    group.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
    return paths


def _h5_strings(attrs, name: str) -> list[str] | None:
    if name in attrs:
        values = list(attrs[name])
    elif f"{name}0" in attrs:
        values, i = [], 0
        while f"{name}{i}" in attrs:
            values += list(attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _h5_array(dataset, path: str) -> np.ndarray:
    # A contiguous, unfiltered dataset is plain bytes at a known offset: map it instead of reading it.
    offset = dataset.id.get_offset()
    plist = dataset.id.get_create_plist()
    import h5py

    mappable = (offset is not None and dataset.size > 0 and dataset.ndim > 0 and dataset.dtype.kind in "fiub"
                and plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0)
    if not mappable:
        return dataset[()]
    nbytes = dataset.size * dataset.dtype.itemsize
    if offset + nbytes > os.path.getsize(path):
        raise CheckpointError(path, f"dataset {dataset.name!r} runs past the end of the file (truncated file)")
    return np.memmap(path, dtype=dataset.dtype, mode="c", offset=offset, shape=dataset.shape)


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
def stored_dtype(array, dtype: str | None = None) -> str:
    """The safetensors dtype code ("F32", "BF16", ...) `array` is written as once floating tensors are cast to
    `dtype` (None keeps them). Nothing is cast to find out. Raises ValueError for a dtype safetensors cannot hold."""
    if is_bfloat16(array):
        kind = "BF16"
    else:
        kind = _NP_TO_ST.get(np.dtype(array.dtype).newbyteorder("="))
        if kind is None:
            raise ValueError(f"dtype {array.dtype} cannot be stored in safetensors")
    if dtype is not None and kind in ("F64", "F32", "F16", "BF16"):
        if dtype not in _CAST_TO_ST:
            raise ValueError(f"`dtype` should be one of {', '.join(_CAST_TO_ST)}. Received: dtype={dtype!r}")
        kind = _CAST_TO_ST[dtype]
    return kind


def stored_nbytes(array, dtype: str | None = None) -> int:
    """Bytes `array` takes in a safetensors file once cast to `dtype` (see `stored_dtype`)."""
    return int(np.prod(np.shape(array), dtype=np.int64)) * np.dtype(_ST_DTYPES[stored_dtype(array, dtype)]).itemsize


def write_safetensors(state: Mapping[str, np.ndarray], path, metadata: Mapping[str, str] | None = None, *,
                      dtype: str | None = None, on_tensor: Callable[[str], None] | None = None) -> str:
    """Write `state` as one safetensors file, atomically (a reader never sees a partial file).

    Streams: the header needs only names, shapes and dtypes, so it is written first; then each tensor is read (a
    memory map pages it in), cast to `dtype` when given (floating tensors only: "float32", "float16", "bfloat16"),
    written and dropped. Peak memory stays near one tensor whatever the model's size. bfloat16 tensors are
    `dtypes.BF16Array` bits or ml_dtypes arrays. `metadata` defaults to {"format": "pt"}, which transformers
    expects. `on_tensor(name)` is called after each tensor (a progress bar).

    Why not the safetensors library's writer: it takes every tensor up front, so a cast state must sit whole in
    memory first. Writing gpt2-small cast to float16 grew peak RSS by 250 MB with it, 82 MB (the largest tensor)
    here; uncast, both wrote the same bytes in the same time with no growth (bench/bench_safetensors.py).
    """
    path = os.fspath(path)
    metadata = {"format": "pt"} if metadata is None else dict(metadata)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"`metadata` should map strings to strings. Received: metadata={metadata!r}")
    entries = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise ValueError(f"Tensor names should be strings. Received: {name!r}")
        array = np.asanyarray(value)
        try:
            kind = stored_dtype(array, dtype)
        except ValueError as e:
            raise ValueError(f"{name!r}: {e}") from e
        entries[name] = (kind, list(array.shape))
    itemsize = {kind: np.dtype(code).itemsize for kind, code in _ST_DTYPES.items()}
    # Widest dtypes first, then by name (as the safetensors library does): every tensor starts aligned.
    order = sorted(entries, key=lambda n: (-itemsize[entries[n][0]], n))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in order:
        kind, shape = entries[name]
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize[kind]
        header[name] = {"dtype": kind, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data must start 8-byte aligned
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name in order:
                f.write(_raw_bytes(cast(np.asanyarray(state[name]), dtype, name)))
                if on_tensor is not None:
                    on_tensor(name)
    return path


def _raw_bytes(array) -> memoryview:
    """The tensor's bytes as safetensors stores them: C order, little-endian (no copy when already so)."""
    data = bfloat16_bits(array) if is_bfloat16(array) else np.asarray(array)
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    return memoryview(data.reshape(-1).view(np.uint8))


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


def write_tf_h5(state: Mapping[str, np.ndarray], path, model_class_name: str, *, dtype: str | None = None,
                on_tensor: Callable[[str], None] | None = None) -> str:
    """Write hf_tf-named arrays as tf_model.h5 exactly as transformers-TF (tf-keras save_weights) lays it out.

    Names may carry any Keras model prefix or none; the file gets the one of `model_class_name` (a head key or a
    class name such as "TFGPT2LMHeadModel"). Weights are ordered as Keras orders them (state_dict order). Like
    `write_safetensors`, tensors are cast to `dtype` ("float32" or "float16") one at a time; HDF5 has no bfloat16.
    """
    if dtype == "bfloat16":
        raise ValueError("tf_model.h5 cannot hold bfloat16 (HDF5 has no such type and transformers-TF reads none). "
                         "Received: dtype='bfloat16'")
    import h5py

    head = layouts.head_of(model_class_name)
    model = layouts.KERAS_MODEL_NAMES[head]
    strip = re.compile(layouts.TABLES["hf_tf"].model_prefix)
    by_layer: dict[str, list[tuple[str, str]]] = {}  # layer -> [(name in the file, key in state)]
    for key in state.keys():  # names only: values are read one at a time below (they may be lazy)
        match = strip.match(key)
        bare = key[match.end():] if match else key
        if "/" not in bare or not bare.endswith(":0"):
            raise ValueError(f"write_tf_h5 takes hf_tf weight names like 'transformer/wte/embeddings:0'. "
                             f"Received: {key!r} (convert with layouts.from_canonical(state, 'hf_tf', ...))")
        by_layer.setdefault(bare.split("/", 1)[0], []).append((f"{model}/{bare}", key))
    layer_names = [n for n in layouts.KERAS_LAYERS[head] if n in by_layer]
    layer_names += sorted(set(by_layer) - set(layer_names))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _h5_put_strings(f.attrs, "layer_names", layer_names)
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = KERAS_VERSION.encode()
            for layer in sorted(layer_names):  # Keras creates the groups in name order
                weights = sorted(by_layer[layer], key=lambda item: _keras_order(item[0]))
                group = f.create_group(layer)
                _h5_put_strings(group.attrs, "weight_names", [name for name, _ in weights])
                for name, key in weights:
                    array = cast(np.asanyarray(state[key]), dtype, key)
                    if is_bfloat16(array):
                        raise ValueError(f"{key!r} is bfloat16, which tf_model.h5 cannot hold: pass dtype='float32'")
                    dataset = group.create_dataset(name, array.shape, dtype=array.dtype)
                    if array.shape:
                        dataset[:] = array
                    else:
                        dataset[()] = array
                    if on_tensor is not None:
                        on_tensor(key)
            f.create_group("top_level_model_weights").attrs["weight_names"] = np.asarray([])
    return os.fspath(path)


def _keras_order(name: str) -> tuple:
    canonical = layouts.canonical_name(name, "hf_tf")
    return layouts.order_key(canonical) if canonical else (1, 0, 0)


def _h5_put_strings(attrs, name: str, values: list[str]) -> None:
    encoded = [v.encode("utf-8") for v in values]
    packed = np.asarray(encoded)
    if packed.nbytes <= H5_ATTR_LIMIT:
        attrs[name] = encoded  # a list of bytes: h5py stores variable-length strings, as Keras does
        return
    chunks = 2
    while any(c.nbytes > H5_ATTR_LIMIT for c in np.array_split(packed, chunks)):
        chunks += 1
    for i, chunk in enumerate(np.array_split(packed, chunks)):
        attrs[f"{name}{i}"] = chunk
