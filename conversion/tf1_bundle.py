"""Read a TensorFlow 1 checkpoint (the "V2" tensor bundle OpenAI's GPT-2 release ships) with numpy alone.

A bundle is `PREFIX.index` plus `PREFIX.data-0000K-of-0000N`. The index is a LevelDB-style table (footer, index
block, data blocks of prefix-compressed keys) mapping each tensor name to a BundleEntryProto: dtype, shape, shard,
offset and size of the raw little-endian bytes in a data file. Reading it needs ~40 lines of protobuf and table
decoding, so converting OpenAI's release needs no TensorFlow; tensors come back memory-mapped.

    >>> reader = TF1Bundle("models/124M/model.ckpt")
    >>> reader.shapes()["model/h0/attn/c_attn/w"]
    (1, 768, 2304)

What TensorFlow's writer never produces for plain variables (compressed blocks, partitioned variables) raises
`UnsupportedBundleError`, so the caller can fall back to `tf.train.load_checkpoint`.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from gpt2_core.checkpoint import CheckpointError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32 of the block
# TensorFlow's DataType enum values -> numpy dtypes (bfloat16 = 14 is added below when ml_dtypes is installed).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
try:
    import ml_dtypes

    _DTYPES[14] = ml_dtypes.bfloat16
except ImportError:  # a torch-only install: bfloat16 bundles then need TensorFlow's reader
    pass


class UnsupportedBundleError(CheckpointError):
    """A valid bundle using a feature this reader leaves to TensorFlow (compression, partitioned variables)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(message: bytes):
    """Yield (field number, value) of a protobuf message; varints as int, length-delimited fields as bytes."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = message[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(message, pos)
            value, pos = message[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = message[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield number, value


class TF1Bundle:
    """The tensors of one TF1 checkpoint, by their variable names (`model/h0/attn/c_attn/w`, ...)."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = os.fspath(prefix)
        self.index_path = self.prefix + ".index"
        try:
            with open(self.index_path, "rb") as f:
                table = f.read()
        except OSError as e:
            raise CheckpointError(self.index_path, f"cannot read the checkpoint index ({e.strerror})") from e
        try:
            entries = dict(self._table_entries(table))
            header = dict(_fields(entries.pop(b"")))
            self.num_shards = header.get(1, 1)
            self._byteorder = ">" if header.get(2, 0) == 1 else "<"
            self._entries = {key.decode("utf-8"): self._parse_entry(value) for key, value in entries.items()}
        except UnsupportedBundleError:
            raise
        except (IndexError, KeyError, ValueError, struct.error, UnicodeDecodeError) as e:
            raise CheckpointError(self.index_path, f"not a TensorFlow checkpoint index, or truncated ({e})") from e
        self._maps: dict[int, np.memmap] = {}

    # -- the table: footer -> index block -> data blocks -> (key, value)
    def _table_entries(self, table: bytes):
        if len(table) < _FOOTER_SIZE or struct.unpack("<Q", table[-8:])[0] != _TABLE_MAGIC:
            raise ValueError("bad table magic number")
        footer = table[-_FOOTER_SIZE:]
        _, pos = _varint(footer, 0)  # the metaindex handle: TensorFlow writes an empty one
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, _ = _varint(footer, pos)
        for _, handle in self._block_entries(table, index_offset, index_size):
            offset, pos = _varint(handle, 0)
            size, _ = _varint(handle, pos)
            yield from self._block_entries(table, offset, size)

    def _block_entries(self, table: bytes, offset: int, size: int):
        if offset + size + _BLOCK_TRAILER_SIZE > len(table):
            raise ValueError(f"block at {offset} runs past the end of the file")
        if table[offset + size] != 0:
            raise UnsupportedBundleError(self.index_path, "compressed table blocks are not supported here")
        block = table[offset:offset + size]
        num_restarts = struct.unpack("<I", block[-4:])[0]
        end = len(block) - 4 - 4 * num_restarts
        pos, key = 0, b""
        while pos < end:
            shared, pos = _varint(block, pos)
            non_shared, pos = _varint(block, pos)
            value_size, pos = _varint(block, pos)
            key = key[:shared] + block[pos:pos + non_shared]
            pos += non_shared
            yield key, block[pos:pos + value_size]
            pos += value_size

    def _parse_entry(self, message: bytes) -> dict:
        entry = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0}
        for number, value in _fields(message):
            if number == 1:
                entry["dtype"] = value
            elif number == 2:
                entry["shape"] = tuple(dict(_fields(dim)).get(1, 0) for n, dim in _fields(value) if n == 2)
            elif number in (3, 4, 5):
                entry[{3: "shard", 4: "offset", 5: "size"}[number]] = value
            elif number == 7:
                raise UnsupportedBundleError(self.index_path, "partitioned variables are not supported here")
        return entry

    # -- tensors
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry["shape"] for name, entry in self._entries.items()}

    def keys(self) -> list[str]:
        return list(self._entries)

    def data_path(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor `name`, memory-mapped from its data file (read-only)."""
        entry = self._entries[name]
        if entry["dtype"] not in _DTYPES:
            hint = " (bfloat16 needs the ml_dtypes package)" if entry["dtype"] == 14 else ""
            raise UnsupportedBundleError(self.index_path, f"tensor {name!r} has TensorFlow dtype {entry['dtype']}, "
                                                          f"which this reader does not handle{hint}")
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder(self._byteorder)
        count = int(np.prod(entry["shape"], dtype=np.int64))
        path = self.data_path(entry["shard"])
        if count * dtype.itemsize != entry["size"]:
            raise CheckpointError(self.index_path, f"tensor {name!r} of shape {entry['shape']} and dtype {dtype} "
                                                   f"should take {count * dtype.itemsize} bytes, the index says "
                                                   f"{entry['size']}")
        data = self._map(entry["shard"])
        if entry["offset"] + entry["size"] > data.size:
            raise CheckpointError(path, f"truncated: tensor {name!r} ends at byte {entry['offset'] + entry['size']}, "
                                        f"the file has {data.size}")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=entry["offset"]).reshape(entry["shape"])
        return array if self._byteorder == "<" else array.astype(dtype.newbyteorder("<"))

    def _map(self, shard: int) -> np.memmap:
        if shard not in self._maps:
            path = self.data_path(shard)
            try:
                size = os.path.getsize(path)
                self._maps[shard] = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
            except OSError as e:
                raise CheckpointError(path, f"cannot read the checkpoint data ({e.strerror})") from e
        return self._maps[shard]
