"""One safetensors file: agrees with the safetensors library, bfloat16 exact without torch, memory-mapped and
copy-on-write, atomic writes that cast like torch, corrupt files failing with the file's name."""

import json
import os
import re

import numpy as np
import pytest
from checkpoint_utils import assert_same_state, memmap_backed

from gpt2_core import checkpoint, safetensors_file
from gpt2_core.checkpoint import CheckpointError

torch = pytest.importorskip("torch")


# -- safetensors format ------------------------------------------------------------------------------------------
def test_safetensors_agree_with_the_safetensors_library(tmp_path):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(0)
    state = {"f32": rng.standard_normal((3, 5)).astype(np.float32), "f16": rng.standard_normal(7).astype(np.float16),
             "f64": rng.standard_normal(()), "i64": np.arange(5, dtype=np.int64), "i8": np.array([-3, 4], np.int8),
             "u8": np.arange(3, dtype=np.uint8), "flag": np.array([True, False, True]),
             "empty": np.zeros((0, 4), np.float32), "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
             "big_endian": np.arange(4, dtype=">i4")}
    safetensors_file.write_safetensors(state, tmp_path / "ours.safetensors", metadata={"format": "pt", "note": "x"})
    theirs = load_file(tmp_path / "ours.safetensors")
    assert_same_state(theirs, {k: v.astype(v.dtype.newbyteorder("=")) for k, v in state.items()})
    _, metadata, _ = safetensors_file.read_safetensors_header(tmp_path / "ours.safetensors")
    assert metadata == {"format": "pt", "note": "x"}
    clean = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")) for k, v in state.items()}
    save_file(clean, tmp_path / "theirs.safetensors")
    assert_same_state(safetensors_file.read_safetensors(tmp_path / "theirs.safetensors"), clean)


def test_bf16_is_upcast_without_torch_exactly(tmp_path):
    from safetensors.torch import save_file

    values = torch.randn(4, 6).to(torch.bfloat16)
    save_file({"w": values, "v": torch.arange(3.0)}, tmp_path / "bf16.safetensors")
    arrays = safetensors_file.read_safetensors(tmp_path / "bf16.safetensors")
    assert arrays["w"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], values.float().numpy())


def test_memory_mapped_arrays_are_copy_on_write(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors_file.write_safetensors({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, path)
    before = path.read_bytes()
    arrays = safetensors_file.read_safetensors(path)
    assert memmap_backed(arrays["w"])
    arrays["w"][0, 0] = 99.0
    assert path.read_bytes() == before
    assert safetensors_file.read_safetensors(path)["w"][0, 0] == 0.0


def test_write_is_atomic_and_validates(tmp_path):
    path = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match="'obj'.*object"):
        safetensors_file.write_safetensors({"ok": np.zeros(2), "obj": np.array([object()])}, path)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="metadata"):
        safetensors_file.write_safetensors({"ok": np.zeros(2)}, path, metadata={"format": 1})


# -- corrupt files -----------------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    state = {"a": np.arange(300, dtype=np.float32), "b": np.ones((20, 10), np.float32)}
    checkpoint.save_weights(state, tmp_path)
    return tmp_path / "model.safetensors"


def test_truncated_safetensors(saved):
    saved.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated") as info:
        checkpoint.read_weights(saved)
    assert info.value.path == str(saved) and str(saved) in str(info.value)


def test_garbled_safetensors_header(saved):
    data = bytearray(saved.read_bytes())
    data[8:18] = b"#garbage!!"  # the opening of the JSON header
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors: is not a valid safetensors file .*invalid JSON"):
        checkpoint.read_weights(saved)


def safetensors_bytes(header, data_size):
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + bytes(data_size)


F32 = {"dtype": "F32", "shape": [1]}


@pytest.mark.parametrize("content, problem", [
    (b"abc", "header too small"), (b"\xff" * 8 + b"{}", "header too large"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a": [1, 2, 3]}', "invalid JSON"),
    # the layout the offsets are derived from: back to back, sized by dtype and shape, filling the data exactly
    (safetensors_bytes({"a": {**F32, "data_offsets": [0, 4]}, "b": {**F32, "data_offsets": [8, 12]}}, 12),
     "invalid offset for tensor `b`"),
    (safetensors_bytes({"a": {**F32, "shape": [2], "data_offsets": [0, 8]}, "b": {**F32, "data_offsets": [4, 8]}}, 8),
     "invalid offset for tensor `b`"),
    (safetensors_bytes({"a": {**F32, "data_offsets": [0, 8]}}, 8), "invalid shape, data type, or offset"),
    (safetensors_bytes({"a": {**F32, "data_offsets": [0, 4]}}, 8), "not fully covered"),
])
def test_not_safetensors(tmp_path, content, problem):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"model.safetensors: .*{re.escape(problem)}") as info:
        checkpoint.read_weights(path)
    assert info.value.path == str(path)


def test_offsets_follow_the_layout_with_empty_tensors(tmp_path):
    state = {"empty": np.zeros((0, 4), np.float32), "a": np.arange(3, dtype=np.float16), "none": np.zeros(0, np.int8),
             "b": np.arange(6, dtype=np.int64).reshape(2, 3), "c": np.ones((), np.float32)}
    safetensors_file.write_safetensors(state, tmp_path / "m.safetensors")
    assert_same_state(safetensors_file.read_safetensors(tmp_path / "m.safetensors"), state)
    header, metadata, start = safetensors_file.read_safetensors_header(tmp_path / "m.safetensors")
    assert metadata == {"format": "pt"}
    raw = (tmp_path / "m.safetensors").read_bytes()
    assert json.loads(raw[8:start]) == {"__metadata__": metadata, **header}  # what the file itself says
    safetensors_file.write_safetensors({}, tmp_path / "none.safetensors", metadata={})
    assert safetensors_file.read_safetensors(tmp_path / "none.safetensors") == {}


def test_unsupported_dtype_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, dtype=torch.float8_e4m3fn)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="'w'.*F8_E4M3.*not supported without torch"):
        checkpoint.read_weights(tmp_path / "model.safetensors")


# -- one writer: streaming casts, bfloat16 in and out without torch ----------------------------------------------
def bf16_bits(tensor):
    return tensor.view(torch.int16).numpy().view(np.uint16)


def test_bfloat16_bits_round_trip_with_torch(tmp_path):
    from safetensors.torch import load_file, save_file

    from gpt2_core.dtypes import BF16Array

    values = torch.randn(5, 3).to(torch.bfloat16)
    bits = bf16_bits(values).view(BF16Array)
    safetensors_file.write_safetensors({"w": bits, "v": np.arange(3, dtype=np.float32)}, tmp_path / "ours.safetensors")
    theirs = load_file(tmp_path / "ours.safetensors")
    assert theirs["w"].dtype == torch.bfloat16 and torch.equal(theirs["w"], values)
    save_file({"w": values}, tmp_path / "theirs.safetensors")
    read = safetensors_file.read_safetensors(tmp_path / "theirs.safetensors", bf16="bits")["w"]
    assert isinstance(read, BF16Array) and memmap_backed(read)  # a view of the file: no float32 copy
    np.testing.assert_array_equal(read.view(np.uint16), bf16_bits(values))
    arrays, _ = checkpoint.read_weights(tmp_path / "theirs.safetensors")  # the default upcasts, exactly
    np.testing.assert_array_equal(arrays["w"], values.float().numpy())
    with pytest.raises(ValueError, match="bf16"):
        checkpoint.read_weights(tmp_path / "theirs.safetensors", bf16="float16")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_writer_casts_floating_tensors_like_torch(tmp_path, dtype):
    from safetensors.torch import load_file

    rng = np.random.default_rng(1)
    state = {"w": rng.standard_normal((6, 4)).astype(np.float32), "d": rng.standard_normal(5),
             "i": np.arange(4, dtype=np.int64)}
    seen = []
    written = checkpoint.save_weights(state, tmp_path, dtype=dtype, on_tensor=seen.append)
    assert sorted(seen) == sorted(state) and len(written) == 1
    theirs = load_file(tmp_path / "model.safetensors")
    torch_dtype = getattr(torch, dtype)
    for name in ("w", "d"):
        assert torch.equal(theirs[name], torch.from_numpy(state[name]).to(torch_dtype)), name
    assert theirs["i"].dtype == torch.int64  # integers are never cast
