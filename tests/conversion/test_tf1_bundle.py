"""Our TF1 checkpoint reader against TensorFlow's own (tf.train.load_checkpoint), bit for bit."""

import os
import shutil

import numpy as np
import pytest
from convert_utils import openai_variables, save_tf1_checkpoint

from gpt2_core.checkpoint import CheckpointError
from gpt2_convert.tf1_bundle import TF1Bundle

tf = pytest.importorskip("tensorflow")


def odd_variables():
    """Every dtype and shape corner the reader handles, plus enough long names to need two index data blocks."""
    rng = np.random.default_rng(7)
    variables = {
        "odd/half": rng.standard_normal((3, 5)).astype(np.float16),
        "odd/double": rng.standard_normal((4,)),
        "odd/int64": np.arange(-3, 6, dtype=np.int64),
        "odd/int32": np.arange(12, dtype=np.int32).reshape(2, 2, 3),
        "odd/uint8": np.arange(250, 256, dtype=np.uint8),
        "odd/flag": np.array([True, False, True]),
        "odd/scalar": np.float32(3.25),
        "odd/empty": np.zeros((0, 4), np.float32),
    }
    # TensorFlow's table writer starts a new block every 256 KiB of index: 130 names of ~2 KB pass it.
    for i in range(130):
        name = "long/" + "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz_"), 2000)) + f"/{i}"
        variables[name] = np.full((2,), i, np.float32)
    return variables


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    variables = {**openai_variables(), **odd_variables()}
    variables["odd/bf16"] = None  # filled below: bfloat16 needs a TensorFlow constant
    prefix = str(tmp_path_factory.mktemp("tf1") / "model.ckpt")
    values = {k: v for k, v in variables.items() if v is not None}
    save_with_bf16(values, prefix)
    return prefix, values


def save_with_bf16(values, prefix):
    values["odd/bf16"] = tf.constant([1.5, -2.25, 3.0e38, 1e-40], dtype=tf.bfloat16).numpy()
    save_tf1_checkpoint(values, prefix)


def test_reads_every_tensor_like_tensorflow(bundle):
    prefix, values = bundle
    ours = TF1Bundle(prefix)
    theirs = tf.train.load_checkpoint(prefix)
    assert set(ours.keys()) == set(theirs.get_variable_to_shape_map()) == set(values)
    for name in values:
        expected = theirs.get_tensor(name)
        got = ours.get_tensor(name)
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), name
    assert ours.shapes()["model/h0/attn/c_attn/w"] == (1, 32, 96)


def test_gpt2_variables_equal_what_was_saved(bundle):
    prefix, values = bundle
    ours = TF1Bundle(prefix)
    for name, value in openai_variables().items():
        np.testing.assert_array_equal(ours.get_tensor(name), value)


def copy_bundle(prefix, directory):
    os.makedirs(directory, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(prefix + suffix, os.path.join(directory, "model.ckpt" + suffix))
    return os.path.join(directory, "model.ckpt")


def test_truncated_data_file_names_the_file(bundle, tmp_path):
    copy = copy_bundle(bundle[0], tmp_path)
    data = copy + ".data-00000-of-00001"
    os.truncate(data, os.path.getsize(data) // 2)
    reader = TF1Bundle(copy)  # the index is intact
    with pytest.raises(CheckpointError, match="truncated") as info:
        for name in reader.keys():
            reader.get_tensor(name)
    assert data in str(info.value)


def test_truncated_or_foreign_index_names_the_file(bundle, tmp_path):
    copy = copy_bundle(bundle[0], tmp_path)
    os.truncate(copy + ".index", 100)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index") as info:
        TF1Bundle(copy)
    assert copy + ".index" in str(info.value)
    with open(copy + ".index", "wb") as f:
        f.write(b"\x00" * 4096)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        TF1Bundle(copy)


def test_missing_data_file(bundle, tmp_path):
    copy = copy_bundle(bundle[0], tmp_path)
    os.remove(copy + ".data-00000-of-00001")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint data"):
        TF1Bundle(copy).get_tensor("model/wte")
