"""tf_model.h5: written exactly as transformers-TF writes it (every group, dataset and attribute), read back to the
same arrays, one tensor at a time, cast on the way; truncated files fail naming the file."""

import h5py
import numpy as np
import pytest
from checkpoint_utils import FIXTURES, TINY, assert_same_state, hf_model, numpy_state

from gpt2_core import checkpoint, keras_h5, layouts
from gpt2_core.checkpoint import CheckpointError
from gpt2_core.config import GPT2Config


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
    keras_h5.write_tf_h5(tf_names, out, "TF" + layouts.MODEL_CLASSES[head])
    assert describe_h5(out) == describe_h5(reference)
    ours, _ = checkpoint.read_weights(out)
    assert list(ours) == list(arrays)
    assert_same_state(ours, {k: np.asarray(v) for k, v in arrays.items()})


def test_h5_long_name_lists_are_split_like_keras(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_h5, "H5_ATTR_LIMIT", 300)
    arrays, _ = checkpoint.read_weights(FIXTURES / "lm" / "tf_model.h5")
    out = tmp_path / "tf_model.h5"
    keras_h5.write_tf_h5(arrays, out, "lm")
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

    keras_h5.write_tf_h5(Lazy(arrays), tmp_path / "tf_model.h5", "TFGPT2LMHeadModel")
    assert sorted(reads) == sorted(arrays)
    written, _ = checkpoint.read_weights(tmp_path / "tf_model.h5")
    assert_same_state(written, {k: np.asarray(v) for k, v in arrays.items()})


def test_write_tf_h5_rejects_canonical_names(tmp_path):
    with pytest.raises(ValueError, match="from_canonical"):
        keras_h5.write_tf_h5({"transformer.wte.weight": np.zeros((2, 2))}, tmp_path / "x.h5", "lm")


def test_truncated_h5(tmp_path):
    path = tmp_path / "tf_model.h5"
    data = (FIXTURES / "lm" / "tf_model.h5").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="tf_model.h5.*truncated"):
        checkpoint.read_weights(path)
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(CheckpointError, match="tf_model.h5: is not a readable HDF5 file"):
        checkpoint.read_weights(path)


def test_tf_h5_writer_casts_and_refuses_bfloat16(tmp_path):
    config = GPT2Config(**TINY)
    state = layouts.from_canonical(layouts.to_canonical(numpy_state(hf_model()), "hf_pt"), "hf_tf",
                                   model_class="lm")
    path = keras_h5.write_tf_h5(state, tmp_path / "tf_model.h5", "lm", dtype="float16")
    arrays = layouts.to_canonical(keras_h5.read_tf_h5(path), "hf_tf")
    assert set(arrays) == set(layouts.expected_shapes(config, "lm")) - {"lm_head.weight"}
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}
    with pytest.raises(ValueError, match="bfloat16"):
        keras_h5.write_tf_h5(state, tmp_path / "bf16.h5", "lm", dtype="bfloat16")
    assert not (tmp_path / "bf16.h5").exists()
