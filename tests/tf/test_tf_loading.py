"""from_pretrained / save_pretrained: every file kind, the errors, and gpt2_tf without torch."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tf_utils import FIXTURES, assert_close, tiny_model

import gpt2_tf
from gpt2_core import checkpoint, layouts
from gpt2_core.generation import GenerationConfig

IDS = np.array([[5, 17, 42, 3, 8], [1, 2, 3, 4, 98]], np.int32)


@pytest.fixture(scope="module")
def lm():
    return tiny_model("TFGPT2LMHeadModel", seed=7)


@pytest.mark.parametrize("kwargs,files", [
    (dict(), {"config.json", "tf_model.h5"}),
    (dict(safe_serialization=True), {"config.json", "tf_model.h5", "model.safetensors"}),
    (dict(safe_serialization=True, max_shard_size="20KB"),
     {"config.json", "tf_model.h5", "model.safetensors.index.json"}),
])
def test_save_and_load_round_trip(lm, tmp_path, kwargs, files):
    lm.save_pretrained(tmp_path, **kwargs)
    assert files <= set(os.listdir(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    loaded = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)  # safetensors first, when present
    assert_close(loaded(IDS).logits, lm(IDS).logits, "logits", rtol=0)


def test_safetensors_hold_pytorch_names(lm, tmp_path):
    lm.save_pretrained(tmp_path, safe_serialization=True)
    arrays, layout = checkpoint.read_weights(checkpoint.find_weights(tmp_path))
    assert layout == "hf_pt"
    assert set(arrays) == set(layouts.expected_shapes(lm.config, "lm")) - {"lm_head.weight"}  # tied: not written
    assert arrays["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)


def test_h5_is_chosen_when_alone_and_class_comes_from_config(lm, tmp_path):
    lm.save_pretrained(tmp_path)
    model = gpt2_tf.from_pretrained(tmp_path)
    assert type(model) is gpt2_tf.TFGPT2LMHeadModel
    assert_close(model(IDS).logits, lm(IDS).logits, "logits", rtol=0)


def test_base_checkpoint_into_heads_and_back(tmp_path):
    base = tiny_model("TFGPT2Model", seed=8)
    base.save_pretrained(tmp_path, safe_serialization=True)
    arrays, _ = checkpoint.read_weights(checkpoint.find_weights(tmp_path))
    assert "h.0.ln_1.weight" in arrays  # GPT2Model files lack the `transformer.` prefix, as transformers writes
    lm = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    assert_close(lm.transformer(IDS).last_hidden_state, base(IDS).last_hidden_state, "body", rtol=0)
    seq = gpt2_tf.TFGPT2ForSequenceClassification.from_pretrained(tmp_path, num_labels=3, pad_token_id=0)
    assert seq(IDS).logits.shape == (2, 3)  # the score head the file lacks starts random


def test_wrong_shapes_are_listed(lm, tmp_path):
    lm.save_pretrained(tmp_path)
    with pytest.raises(layouts.CheckpointMismatchError, match="Wrong shape") as info:
        gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path, n_embd=64)
    assert "transformer.wte.weight" in {name for name, *_ in info.value.wrong_shape}


def test_untied_lm_head(tmp_path):
    model = tiny_model("TFGPT2LMHeadModel", seed=9, tie_word_embeddings=False)
    with pytest.raises(ValueError, match="untied"):
        model.save_pretrained(tmp_path)  # transformers-TF's h5 has no place for a separate lm_head
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert not (tmp_path / "tf_model.h5").exists()
    loaded = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    assert_close(loaded(IDS).logits, model(IDS).logits, "untied logits", rtol=0)


def test_corrupt_h5_names_the_file(lm, tmp_path):
    lm.save_pretrained(tmp_path)
    path = tmp_path / "tf_model.h5"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(checkpoint.CheckpointError, match="tf_model.h5"):
        gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)


def test_pytorch_bin_when_torch_is_installed(lm, tmp_path):
    torch = pytest.importorskip("torch")
    state = {name: torch.from_numpy(np.asarray(v.numpy())) for name, v in
             gpt2_tf.loading.state_variables(lm).items() if name != "lm_head.weight"}
    torch.save(state, tmp_path / "pytorch_model.bin")
    lm.config.save_pretrained(tmp_path)
    loaded = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    assert_close(loaded(IDS).logits, lm(IDS).logits, "logits", rtol=0)


NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import gpt2_tf

    model = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(sys.argv[1])     # model.safetensors
    print(float(model(np.array([[5, 17, 42]], np.int32)).logits.numpy().sum()))
    try:
        gpt2_tf.TFGPT2LMHeadModel.from_pretrained(sys.argv[2])         # pytorch_model.bin only
    except OSError as e:
        print("bin:", type(e).__name__, "torch" in str(e))
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
""")


def test_gpt2_tf_runs_and_loads_safetensors_without_torch(lm, tmp_path):
    lm.save_pretrained(tmp_path / "st", safe_serialization=True)
    os.remove(tmp_path / "st" / "tf_model.h5")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    lm.config.save_pretrained(tmp_path / "bin")
    out = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "st"), str(tmp_path / "bin")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    total, bin_line = out.stdout.split("\n")[:2]
    assert abs(float(total) - float(lm(IDS[:1, :3]).logits.numpy().sum())) < 1e-3
    assert bin_line == "bin: NeedsTorch True"


def test_fixture_configs_are_read(tmp_path):
    model = gpt2_tf.TFGPT2ForSequenceClassification.from_pretrained(FIXTURES / "seq_cls")
    assert model.config.num_labels == 3 and model.config.pad_token_id == 0


def test_generation_config_of_transformers_is_honoured_by_generate(lm, tmp_path):
    transformers = pytest.importorskip("transformers")
    lm.save_pretrained(tmp_path)
    saved = transformers.GenerationConfig(max_new_tokens=3, no_repeat_ngram_size=2, bos_token_id=98,
                                          eos_token_id=98, pad_token_id=98)
    saved.save_pretrained(tmp_path)  # over ours: the file as transformers writes it
    model = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    assert (model.generation_config.max_new_tokens, model.generation_config.no_repeat_ngram_size) == (3, 2)
    out = model.generate(IDS[:, :4], execution="eager")
    assert out.shape == (2, 7)
    explicit = GenerationConfig(max_new_tokens=3, no_repeat_ngram_size=2, pad_token_id=98, eos_token_id=98)
    expected = model.generate(IDS[:, :4], execution="eager", generation_config=explicit)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())


@pytest.mark.parametrize("class_name, written", [("TFGPT2LMHeadModel", True), ("TFGPT2Model", False)])
def test_save_pretrained_writes_generation_config_for_lm_heads(class_name, written, tmp_path):
    model = tiny_model(class_name)
    model.save_pretrained(tmp_path / "first")
    loaded = getattr(gpt2_tf, class_name).from_pretrained(tmp_path / "first")
    assert hasattr(loaded, "generation_config") == written
    if written:
        loaded.generation_config.do_sample = True
    loaded.save_pretrained(tmp_path / "second")
    assert (tmp_path / "second" / "generation_config.json").exists() == written
    if written:
        saved = json.loads((tmp_path / "second" / "generation_config.json").read_text())
        assert saved["do_sample"] is True and saved["eos_token_id"] == 98
