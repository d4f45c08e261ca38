"""GPT2Config against transformers' GPT2Config: same fields, same defaults, config.json read both ways."""

import dataclasses
import json

import pytest

from gpt2_core import GPT2Config
from known_sizes import PARAMETER_COUNTS  # tests/core is on sys.path (tests/conftest.py)
from gpt2_core.config import PRESETS

transformers = pytest.importorskip("transformers")

FIELDS = [f.name for f in dataclasses.fields(GPT2Config) if f.name not in ("extra", "architectures")]


def assert_same_fields(ours, theirs):
    for name in FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    for alias in ("hidden_size", "num_attention_heads", "num_hidden_layers", "max_position_embeddings"):
        assert getattr(ours, alias) == getattr(theirs, alias), alias


def test_defaults_equal_transformers():
    assert_same_fields(GPT2Config(), transformers.GPT2Config())


VARIANTS = [
    {},
    {"n_embd": 64, "n_head": 4, "n_layer": 3, "n_inner": 100, "activation_function": "relu"},
    {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True, "scale_attn_weights": False},
    {"num_labels": 5, "pad_token_id": 0, "problem_type": "multi_label_classification"},
    {"id2label": {0: "neg", 1: "neu", 2: "pos"}, "label2id": {"neg": 0, "neu": 1, "pos": 2}},
    {"tie_word_embeddings": False, "summary_type": "mean", "summary_activation": "tanh", "summary_use_proj": False},
    {"bos_token_id": None, "eos_token_id": 7, "layer_norm_epsilon": 1e-6, "resid_pdrop": 0.0},
]


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_transformers_config_json_reads_exactly(tmp_path, kwargs):
    theirs = transformers.GPT2Config(**kwargs)
    theirs.save_pretrained(tmp_path)
    assert_same_fields(GPT2Config.from_pretrained(tmp_path), theirs)


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_our_config_json_reads_exactly_in_transformers(tmp_path, kwargs):
    ours = GPT2Config(**kwargs)
    ours.save_pretrained(tmp_path)
    assert_same_fields(ours, transformers.GPT2Config.from_pretrained(tmp_path))
    assert_same_fields(GPT2Config.from_pretrained(tmp_path), ours)


def test_unknown_keys_survive_round_trip(tmp_path):
    data = GPT2Config().to_dict()
    data["n_ctx"] = 1024
    data["task_specific_params"] = {"text-generation": {"do_sample": True, "max_length": 50}}
    data["my_custom_field"] = [1, 2, 3]
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = GPT2Config.from_pretrained(tmp_path)
    assert config.extra["my_custom_field"] == [1, 2, 3]
    out = tmp_path / "out"
    config.save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())
    for key in ("n_ctx", "task_specific_params", "my_custom_field"):
        assert saved[key] == data[key]
    assert transformers.GPT2Config.from_pretrained(out).my_custom_field == [1, 2, 3]


def test_overrides_in_from_pretrained(tmp_path):
    GPT2Config(n_layer=3).save_pretrained(tmp_path)
    assert GPT2Config.from_pretrained(tmp_path, n_layer=5).n_layer == 5


@pytest.mark.parametrize("name", list(PRESETS) + ["openai-community/gpt2", "openai-community/gpt2-xl",
                                                  "distilbert/distilgpt2"])
def test_presets_offline(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = GPT2Config.from_pretrained(name, cache_dir=tmp_path)
    short = name.split("/")[-1]
    assert config.num_parameters() == PARAMETER_COUNTS[short]
    assert config.extra["n_ctx"] == 1024 and config.architectures == ["GPT2LMHeadModel"]


def test_preset_shapes():
    shapes = {name: (c.n_embd, c.n_layer, c.n_head) for name in PRESETS for c in [GPT2Config.from_pretrained(name)]}
    assert shapes == {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20),
                      "gpt2-xl": (1600, 48, 25), "distilgpt2": (768, 6, 12)}


def test_num_parameters_equals_transformers_meta_model():
    torch = pytest.importorskip("torch")
    for kwargs in VARIANTS[:3]:
        with torch.device("meta"):
            model = transformers.GPT2Model(transformers.GPT2Config(**kwargs))
        assert GPT2Config(**kwargs).num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kwargs, field", [
    ({"n_embd": 100, "n_head": 3}, "n_embd"),
    ({"n_layer": 0}, "n_layer"),
    ({"vocab_size": -1}, "vocab_size"),
    ({"n_head": 2.5}, "n_head"),
    ({"n_inner": 0}, "n_inner"),
    ({"activation_function": "gelu_nope"}, "activation_function"),
    ({"attn_pdrop": 1.5}, "attn_pdrop"),
    ({"resid_pdrop": -0.1}, "resid_pdrop"),
    ({"layer_norm_epsilon": 0}, "layer_norm_epsilon"),
    ({"summary_type": "max"}, "summary_type"),
    ({"problem_type": "ranking"}, "problem_type"),
    ({"eos_token_id": -3}, "eos_token_id"),
])
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GPT2Config(**kwargs)


def test_bad_config_files(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        GPT2Config.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="bert"):
        GPT2Config.from_pretrained(tmp_path)


def test_unknown_name_offline_raises_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="no-such-org/no-such-model"):
        GPT2Config.from_pretrained("no-such-org/no-such-model", cache_dir=tmp_path)
    with pytest.raises(OSError, match="not a directory"):
        GPT2Config.from_pretrained(str(tmp_path / "missing" / "dir"))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    GPT2Config().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
