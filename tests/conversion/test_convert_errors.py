"""Failures leave nothing behind: no DST, no temp directory; errors name the file and the problem."""

import errno
import json
import os
import shutil

import numpy as np
import pytest
from convert_utils import openai_variables, write_openai_release

from gpt2_core import checkpoint
from gpt2_core.checkpoint import CheckpointError
from gpt2_core.layouts import CheckpointMismatchError
from gpt2_convert import convert
from gpt2_convert.cli import one_line


def entries(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def src(hf_lm, tmp_path):
    """A private copy of the transformers source, safe to damage."""
    copy = tmp_path / "src"
    shutil.copytree(hf_lm[0], copy)
    return copy


def test_existing_dst_is_refused_without_force(src, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        convert(src, dst)
    assert entries(dst) == ["keep.txt"]
    convert(src, dst, force=True)
    assert "keep.txt" not in entries(dst) and "model.safetensors" in entries(dst)
    assert entries(tmp_path) == ["dst", "src"]  # the old DST moved aside and deleted, no temp left


def test_truncated_source_leaves_no_dst(src, tmp_path):
    path = src / "model.safetensors"
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(CheckpointError, match="truncated") as info:
        convert(src, tmp_path / "out" / "dst")
    assert str(path) in one_line(info.value)
    assert not (tmp_path / "out").exists() or entries(tmp_path / "out") == []


def test_disk_full_while_writing_leaves_no_dst(src, tmp_path, monkeypatch):
    def full(state, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "write_safetensors", full)
    out = tmp_path / "out"
    with pytest.raises(OSError) as info:
        convert(src, out / "new" / "dst")
    message = one_line(info.value)
    assert "No space left on device" in message and str(out) in message
    assert entries(tmp_path) == ["src"]  # the folders made for DST are gone too


def test_interrupt_leaves_no_dst(src, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "write_safetensors", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        convert(src, out / "dst")
    assert entries(out) == []


def test_dst_inside_src_is_refused(src):
    with pytest.raises(ValueError, match="outside SRC"):
        convert(src, src / "converted")
    with pytest.raises(ValueError, match="outside SRC"):
        convert(src, src, force=True)
    assert (src / "model.safetensors").exists()


def test_option_errors(src, tmp_path):
    with pytest.raises(ValueError, match="bfloat16"):
        convert(src, tmp_path / "dst", format="tf", dtype="bfloat16")
    with pytest.raises(ValueError, match="shard_size"):
        convert(src, tmp_path / "dst", shard_size="lots")
    with pytest.raises(ValueError, match="format"):
        convert(src, tmp_path / "dst", format="onnx")
    assert entries(tmp_path) == ["src"]


@pytest.mark.parametrize("hparams, problem", [
    ({"n_vocab": 264, "n_ctx": 16, "n_embd": 32, "n_head": 4}, "`n_layer` should be a positive integer"),
    ({"n_vocab": 264, "n_ctx": 16, "n_embd": 32, "n_head": 5, "n_layer": 2}, "`n_embd` should be divisible"),
    ({"n_vocab": 264, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 3}, "Missing"),   # the checkpoint has 2
    ({"n_vocab": 300, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}, "Wrong shape"),
])
def test_bad_hparams(openai_release, tmp_path, hparams, problem):
    release = tmp_path / "release"
    shutil.copytree(openai_release[0], release)
    (release / "hparams.json").write_text(json.dumps(hparams))
    with pytest.raises(ValueError, match=problem) as info:
        convert(release, tmp_path / "dst")
    assert isinstance(info.value, CheckpointMismatchError) == (problem in ("Missing", "Wrong shape"))
    assert "hparams.json" in str(info.value) or "model.ckpt.index" in str(info.value)
    assert entries(tmp_path) == ["release"]


def test_openai_checkpoint_with_training_state(tmp_path):
    """Adam slots and global_step saved beside the model are not model weights: they are skipped."""
    variables = openai_variables()
    variables.update({name + "/Adam": value for name, value in list(variables.items())[:3]})
    variables["global_step"] = np.array(7, np.int64)
    write_openai_release(tmp_path / "release", variables=variables)
    result = convert(tmp_path / "release", tmp_path / "dst")
    assert result.num_parameters == sum(v.size for k, v in openai_variables().items())


def test_truncated_openai_data_leaves_no_dst(openai_release, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(openai_release[0], release)
    data = release / "model.ckpt.data-00000-of-00001"
    os.truncate(data, 1000)
    with pytest.raises(CheckpointError) as info:
        convert(release, tmp_path / "dst")
    assert one_line(info.value).startswith(str(data) + ": truncated")
    assert entries(tmp_path) == ["release"]
