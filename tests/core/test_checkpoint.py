"""Checkpoint files: transformers-saved checkpoints read to the exact tensors, ours load in transformers, corrupt
files fail naming the file, and tf_model.h5 is written exactly as transformers-TF writes it."""

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpt2_core import checkpoint, layouts
from gpt2_core.checkpoint import CheckpointError, NeedsTorch
from gpt2_core.config import GPT2Config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "layouts"
TINY = dict(vocab_size=11, n_positions=6, n_embd=8, n_layer=2, n_head=2, bos_token_id=10, eos_token_id=10)


def hf_model(cls_name="GPT2LMHeadModel", seed=0, **config):
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(transformers.GPT2Config(**{**TINY, **config}))
    with torch.no_grad():  # biases start at 0 and LayerNorms at 1: randomise so every tensor is distinct
        for p in model.parameters():
            p.normal_()
    return model


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def assert_same_state(ours, theirs):
    assert list(ours) == list(theirs) or set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


def memmap_backed(array):
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


# -- transformers-saved checkpoints read to the exact tensors ----------------------------------------------------
@pytest.mark.parametrize("cls_name, head, shard", [
    ("GPT2LMHeadModel", "lm", None), ("GPT2LMHeadModel", "lm", "2KB"), ("GPT2Model", "base", None),
    ("GPT2DoubleHeadsModel", "double_heads", None), ("GPT2ForSequenceClassification", "seq_cls", "1KB")])
def test_read_transformers_checkpoint(tmp_path, cls_name, head, shard):
    model = hf_model(cls_name)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    files = checkpoint.find_weights(tmp_path)
    assert files.kind == ("safetensors_sharded" if shard else "safetensors")
    assert files.directory == str(tmp_path)
    if shard:
        assert len(files.paths) > 1 and files.index.endswith("model.safetensors.index.json")
    arrays, layout = checkpoint.read_weights(files)
    assert layout == "hf_pt"
    assert all(memmap_backed(a) for a in arrays.values())
    config = GPT2Config.from_pretrained(tmp_path)
    state = layouts.check_state(layouts.expected_shapes(config, head), layouts.to_canonical(arrays, layout))
    # transformers' own state_dict, under canonical names (GPT2Model's lack the prefix)
    expected = layouts.to_canonical(numpy_state(model), "hf_pt")
    assert_same_state(state, expected)


def test_pytorch_bin_needs_torch_and_backends_finish_it(tmp_path):
    model = hf_model()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    files = checkpoint.find_weights(tmp_path)
    assert files.kind == "pytorch_bin"
    with pytest.raises(NeedsTorch, match="pytorch_model.bin.*torch"):
        checkpoint.read_weights(files)
    arrays = checkpoint.state_from_torch_bin(
        files.paths, lambda p: torch.load(p, map_location="cpu", weights_only=True, mmap=True))
    assert_same_state(arrays, numpy_state(model))


def test_sharded_bin_with_bf16(tmp_path):
    state = hf_model().state_dict()
    names = list(state)
    half = len(names) // 2
    shards = {"pytorch_model-00001-of-00002.bin": names[:half], "pytorch_model-00002-of-00002.bin": names[half:]}
    for filename, keys in shards.items():
        torch.save({k: state[k].to(torch.bfloat16) for k in keys}, tmp_path / filename)
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    files = checkpoint.find_weights(tmp_path)
    assert files.kind == "pytorch_bin_sharded" and len(files.paths) == 2
    arrays = checkpoint.state_from_torch_bin(files.paths, lambda p: torch.load(p, weights_only=True),
                                             index=files.index)
    assert_same_state(arrays, {k: v.to(torch.bfloat16).float().numpy() for k, v in state.items()})


def test_torch_bin_errors_name_the_file(tmp_path):
    bad = tmp_path / "pytorch_model.bin"
    torch.save(hf_model().state_dict(), bad)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*could not be read by torch"):
        checkpoint.state_from_torch_bin([bad], lambda p: torch.load(p, weights_only=True))


# -- ours load in transformers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("max_shard_size", ["5GB", 3000, "1.5kB"])
def test_our_files_load_in_transformers(tmp_path, max_shard_size):
    source = hf_model()
    state = layouts.to_canonical(numpy_state(source), "hf_pt")
    del state["lm_head.weight"]  # tied: transformers leaves it out too
    written = checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class="lm"), tmp_path,
                                      max_shard_size=max_shard_size)
    source.config.save_pretrained(tmp_path)
    assert (len(written) > 1) == (max_shard_size != "5GB")
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert_same_state(numpy_state(loaded), numpy_state(source))


def test_our_base_model_loads_in_transformers(tmp_path):
    source = hf_model("GPT2Model")
    state = layouts.to_canonical(numpy_state(source), "hf_pt")
    checkpoint.save_weights(layouts.from_canonical(state, "hf_pt", model_class="GPT2Model"), tmp_path)
    source.config.save_pretrained(tmp_path)
    loaded = transformers.GPT2Model.from_pretrained(tmp_path)
    assert_same_state(numpy_state(loaded), numpy_state(source))


def test_sharded_index_has_transformers_shape(tmp_path):
    model = hf_model()
    model.save_pretrained(tmp_path / "theirs", max_shard_size="2KB")
    theirs = json.loads((tmp_path / "theirs" / "model.safetensors.index.json").read_text())
    arrays, _ = checkpoint.read_weights(checkpoint.find_weights(tmp_path / "theirs"))
    checkpoint.save_weights(arrays, tmp_path / "ours", max_shard_size="2KB")
    ours = json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())
    assert ours["metadata"] == theirs["metadata"]
    assert list(ours["weight_map"]) == list(theirs["weight_map"])  # same names, sorted alike
    shards = sorted(set(ours["weight_map"].values()))
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for shard in shards:  # every shard within the limit unless it holds one tensor bigger than it
        names = [n for n, s in ours["weight_map"].items() if s == shard]
        assert sum(arrays[n].nbytes for n in names) <= 2000 or len(names) == 1


def test_save_removes_stale_files(tmp_path):
    state = {"a": np.arange(600, dtype=np.float32), "b": np.ones((30, 20), np.float32)}
    first = checkpoint.save_weights(state, tmp_path)
    assert [os.path.basename(p) for p in first] == ["model.safetensors"]
    checkpoint.save_weights(state, tmp_path, max_shard_size=3000)
    assert sorted(os.listdir(tmp_path)) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                            "model.safetensors.index.json"]
    checkpoint.save_weights(state, tmp_path)
    assert os.listdir(tmp_path) == ["model.safetensors"]
    arrays, _ = checkpoint.read_weights(tmp_path)  # a directory works too
    assert_same_state(arrays, state)


# -- safetensors format ------------------------------------------------------------------------------------------
def test_safetensors_agree_with_the_safetensors_library(tmp_path):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(0)
    state = {"f32": rng.standard_normal((3, 5)).astype(np.float32), "f16": rng.standard_normal(7).astype(np.float16),
             "f64": rng.standard_normal(()), "i64": np.arange(5, dtype=np.int64), "i8": np.array([-3, 4], np.int8),
             "u8": np.arange(3, dtype=np.uint8), "flag": np.array([True, False, True]),
             "empty": np.zeros((0, 4), np.float32), "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
             "big_endian": np.arange(4, dtype=">i4")}
    checkpoint.write_safetensors(state, tmp_path / "ours.safetensors", metadata={"format": "pt", "note": "x"})
    theirs = load_file(tmp_path / "ours.safetensors")
    assert_same_state(theirs, {k: v.astype(v.dtype.newbyteorder("=")) for k, v in state.items()})
    _, metadata, _ = checkpoint.read_safetensors_header(tmp_path / "ours.safetensors")
    assert metadata == {"format": "pt", "note": "x"}
    clean = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")) for k, v in state.items()}
    save_file(clean, tmp_path / "theirs.safetensors")
    assert_same_state(checkpoint.read_safetensors(tmp_path / "theirs.safetensors"), clean)


def test_bf16_is_upcast_without_torch_exactly(tmp_path):
    from safetensors.torch import save_file

    values = torch.randn(4, 6).to(torch.bfloat16)
    save_file({"w": values, "v": torch.arange(3.0)}, tmp_path / "bf16.safetensors")
    arrays = checkpoint.read_safetensors(tmp_path / "bf16.safetensors")
    assert arrays["w"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], values.float().numpy())


def test_memory_mapped_arrays_are_copy_on_write(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.write_safetensors({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, path)
    before = path.read_bytes()
    arrays = checkpoint.read_safetensors(path)
    assert memmap_backed(arrays["w"])
    arrays["w"][0, 0] = 99.0
    assert path.read_bytes() == before
    assert checkpoint.read_safetensors(path)["w"][0, 0] == 0.0


def test_write_is_atomic_and_validates(tmp_path):
    path = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match="'obj'.*object"):
        checkpoint.write_safetensors({"ok": np.zeros(2), "obj": np.array([object()])}, path)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="metadata"):
        checkpoint.write_safetensors({"ok": np.zeros(2)}, path, metadata={"format": 1})


@pytest.mark.parametrize("size, expected", [(123, 123), ("5GB", 5 * 10**9), ("500MB", 500 * 10**6),
                                            ("2GiB", 2 * 2**30), ("100kB", 100_000), ("1.5 MB", 1_500_000)])
def test_parse_size(size, expected):
    assert checkpoint.parse_size(size) == expected


@pytest.mark.parametrize("size", ["5 parsecs", "", 0, -3, "0GB", True, 1.5])
def test_parse_size_rejects(size):
    with pytest.raises(ValueError, match="max_shard_size"):
        checkpoint.parse_size(size)


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
    checkpoint.write_safetensors(state, tmp_path / "m.safetensors")
    assert_same_state(checkpoint.read_safetensors(tmp_path / "m.safetensors"), state)
    header, metadata, start = checkpoint.read_safetensors_header(tmp_path / "m.safetensors")
    assert metadata == {"format": "pt"}
    raw = (tmp_path / "m.safetensors").read_bytes()
    assert json.loads(raw[8:start]) == {"__metadata__": metadata, **header}  # what the file itself says
    checkpoint.write_safetensors({}, tmp_path / "none.safetensors", metadata={})
    assert checkpoint.read_safetensors(tmp_path / "none.safetensors") == {}


def test_unsupported_dtype_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, dtype=torch.float8_e4m3fn)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="'w'.*F8_E4M3.*not supported without torch"):
        checkpoint.read_weights(tmp_path / "model.safetensors")


@pytest.fixture
def sharded(tmp_path):
    state = {f"t{i}": np.full((100,), i, np.float32) for i in range(6)}
    checkpoint.save_weights(state, tmp_path, max_shard_size=1000)
    return tmp_path


def test_missing_shard(sharded):
    files = checkpoint.find_weights(sharded)
    os.remove(sharded / "model-00002-of-00003.safetensors")
    for attempt in (lambda: checkpoint.find_weights(sharded), lambda: checkpoint.read_weights(files),
                    lambda: checkpoint.read_weights(sharded / "model.safetensors.index.json")):
        with pytest.raises(CheckpointError, match=r"index.json: lists shard 'model-00002-of-00003.safetensors'"):
            attempt()


def test_inconsistent_index(sharded):
    index_path = sharded / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["t0"] = "model-00003-of-00003.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="places 't0' in 'model-00003-of-00003.safetensors', which lacks it"):
        checkpoint.read_weights(checkpoint.find_weights(sharded))


@pytest.mark.parametrize("text, problem", [("{not json", "not valid JSON"), ('{"weight_map": [1]}', "weight_map"),
                                           ('{"weight_map": {"a": "../x.safetensors"}}', "outside")])
def test_bad_index(sharded, text, problem):
    (sharded / "model.safetensors.index.json").write_text(text)
    os.remove(sharded / "model-00001-of-00003.safetensors")
    with pytest.raises(CheckpointError, match=problem):
        checkpoint.read_weights(sharded / "model.safetensors.index.json")


def test_no_weights(tmp_path):
    GPT2Config(**TINY).save_pretrained(tmp_path)
    with pytest.raises(checkpoint.WeightsNotFoundError, match="no weights file.*model.safetensors.*tf_model.h5"):
        checkpoint.find_weights(tmp_path)


def test_find_weights_preference_and_candidates(tmp_path):
    checkpoint.save_weights({"a": np.zeros(2, np.float32)}, tmp_path)
    (tmp_path / "tf_model.h5").write_bytes(b"")
    assert checkpoint.find_weights(tmp_path).kind == "safetensors"
    assert checkpoint.find_weights(tmp_path, candidates=["tf_model.h5"]).kind == "tf_h5"


# -- tf_model.h5 -------------------------------------------------------------------------------------------------
def describe_h5(path):
    """Every group, dataset and attribute with its HDF5 type details: what 'the same layout' means."""
    def attr_type(attrs, key):
        aid = attrs.get_id(key)
        kind = aid.get_type()
        text = [type(kind).__name__, aid.shape]
        if isinstance(kind, h5py.h5t.TypeStringID):
            text += [kind.is_variable_str(), kind.get_cset()]
        value = attrs[key]
        return (*text, value.tolist() if isinstance(value, np.ndarray) else value)

    items = []

    def visit(name, obj):
        attrs = {k: attr_type(obj.attrs, k) for k in obj.attrs}
        if isinstance(obj, h5py.Dataset):
            plist = obj.id.get_create_plist()
            items.append((name, "dataset", obj.shape, str(obj.dtype), plist.get_layout(), plist.get_nfilters()))
        else:
            items.append((name, "group", attrs))

    with h5py.File(path, "r") as f:
        items.append(("/", "root", {k: attr_type(f.attrs, k) for k in f.attrs}))
        f.visititems(visit)
    return items


@pytest.mark.parametrize("head", ["base", "lm", "double_heads", "seq_cls"])
def test_write_tf_h5_reproduces_transformers_tf_file(tmp_path, head):
    reference = FIXTURES / head / "tf_model.h5"
    arrays, layout = checkpoint.read_weights(reference)
    assert layout == "hf_tf"
    with h5py.File(reference, "r") as f:  # our reader returns exactly what h5py sees
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, f[name.split("/")[1]][name][()])
    state = layouts.to_canonical(arrays, layout)
    # Shuffle and strip the prefix: the writer must restore Keras' order and the class's model name.
    tf_names = layouts.from_canonical(dict(reversed(list(state.items()))), "hf_tf", model_class="base")
    out = tmp_path / "tf_model.h5"
    checkpoint.write_tf_h5(tf_names, out, "TF" + layouts.MODEL_CLASSES[head])
    assert describe_h5(out) == describe_h5(reference)
    ours, _ = checkpoint.read_weights(out)
    assert list(ours) == list(arrays)
    assert_same_state(ours, {k: np.asarray(v) for k, v in arrays.items()})


def test_h5_long_name_lists_are_split_like_keras(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "H5_ATTR_LIMIT", 300)
    arrays, _ = checkpoint.read_weights(FIXTURES / "lm" / "tf_model.h5")
    out = tmp_path / "tf_model.h5"
    checkpoint.write_tf_h5(arrays, out, "lm")
    with h5py.File(out, "r") as f:
        assert "weight_names" not in f["transformer"].attrs and "weight_names0" in f["transformer"].attrs
    ours, _ = checkpoint.read_weights(out)
    assert list(ours) == list(arrays)


def test_write_tf_h5_reads_one_tensor_at_a_time(tmp_path):
    arrays, _ = checkpoint.read_weights(FIXTURES / "lm" / "tf_model.h5")
    reads = []

    class Lazy(dict):  # like a converter's cast-on-read mapping: values must not be gathered up front
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

        def items(self):
            raise AssertionError("write_tf_h5 should read values one at a time")

        values = items

    checkpoint.write_tf_h5(Lazy(arrays), tmp_path / "tf_model.h5", "TFGPT2LMHeadModel")
    assert sorted(reads) == sorted(arrays)
    written, _ = checkpoint.read_weights(tmp_path / "tf_model.h5")
    assert_same_state(written, {k: np.asarray(v) for k, v in arrays.items()})


def test_write_tf_h5_rejects_canonical_names(tmp_path):
    with pytest.raises(ValueError, match="from_canonical"):
        checkpoint.write_tf_h5({"transformer.wte.weight": np.zeros((2, 2))}, tmp_path / "x.h5", "lm")


def test_truncated_h5(tmp_path):
    path = tmp_path / "tf_model.h5"
    data = (FIXTURES / "lm" / "tf_model.h5").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="tf_model.h5.*truncated"):
        checkpoint.read_weights(path)
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(CheckpointError, match="tf_model.h5: is not a readable HDF5 file"):
        checkpoint.read_weights(path)


# -- one writer: streaming casts, bfloat16 in and out without torch ----------------------------------------------
def bf16_bits(tensor):
    return tensor.view(torch.int16).numpy().view(np.uint16)


def test_bfloat16_bits_round_trip_with_torch(tmp_path):
    from safetensors.torch import load_file, save_file

    from gpt2_core.dtypes import BF16Array

    values = torch.randn(5, 3).to(torch.bfloat16)
    bits = bf16_bits(values).view(BF16Array)
    checkpoint.write_safetensors({"w": bits, "v": np.arange(3, dtype=np.float32)}, tmp_path / "ours.safetensors")
    theirs = load_file(tmp_path / "ours.safetensors")
    assert theirs["w"].dtype == torch.bfloat16 and torch.equal(theirs["w"], values)
    save_file({"w": values}, tmp_path / "theirs.safetensors")
    read = checkpoint.read_safetensors(tmp_path / "theirs.safetensors", bf16="bits")["w"]
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


def test_shards_are_planned_in_the_written_dtype(tmp_path):
    state = {f"t{i}": np.ones(250, np.float32) for i in range(4)}  # 1000 bytes each in float32, 500 in float16
    assert len(checkpoint.save_weights(state, tmp_path / "f32", max_shard_size=1000)) == 5  # 4 shards + index
    assert len(checkpoint.save_weights(state, tmp_path / "f16", max_shard_size=1000, dtype="float16")) == 3
    index = json.loads((tmp_path / "f16" / "model.safetensors.index.json").read_text())
    assert index["metadata"] == {"total_parameters": 1000, "total_size": 2000}
    arrays, _ = checkpoint.read_weights(tmp_path / "f16")
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}


def test_tf_h5_writer_casts_and_refuses_bfloat16(tmp_path):
    config = GPT2Config(**TINY)
    state = layouts.from_canonical(layouts.to_canonical(numpy_state(hf_model()), "hf_pt"), "hf_tf",
                                   model_class="lm")
    path = checkpoint.write_tf_h5(state, tmp_path / "tf_model.h5", "lm", dtype="float16")
    arrays = layouts.to_canonical(checkpoint.read_tf_h5(path), "hf_tf")
    assert set(arrays) == set(layouts.expected_shapes(config, "lm")) - {"lm_head.weight"}
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}
    with pytest.raises(ValueError, match="bfloat16"):
        checkpoint.write_tf_h5(state, tmp_path / "bf16.h5", "lm", dtype="bfloat16")
    assert not (tmp_path / "bf16.h5").exists()
