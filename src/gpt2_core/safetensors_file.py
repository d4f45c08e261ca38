"""One safetensors file <-> numpy arrays: memory-mapped reading (bfloat16 as exact float32 or as its bits) and a
streaming writer that casts one tensor at a time; atomic.

Headers are parsed and validated by the safetensors library. The data path stays ours, for what the library cannot
do in numpy (bench/bench_pt_load.py, bench/bench_safetensors.py): its numpy reader copies every tensor into memory
and has no bfloat16, and its writer needs every cast tensor in memory at once. gpt2_core.checkpoint finds the files
of a model and reads sharded checkpoints through this module.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

from .checkpoint_errors import CheckpointError
from .dtypes import BF16Array, bfloat16_bits, bfloat16_to_float32, cast, is_bfloat16
from .io_utils import atomic_path

BF16_MODES = ("float32", "bits")  # how readers hand out bfloat16 tensors: upcast, or BF16Array views


def check_bf16(bf16: str) -> None:
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
    check_bf16(bf16)
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
