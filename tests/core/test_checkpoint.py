"""Checkpoint files: transformers-saved checkpoints read to the exact tensors, ours load in transformers, shard
sizes, corrupt indexes and missing shards fail naming the file. (One file of each format: test_safetensors_file.py,
test_keras_h5.py.)"""

import json
import os

import numpy as np
import pytest
from checkpoint_utils import TINY, assert_same_state, hf_model, memmap_backed, numpy_state

from gpt2_core import checkpoint, layouts
from gpt2_core.checkpoint import CheckpointError, NeedsTorch
from gpt2_core.config import GPT2Config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

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


# -- sizes and shards -------------------------------------------------------------------------------------------
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


def test_shards_are_planned_in_the_written_dtype(tmp_path):
    state = {f"t{i}": np.ones(250, np.float32) for i in range(4)}  # 1000 bytes each in float32, 500 in float16
    assert len(checkpoint.save_weights(state, tmp_path / "f32", max_shard_size=1000)) == 5  # 4 shards + index
    assert len(checkpoint.save_weights(state, tmp_path / "f16", max_shard_size=1000, dtype="float16")) == 3
    index = json.loads((tmp_path / "f16" / "model.safetensors.index.json").read_text())
    assert index["metadata"] == {"total_parameters": 1000, "total_size": 2000}
    arrays, _ = checkpoint.read_weights(tmp_path / "f16")
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}
