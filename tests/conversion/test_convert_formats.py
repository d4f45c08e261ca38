"""Every SRC kind -> every format: the tensors survive exactly, and transformers 5 computes the source's logits."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_utils import IDS, hf_logits, openai_to_hf, random_hf_model

from gpt2_core import checkpoint, layouts
from gpt2_convert import convert

torch = pytest.importorskip("torch")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "tf457"
FORMATS = ("safetensors", "pytorch", "tf")
WEIGHT_FILE = {"safetensors": "model.safetensors", "pytorch": "pytorch_model.bin", "tf": "tf_model.h5"}


def read_canonical(directory) -> dict[str, np.ndarray]:
    """DST's tensors under canonical names, read without the converter's code."""
    files = checkpoint.find_weights(directory)
    if files.kind.startswith("pytorch_bin"):
        arrays = {}
        for path in files.paths:
            for name, t in torch.load(path, weights_only=True).items():
                arrays[name] = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        layout = "hf_pt"
    else:
        arrays, layout = checkpoint.read_weights(files)
    return layouts.to_canonical(arrays, layout)


def assert_same_tensors(got: dict, expected: dict):
    expected = {k: v for k, v in expected.items() if k != "lm_head.weight"}  # tied: stored once, as wte
    got = {k: v for k, v in got.items() if k != "lm_head.weight"}
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------
# Sources: (directory, canonical tensors, reference input ids, reference logits, tolerance relative to max |logit|)
@pytest.fixture(scope="module")
def sources(transformers, hf_lm, openai_release, tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    directory, model, logits = hf_lm
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    out = {"safetensors": (directory, state, IDS, logits, 1e-6)}

    sharded = root / "sharded"
    model.save_pretrained(sharded, max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").exists()
    out["safetensors_sharded"] = (sharded, state, IDS, logits, 1e-6)

    binary = root / "bin"  # what transformers wrote before safetensors: config.json + a torch pickle
    binary.mkdir()
    shutil.copy(directory / "config.json", binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    out["pytorch_bin"] = (binary, state, IDS, logits, 1e-6)

    # A tf_model.h5 written by transformers-TF 4.57 itself, with the logits it computed (fixtures/tf457).
    cases = np.load(FIXTURES / "lm_head" / "cases.npz")
    files = checkpoint.find_weights(FIXTURES / "lm_head")
    tf_state = layouts.to_canonical(*checkpoint.read_weights(files))
    out["tf_h5"] = (FIXTURES / "lm_head", tf_state, cases["full.input_ids"], cases["full.logits"], 1e-5)

    release, variables = openai_release
    openai_state = {openai_to_hf(k): v.reshape(v.shape[1:]) if v.ndim == 3 else v for k, v in variables.items()}
    reference = random_hf_model(transformers)
    missing, unexpected = reference.load_state_dict({k: torch.from_numpy(v) for k, v in openai_state.items()},
                                                    strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    out["openai"] = (release, openai_state, IDS, hf_logits(reference), 1e-6)
    return out


def assert_logits(transformers, directory, ids, expected, rtol):
    model = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    got = hf_logits(model, ids)
    err, scale = np.max(np.abs(got - expected)), np.max(np.abs(expected))
    assert err <= rtol * scale, f"max |logits diff| {err:.3g} > {rtol} x {scale:.3g}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["safetensors", "safetensors_sharded", "pytorch_bin", "tf_h5", "openai"])
def test_every_source_to_every_format(sources, transformers, tmp_path, kind, fmt):
    src, state, ids, logits, rtol = sources[kind]
    result = convert(src, tmp_path / "dst", format=fmt)
    dst = tmp_path / "dst"
    assert result.weight_files == [WEIGHT_FILE[fmt]]
    assert_same_tensors(read_canonical(dst), state)
    config = json.loads((dst / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"]
    assert json.loads((dst / "generation_config.json").read_text())["eos_token_id"] == config["eos_token_id"]
    if fmt == "tf":  # transformers 5 has no TensorFlow: come back to safetensors and run that
        convert(dst, tmp_path / "back")
        assert_same_tensors(read_canonical(tmp_path / "back"), state)
        dst = tmp_path / "back"
    assert_logits(transformers, dst, ids, logits, rtol)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["back", "dst"] if fmt == "tf" else ["dst"])  # no temp


def test_openai_release_becomes_a_transformers_model(sources, openai_release, transformers, tmp_path):
    release, _ = openai_release
    convert(release, tmp_path / "dst")
    dst = tmp_path / "dst"
    config = json.loads((dst / "config.json").read_text())
    hparams = json.loads((release / "hparams.json").read_text())
    assert (config["vocab_size"], config["n_positions"], config["n_embd"], config["n_head"], config["n_layer"]) == (
        hparams["n_vocab"], hparams["n_ctx"], hparams["n_embd"], hparams["n_head"], hparams["n_layer"])
    eos = json.loads((release / "encoder.json").read_text())["<|endoftext|>"]
    assert config["bos_token_id"] == config["eos_token_id"] == eos
    # vocab.json is encoder.json, merges.txt is vocab.bpe, byte for byte
    assert (dst / "vocab.json").read_bytes() == (release / "encoder.json").read_bytes()
    assert (dst / "merges.txt").read_bytes() == (release / "vocab.bpe").read_bytes()
    # transformers reads the tokenizer, encodes like the vocab.json + merges.txt pair, and writes back the same
    # tokenizer.json (the ByteLevel decoder ignores add_prefix_space, whose value transformers sets to True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(dst)
    text = " the and in hello<|endoftext|> wörld"
    pair_only = tmp_path / "pair_only"
    pair_only.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        shutil.copy(dst / name, pair_only)
    assert tokenizer(text)["input_ids"] == transformers.AutoTokenizer.from_pretrained(pair_only)(text)["input_ids"]
    tokenizer.save_pretrained(tmp_path / "resaved")
    resaved, ours = (json.loads((d / "tokenizer.json").read_text()) for d in (tmp_path / "resaved", dst))
    for data in (resaved, ours):
        data["decoder"].pop("add_prefix_space")
    assert resaved == ours


@pytest.mark.parametrize("kind", ["base", "double_heads", "seq_cls"])
def test_other_heads_from_transformers_tf_files(transformers, tmp_path, kind):
    """The head classes keep their class and tensors; transformers 5 computes transformers-TF 4.57's outputs."""
    cases = np.load(FIXTURES / kind / "cases.npz")
    convert(FIXTURES / kind, tmp_path / "dst")
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    cls = getattr(transformers, config["architectures"][0])
    model = cls.from_pretrained(tmp_path / "dst").eval()
    case = "padded" if kind == "seq_cls" else "full"
    inputs = {k.split(".", 1)[1]: torch.as_tensor(cases[k]) for k in cases.files
              if k.startswith(case + ".") and k.split(".", 1)[1] in ("input_ids", "attention_mask", "mc_token_ids")}
    with torch.no_grad():
        out = model(**inputs)
    field = "last_hidden_state" if kind == "base" else "logits"
    expected = cases[f"{case}.{field}"]
    got = getattr(out, field).numpy()
    if f"{case}.valid" in cases.files and got.ndim == expected.ndim == 3:
        got, expected = got[cases[f"{case}.valid"]], expected[cases[f"{case}.valid"]]
    assert np.max(np.abs(got - expected)) <= 1e-5 * np.max(np.abs(expected))
    if kind == "double_heads":
        np.testing.assert_allclose(out.mc_logits.numpy(), cases["full.mc_logits"], rtol=0, atol=1e-5)
    # and back to tf_model.h5: the same names and tensors as the file transformers-TF wrote
    convert(tmp_path / "dst", tmp_path / "tf", format="tf")
    original = checkpoint.read_tf_h5(FIXTURES / kind / "tf_model.h5")
    again = checkpoint.read_tf_h5(tmp_path / "tf" / "tf_model.h5")
    assert sorted(again) == sorted(original)
    for name in original:
        np.testing.assert_array_equal(again[name], original[name], err_msg=name)


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_casts_like_torch(hf_lm, transformers, tmp_path, fmt, dtype):
    directory, model, _ = hf_lm
    result = convert(directory, tmp_path / "dst", format=fmt, dtype=dtype)
    assert result.dtype == dtype
    torch_dtype = getattr(torch, dtype)
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "dst", dtype=torch_dtype)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.to(torch_dtype)), name
    assert json.loads((tmp_path / "dst" / "config.json").read_text())["dtype"] == dtype


def test_bfloat16_source_stays_bfloat16(hf_lm, transformers, tmp_path):
    directory, model, _ = hf_lm
    convert(directory, tmp_path / "bf16", dtype="bfloat16")
    convert(tmp_path / "bf16", tmp_path / "again")  # no --dtype: keep the file's
    header, _, _ = checkpoint.read_safetensors_header(tmp_path / "again" / "model.safetensors")
    assert {entry["dtype"] for entry in header.values()} == {"BF16"}
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        tmp_path / "bf16" / "model.safetensors").read_bytes()


def test_float16_tf_h5(hf_lm, tmp_path):
    directory, model, _ = hf_lm
    convert(directory, tmp_path / "dst", format="tf", dtype="float16")
    arrays = checkpoint.read_tf_h5(tmp_path / "dst" / "tf_model.h5")
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}
    state = layouts.to_canonical(arrays, "hf_tf")
    for name, value in model.state_dict().items():
        if name != "lm_head.weight":
            np.testing.assert_array_equal(state[name], value.half().numpy(), err_msg=name)


def test_shards_and_index(hf_lm, transformers, tmp_path):
    directory, model, logits = hf_lm
    result = convert(directory, tmp_path / "dst", shard_size="40KB")
    dst = tmp_path / "dst"
    shards = [f for f in result.weight_files if f.endswith(".safetensors")]
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    for shard in shards:
        header, _, _ = checkpoint.read_safetensors_header(dst / shard)
        nbytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
        assert nbytes <= 40_000 or len(header) == 1
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(v.nbytes for k, v in model.state_dict().items()
                                                  if k != "lm_head.weight")
    assert_logits(transformers, dst, IDS, logits, 1e-6)
    result = convert(directory, tmp_path / "bins", format="pytorch", shard_size="40KB")
    assert "pytorch_model.bin.index.json" in result.weight_files
    assert_logits(transformers, tmp_path / "bins", IDS, logits, 1e-6)


def test_tokenizer_files_are_copied_and_completed(hf_lm, transformers, tmp_path):
    directory, _, _ = hf_lm
    convert(directory, tmp_path / "dst")
    dst = tmp_path / "dst"
    for name in ("vocab.json", "merges.txt"):  # copied byte for byte
        assert (dst / name).read_bytes() == (directory / name).read_bytes()
    ours = transformers.AutoTokenizer.from_pretrained(dst)
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    text = " the and in hello<|endoftext|> wörld"
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    # a transformers 5 directory has only tokenizer.json: vocab.json and merges.txt are derived from it
    only_json = tmp_path / "only_json"
    shutil.copytree(dst, only_json)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        os.remove(only_json / name)
    convert(only_json, tmp_path / "derived")
    assert json.loads((tmp_path / "derived" / "vocab.json").read_text()) == json.loads(
        (directory / "vocab.json").read_text())
    assert (tmp_path / "derived" / "merges.txt").read_text() == (directory / "merges.txt").read_text()


def test_hub_id_source_then_offline_from_the_cache(hf_lm, hub_server, monkeypatch, tmp_path):
    directory, model, _ = hf_lm
    hub_server.add("org/tiny-gpt2", directory)
    hub_server.patch(monkeypatch, tmp_path / "cache")
    convert("org/tiny-gpt2", tmp_path / "dst")
    hub_server.patch(monkeypatch, tmp_path / "cache", offline=True)
    convert("org/tiny-gpt2", tmp_path / "again", format="tf", local_files_only=True)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for dst in ("dst", "again"):
        assert_same_tensors(read_canonical(tmp_path / dst), state)
    assert (tmp_path / "dst" / "merges.txt").read_bytes() == (directory / "merges.txt").read_bytes()


def test_untied_lm_head_is_kept_and_tf_refuses_it(transformers, tmp_path):
    model = random_hf_model(transformers, tie_word_embeddings=False)
    model.save_pretrained(tmp_path / "src")
    convert(tmp_path / "src", tmp_path / "dst")
    state = read_canonical(tmp_path / "dst")
    np.testing.assert_array_equal(state["lm_head.weight"], model.lm_head.weight.detach().numpy())
    assert_logits(transformers, tmp_path / "dst", IDS, hf_logits(model), 1e-6)
    with pytest.raises(ValueError, match="cannot be written as tf.*lm_head.weight"):
        convert(tmp_path / "src", tmp_path / "tf", format="tf")
    assert not (tmp_path / "tf").exists()


def test_bfloat16_pytorch_bin_source(hf_lm, tmp_path):
    _, model, _ = hf_lm
    (tmp_path / "src").mkdir()
    model.config.to_json_file(tmp_path / "src" / "config.json")
    torch.save({k: v.bfloat16() for k, v in model.state_dict().items()}, tmp_path / "src" / "pytorch_model.bin")
    assert convert(tmp_path / "src", tmp_path / "dst").dtype == "bfloat16"
    header, _, _ = checkpoint.read_safetensors_header(tmp_path / "dst" / "model.safetensors")
    assert {entry["dtype"] for entry in header.values()} == {"BF16"}
    expected = {k: v.bfloat16().float().numpy() for k, v in model.state_dict().items()}
    assert_same_tensors(read_canonical(tmp_path / "dst"), expected)
