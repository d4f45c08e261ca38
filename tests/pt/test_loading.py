"""Files: every format transformers writes loads to the same numbers; what we save, transformers loads."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pt_utils import TINY, assert_close, hf_model, transformers

import gpt2_pt
from gpt2_core import checkpoint, layouts

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tf457"


def ids_of(B=2, T=6, seed=5):
    return torch.randint(0, TINY["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def write_config(hf, directory):
    os.makedirs(directory, exist_ok=True)
    hf.config.save_pretrained(directory)


@pytest.mark.parametrize("class_name", ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel",
                                        "GPT2ForSequenceClassification", "GPT2ForTokenClassification",
                                        "GPT2ForQuestionAnswering"])
def test_module_level_from_pretrained_builds_the_saved_class(class_name, tmp_path):
    hf = hf_model(class_name)
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.from_pretrained(tmp_path)
    assert type(ours).__name__ == class_name and not ours.training
    ids = ids_of(1, 2, 5) if class_name == "GPT2DoubleHeadsModel" else ids_of(1, 5)
    assert_close(ours(ids)[0], hf(ids)[0])


def test_sharded_safetensors(tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert_close(gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)(ids_of()).logits, hf(ids_of()).logits)


@pytest.mark.parametrize("sharded", [False, True])
def test_pytorch_model_bin(sharded, tmp_path):
    hf = hf_model(tie_word_embeddings=False)
    write_config(hf, tmp_path)
    state = hf.state_dict()
    if sharded:
        names = list(state)
        parts = {"pytorch_model-00001-of-00002.bin": names[:10], "pytorch_model-00002-of-00002.bin": names[10:]}
        for filename, part in parts.items():
            torch.save({n: state[n] for n in part}, tmp_path / filename)
        index = {"metadata": {}, "weight_map": {n: f for f, part in parts.items() for n in part}}
        (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    else:
        torch.save(state, tmp_path / "pytorch_model.bin")
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert_close(ours(ids_of()).logits, hf(ids_of()).logits)


def test_base_checkpoint_without_prefix_and_with_mask_buffers(tmp_path):
    """GPT2Model files lack `transformer.`; older files carry attn.bias / attn.masked_bias buffers (ignored)."""
    hf = hf_model("GPT2Model")
    write_config(hf, tmp_path)
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    assert "wte.weight" in state
    state["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
    state["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    checkpoint.write_safetensors(state, tmp_path / "model.safetensors")
    base = gpt2_pt.GPT2Model.from_pretrained(tmp_path)
    assert_close(base(ids_of()).last_hidden_state, hf(ids_of()).last_hidden_state)
    lm = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)  # lm_head tied to wte when absent
    assert lm.lm_head.weight is lm.transformer.wte.weight
    assert_close(lm(ids_of()).logits, hf(ids_of()).last_hidden_state @ hf.wte.weight.T)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    hf = hf_model()
    write_config(hf, tmp_path)
    state = {k: v.numpy() for k, v in hf.state_dict().items() if k != "transformer.h.1.mlp.c_fc.bias"}
    state["transformer.h.0.attn.c_attn.weight"] = state["transformer.h.0.attn.c_attn.weight"][:, :10].copy()
    state["transformer.h.0.extra.weight"] = np.zeros(3, np.float32)
    checkpoint.write_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(layouts.CheckpointMismatchError) as info:
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    message = str(info.value)
    for name in ("transformer.h.1.mlp.c_fc.bias", "transformer.h.0.extra.weight", "transformer.h.0.attn.c_attn"):
        assert name in message


def test_other_heads_dropped_and_missing_head_initialised(tmp_path, caplog):
    """As transformers: an LM checkpoint loads into a classifier (score random, logged) and into GPT2Model."""
    hf = hf_model(tie_word_embeddings=False)
    hf.save_pretrained(tmp_path)
    with caplog.at_level("WARNING"):
        cls = gpt2_pt.GPT2ForSequenceClassification.from_pretrained(tmp_path)
    assert "score.weight" in caplog.text and "lm_head.weight" in caplog.text
    assert cls.score.weight.device.type == "cpu" and cls.score.weight.abs().sum() > 0
    base = gpt2_pt.GPT2Model.from_pretrained(tmp_path)
    assert_close(base(ids_of()).last_hidden_state, hf.transformer(ids_of()).last_hidden_state)


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_damaged_file_raises_naming_it(damage, tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-100] if damage == "truncate" else data[:8] + b"{not json" + data[17:])
    with pytest.raises(checkpoint.CheckpointError, match="model.safetensors"):
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)


def test_truncated_bin_raises_naming_it(tmp_path):
    hf = hf_model()
    write_config(hf, tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    data = (tmp_path / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="pytorch_model.bin"):
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("fixture,class_name", [("lm_head", "GPT2LMHeadModel"), ("lm_head_relu", "GPT2LMHeadModel"),
                                                ("lm_head_gelu", "GPT2LMHeadModel"), ("base", "GPT2Model"),
                                                ("double_heads", "GPT2DoubleHeadsModel"),
                                                ("seq_cls", "GPT2ForSequenceClassification")])
def test_tf_h5_written_by_transformers_tf(fixture, class_name):
    """tf_model.h5 saved by transformers-TF 4.57, and the outputs it computed (tests/fixtures/make_tf_fixtures.py)."""
    ours = getattr(gpt2_pt, class_name).from_pretrained(FIXTURES / fixture)
    cases = np.load(FIXTURES / fixture / "cases.npz")
    names = {key.split(".")[0] for key in cases}
    inputs = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "mc_token_ids", "labels")
    for case in sorted(names - {"continue"}):
        kwargs = {k: torch.from_numpy(cases[f"{case}.{k}"]).long() for k in inputs if f"{case}.{k}" in cases}
        out = ours(**kwargs, output_hidden_states=True)
        valid = torch.from_numpy(cases[f"{case}.valid"]) if f"{case}.valid" in cases else None
        for field in ("logits", "mc_logits", "loss", "last_hidden_state"):
            if f"{case}.{field}" in cases:
                got, ref = getattr(out, field), torch.from_numpy(cases[f"{case}.{field}"])
                if valid is not None and field in ("logits", "last_hidden_state") and got.dim() > 2:
                    got, ref = got[valid], ref[valid]
                if field == "loss":  # transformers-TF returns (1,) for the LM and per-example losses otherwise
                    ref = ref.mean()
                assert_close(got, ref, f"{fixture}.{case}.{field}", rtol=1e-4)
        if valid is None:
            for i, (k, v) in enumerate(out.past_key_values):
                assert_close(k, cases[f"{case}.past.{i}.key"], f"{case}.past.{i}.key", rtol=1e-4)
                assert_close(v, cases[f"{case}.past.{i}.value"], f"{case}.past.{i}.value", rtol=1e-4)
    if "continue" in names:
        past = ours(torch.from_numpy(cases["prefix.input_ids"]).long()).past_key_values
        out = ours(torch.from_numpy(cases["continue.input_ids"]).long(), past_key_values=past)
        assert_close(out.logits, cases["continue.logits"], "continue.logits", rtol=1e-4)


def test_legacy_tf_h5_names():
    (FIXTURES / "lm_head" / "legacy" / "config.json").exists() or pytest.skip("legacy fixture has no config")
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(FIXTURES / "lm_head" / "legacy")
    cases = np.load(FIXTURES / "lm_head" / "cases.npz")
    assert_close(ours(torch.from_numpy(cases["full.input_ids"]).long()).logits, cases["full.logits"], rtol=1e-4)


@pytest.mark.parametrize("class_name", ["GPT2LMHeadModel", "GPT2Model", "GPT2DoubleHeadsModel",
                                        "GPT2ForSequenceClassification"])
@pytest.mark.parametrize("max_shard_size", ["5GB", "30KB"])
def test_save_pretrained_loads_in_transformers(class_name, max_shard_size, tmp_path):
    hf = hf_model(class_name, tie_word_embeddings=class_name != "GPT2DoubleHeadsModel")
    hf.save_pretrained(tmp_path / "theirs")
    ours = getattr(gpt2_pt, class_name).from_pretrained(tmp_path / "theirs")
    ours.save_pretrained(tmp_path / "ours", max_shard_size=max_shard_size)
    files = sorted(os.listdir(tmp_path / "ours"))
    assert "config.json" in files and not [f for f in files if f.endswith(".tmp")]
    assert ("model.safetensors.index.json" in files) == (max_shard_size == "30KB")
    back = getattr(transformers, class_name).from_pretrained(tmp_path / "ours").eval()
    ids = ids_of(1, 2, 5) if class_name == "GPT2DoubleHeadsModel" else ids_of(1, 5)
    assert_close(ours(ids)[0], back(ids)[0])
    assert_close(gpt2_pt.from_pretrained(tmp_path / "ours")(ids)[0], ours(ids)[0])
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == [class_name]


@pytest.mark.parametrize("kwargs,dtype", [({"torch_dtype": torch.float16}, torch.float16),
                                          ({"dtype": "bfloat16"}, torch.bfloat16),
                                          ({"torch_dtype": "auto"}, torch.float32)])
def test_dtype(kwargs, dtype, tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path, **kwargs)
    assert {p.dtype for p in ours.parameters()} == {dtype}
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert_close(ours(ids_of()).logits.float(), hf(ids_of()).logits, rtol=3e-2)


def test_bad_from_pretrained_arguments(tmp_path):
    hf_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="torch_dtype"):
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype="int8")
    with pytest.raises(ValueError, match="colour"):
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path, colour="blue")
    with pytest.raises(OSError):
        gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path / "nowhere")


def test_loaded_safetensors_weights_are_memory_mapped(tmp_path):
    """No copy: parameters point into the file's mapping (peak memory about one file; see bench_pt_load.py)."""
    hf = hf_model()
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    wte = ours.transformer.wte.weight
    assert not wte.untyped_storage().resizable()  # torch.from_numpy over the memmap, not an owned allocation
    arrays = checkpoint.read_safetensors(tmp_path / "model.safetensors")
    assert np.array_equal(wte.detach().numpy(), arrays["transformer.wte.weight"])


def test_from_pretrained_by_hub_name_then_offline_from_the_cache(hub_server, monkeypatch, tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path / "src")
    hub_server.add("org/tiny-gpt2", tmp_path / "src")
    hub_server.patch(monkeypatch, cache_dir=tmp_path / "cache")
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained("org/tiny-gpt2", revision="main")
    assert_close(ours(ids_of()).logits, hf(ids_of()).logits)
    hub_server.stop()
    again = gpt2_pt.GPT2LMHeadModel.from_pretrained("org/tiny-gpt2", local_files_only=True)
    assert_close(again(ids_of()).logits, hf(ids_of()).logits)


# -- bfloat16 / float16 in their own dtype -----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"torch_dtype": torch.bfloat16}, {"dtype": "auto"}, {}])
def test_bfloat16_checkpoint_of_transformers_loads_bit_exactly_without_a_copy(kwargs, tmp_path):
    hf = hf_model().to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path, **kwargs)
    theirs = hf.state_dict()
    for name, value in ours.state_dict().items():
        assert value.dtype == torch.bfloat16 and torch.equal(value, theirs[name]), name
    # the parameters are the file's memory map viewed as bfloat16, not a float32 copy cast back
    assert not ours.transformer.wte.weight.untyped_storage().resizable()
    assert_close(ours(ids_of()).logits.float(), hf(ids_of()).logits.float(), rtol=3e-2)


def test_bfloat16_checkpoint_loads_upcast_on_request(tmp_path):
    hf = hf_model().to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype=torch.float32)
    assert ours.dtype == torch.float32
    assert torch.equal(ours.transformer.h[1].mlp.c_fc.weight, hf.transformer.h[1].mlp.c_fc.weight.float())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_models_save_in_their_own_dtype_and_load_in_transformers(dtype, tmp_path):
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(save_hf(hf_model(), tmp_path / "src"), torch_dtype=dtype)
    ours.save_pretrained(tmp_path / "ours")
    header, _, _ = checkpoint.read_safetensors_header(tmp_path / "ours" / "model.safetensors")
    assert {entry["dtype"] for entry in header.values()} == {"BF16" if dtype == torch.bfloat16 else "F16"}
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["dtype"] == str(dtype)[6:]
    for kwargs in ({"dtype": dtype}, {}):  # explicit, and transformers 5's default "auto"
        back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours", **kwargs).eval()
        theirs = back.state_dict()
        for name, value in ours.state_dict().items():
            assert theirs[name].dtype == dtype and torch.equal(theirs[name], value), name


def test_bfloat16_pytorch_model_bin_loads_as_bfloat16(tmp_path):
    hf = hf_model().to(torch.bfloat16)
    write_config(hf, tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours.transformer.wte.weight, hf.transformer.wte.weight)


def save_hf(hf, directory):
    hf.save_pretrained(directory)
    return directory


# -- generation_config.json --------------------------------------------------------------------------------------
def test_generation_config_of_transformers_is_honoured_by_generate(tmp_path):
    hf = hf_model()
    hf.generation_config.max_new_tokens = 3
    hf.generation_config.no_repeat_ngram_size = 2
    hf.generation_config.pad_token_id = 98
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert (ours.generation_config.max_new_tokens, ours.generation_config.no_repeat_ngram_size) == (3, 2)
    ids = ids_of(2, 4)
    expected = hf.generate(ids, attention_mask=torch.ones_like(ids))  # both use the file's settings
    assert expected.shape == (2, 7)
    assert torch.equal(ours.generate(ids), expected)


def test_sampling_default_from_generation_config(tmp_path):
    hf = hf_model()
    hf.generation_config.do_sample = True
    hf.generation_config.top_k = 1  # sampling from one token: greedy's tokens, but only if do_sample is read
    hf.generation_config.temperature = 0.5
    hf.save_pretrained(tmp_path)
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert ours.generation_config.do_sample and ours.generation_config.temperature == 0.5
    greedy = ours.generate(ids_of(1, 4), max_new_tokens=4, do_sample=False)
    assert torch.equal(ours.generate(ids_of(1, 4), max_new_tokens=4), greedy)


def test_generation_config_without_file_comes_from_the_config(tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path)
    os.remove(tmp_path / "generation_config.json")
    ours = gpt2_pt.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert (ours.generation_config.eos_token_id, ours.generation_config.max_new_tokens) == (98, None)


@pytest.mark.parametrize("class_name", ["GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2Model",
                                        "GPT2ForSequenceClassification"])
def test_save_pretrained_writes_generation_config_for_lm_heads(class_name, tmp_path):
    hf = hf_model(class_name)
    hf.save_pretrained(tmp_path / "theirs")
    ours = getattr(gpt2_pt, class_name).from_pretrained(tmp_path / "theirs")
    if hasattr(ours, "generation_config"):
        ours.generation_config.max_new_tokens = 5
    ours.save_pretrained(tmp_path / "ours")
    written = (tmp_path / "ours" / "generation_config.json").exists()
    assert written == (tmp_path / "theirs" / "generation_config.json").exists()
    assert written == (class_name in ("GPT2LMHeadModel", "GPT2DoubleHeadsModel"))
    if written:
        back = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
        assert (back.max_new_tokens, back.eos_token_id, back.bos_token_id) == (5, 98, 98)
