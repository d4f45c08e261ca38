"""Write converted tensors one at a time: peak memory stays near one tensor (one shard for pytorch_model.bin).

safetensors is a JSON header (names, dtypes, shapes, offsets) followed by the raw bytes; every shape and output
dtype is known before any tensor is read, so we write the header first and then stream each tensor: read (from a
memory map), cast, write, drop. torch.save needs a whole shard in memory, so .bin files are written shard by shard.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Callable, Sequence

import numpy as np

from .dtypes import cast, storage

Tensors = Sequence[tuple[str, np.ndarray]]  # in file order; arrays may be memory-mapped views


def output_kind(array: np.ndarray, dtype: str | None) -> tuple[str, int]:
    """(safetensors dtype name, item size) of `array` once cast to `dtype`, without casting it."""
    kind, data = storage(cast(array.reshape(-1)[:0], dtype))  # an empty view keeps BF16Array and memmaps cheap
    return kind, data.itemsize


def output_nbytes(array: np.ndarray, dtype: str | None) -> int:
    return int(np.prod(array.shape, dtype=np.int64)) * output_kind(array, dtype)[1]


def plan_shards(tensors: Tensors, dtype: str | None, max_bytes: int) -> list[list[tuple[str, np.ndarray]]]:
    """Split `tensors` in order into shards of at most `max_bytes` (a bigger tensor gets a shard of its own)."""
    shards, current, size = [], [], 0
    for name, array in tensors:
        nbytes = output_nbytes(array, dtype)
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, array))
        size += nbytes
    if current or not shards:
        shards.append(current)
    return shards


def shard_names(stem: str, ext: str, count: int) -> list[str]:
    """model.safetensors, or model-00001-of-00003.safetensors ... as transformers names them."""
    if count == 1:
        return [f"{stem}.{ext}"]
    return [f"{stem}-{i:05d}-of-{count:05d}.{ext}" for i in range(1, count + 1)]


def write_index(path: str, shards: list[list[tuple[str, np.ndarray]]], files: list[str], dtype: str | None) -> None:
    weight_map = {name: file for shard, file in zip(shards, files) for name, _ in shard}
    total = sum(output_nbytes(array, dtype) for shard in shards for _, array in shard)
    parameters = sum(int(np.prod(array.shape, dtype=np.int64)) for shard in shards for _, array in shard)
    metadata = {"total_parameters": parameters, "total_size": total}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"metadata": metadata, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")


def write_safetensors(path: str, tensors: Tensors, *, dtype: str | None = None, metadata: dict | None = None,
                      on_tensor: Callable[[], None] = lambda: None) -> None:
    """One safetensors file written tensor by tensor (`dtype` casts floating tensors on the way)."""
    header, offset = {}, 0
    for name, array in tensors:
        kind, _ = output_kind(array, dtype)
        nbytes = output_nbytes(array, dtype)
        header[name] = {"dtype": kind, "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, array in tensors:
            _, data = storage(cast(array, dtype, name))
            f.write(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data)
            on_tensor()


def write_torch_bin(path: str, tensors: Tensors, *, dtype: str | None = None,
                    on_tensor: Callable[[], None] = lambda: None) -> None:
    """One pytorch_model.bin (a torch.save'd dict of tensors, as transformers writes it). Needs torch."""
    import torch

    state = {}
    for name, array in tensors:
        kind, data = storage(cast(array, dtype, name))
        tensor = torch.from_numpy(np.array(data, order="C"))  # a copy: the source may be a read-only memory map
        state[name] = tensor.view(torch.bfloat16) if kind == "BF16" else tensor
        on_tensor()
    torch.save(state, path)


def write_sharded(directory: str, tensors: Tensors, *, kind: str, dtype: str | None, max_bytes: int,
                  on_tensor: Callable[[], None] = lambda: None) -> list[str]:
    """model.safetensors / pytorch_model.bin, or shards + index; returns the file names written."""
    stem, ext, index = {"safetensors": ("model", "safetensors", "model.safetensors.index.json"),
                        "pytorch": ("pytorch_model", "bin", "pytorch_model.bin.index.json")}[kind]
    shards = plan_shards(tensors, dtype, max_bytes)
    files = shard_names(stem, ext, len(shards))
    for shard, file in zip(shards, files):
        path = os.path.join(directory, file)
        if kind == "safetensors":
            write_safetensors(path, shard, dtype=dtype, metadata={"format": "pt"}, on_tensor=on_tensor)
        else:
            write_torch_bin(path, shard, dtype=dtype, on_tensor=on_tensor)
    if len(shards) > 1:
        write_index(os.path.join(directory, index), shards, files, dtype)
        files.append(index)
    return files
