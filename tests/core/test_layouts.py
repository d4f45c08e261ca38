"""The weight-name tables: round trips, the names and transforms of each layout against the real TF h5 names,
and check_state / fit_to_head. (The parameters themselves: test_parameters.py.)"""

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core import checkpoint, layouts
from gpt2_core.config import GPT2Config
from gpt2_core.layouts import CheckpointMismatchError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "layouts"
TF_HEADS = ("base", "lm", "double_heads", "seq_cls")  # the classes transformers-TF has
TINY = dict(vocab_size=11, n_positions=6, n_embd=8, n_layer=2, n_head=2)


def random_state(config, head, seed=0, *, tie=True):
    rng = np.random.default_rng(seed)
    state = {name: rng.standard_normal(shape).astype(np.float32)
             for name, shape in layouts.expected_shapes(config, head).items()}
    if tie and "lm_head.weight" in state:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


# -- round trips -------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(head=st.sampled_from(layouts.HEADS), layout=st.sampled_from(layouts.LAYOUTS),
       n_layer=st.integers(1, 3), n_head=st.integers(1, 3), head_dim=st.integers(1, 3),
       vocab=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_round_trip_is_bit_exact(head, layout, n_layer, n_head, head_dim, vocab, seed):
    if layout == "openai_tf1" and head not in ("base", "lm"):
        return  # OpenAI's checkpoints have no classification heads (tested below)
    config = GPT2Config(vocab_size=vocab, n_positions=4, n_embd=n_head * head_dim, n_layer=n_layer, n_head=n_head,
                        num_labels=2)
    state = random_state(config, head, seed)
    theirs = layouts.from_canonical(state, layout, model_class=head)
    back = layouts.to_canonical(theirs, layout)
    back = layouts.check_state(layouts.expected_shapes(config, head), back)
    assert list(back) == list(state)
    for name in state:
        assert back[name].dtype == state[name].dtype
        np.testing.assert_array_equal(back[name], state[name], err_msg=name)


def test_round_trip_untied_lm_head_in_hf_pt():
    config = GPT2Config(**TINY, tie_word_embeddings=False)
    state = random_state(config, "lm", tie=False)
    back = layouts.to_canonical(layouts.from_canonical(state, "hf_pt"), "hf_pt")
    assert all(np.array_equal(back[k], state[k]) for k in state) and set(back) == set(state)


def test_layouts_without_an_lm_head_refuse_an_untied_one():
    config = GPT2Config(**TINY)
    state = random_state(config, "lm", tie=False)
    for layout in ("hf_tf", "openai_tf1"):
        with pytest.raises(ValueError, match="lm_head.weight.*tied.*differs"):
            layouts.from_canonical(state, layout, model_class="lm")


def test_openai_tf1_cannot_store_heads():
    state = random_state(GPT2Config(**TINY, num_labels=3), "seq_cls")
    with pytest.raises(ValueError, match="'score.weight' has no name in layout 'openai_tf1'"):
        layouts.from_canonical(state, "openai_tf1")


# -- the names and transforms of each layout ---------------------------------------------------------------------
def test_hf_pt_base_names_and_buffers():
    config = GPT2Config(**TINY)
    state = random_state(config, "base")
    pt = layouts.from_canonical(state, "hf_pt", model_class="GPT2Model")
    assert "h.0.attn.c_attn.weight" in pt and "wte.weight" in pt and not any(k.startswith("transformer.") for k in pt)
    # Hub checkpoints carry causal-mask buffers; they are dropped, with or without the prefix.
    pt["h.0.attn.bias"] = np.tril(np.ones((1, 1, 6, 6), bool))
    pt["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    pt["transformer.h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    back = layouts.to_canonical(pt, "hf_pt")
    assert set(back) == set(state)
    assert back["transformer.h.1.attn.c_attn.bias"] is pt["h.1.attn.c_attn.bias"]  # no copy: mmaps stay mmaps


def test_infer_head_from_tensors():
    config = GPT2Config(**TINY, num_labels=3)
    for head in layouts.HEADS:
        assert layouts.infer_head(random_state(config, head)) == head
    pt = layouts.from_canonical(random_state(config, "base"), "hf_pt")  # no model_class: inferred "base"
    assert "wte.weight" in pt


def test_openai_tf1_names_and_shapes():
    config = GPT2Config(**TINY)
    state = random_state(config, "lm")
    tf1 = layouts.from_canonical(state, "openai_tf1")
    assert "lm_head.weight" not in str(list(tf1))
    assert tf1["model/h1/attn/c_attn/w"].shape == (1, 8, 24)
    np.testing.assert_array_equal(tf1["model/h1/attn/c_attn/w"][0], state["transformer.h.1.attn.c_attn.weight"])
    np.testing.assert_array_equal(tf1["model/h0/mlp/c_proj/b"], state["transformer.h.0.mlp.c_proj.bias"])
    np.testing.assert_array_equal(tf1["model/h0/ln_1/g"], state["transformer.h.0.ln_1.weight"])
    np.testing.assert_array_equal(tf1["model/ln_f/b"], state["transformer.ln_f.bias"])
    assert set(tf1) >= {"model/wte", "model/wpe", "model/h0/ln_2/b", "model/h1/mlp/c_fc/w"}
    assert len(tf1) == len(state) - 1


def test_hf_tf_transforms():
    config = GPT2Config(**TINY, num_labels=3)
    state = random_state(config, "seq_cls")
    tf = layouts.from_canonical(state, "hf_tf", model_class="TFGPT2ForSequenceClassification")
    prefix = "tfgpt2_for_sequence_classification/"
    np.testing.assert_array_equal(tf[prefix + "score/kernel:0"], state["score.weight"].T)  # Dense: (in, out)
    np.testing.assert_array_equal(tf[prefix + "transformer/h_._1/attn/c_attn/weight:0"],
                                  state["transformer.h.1.attn.c_attn.weight"])  # TFConv1D keeps (in, out)
    assert tf[prefix + "transformer/h_._1/attn/c_attn/bias:0"].shape == (1, 24)  # TFConv1D bias: (1, out)
    np.testing.assert_array_equal(tf[prefix + "transformer/ln_f/gamma:0"], state["transformer.ln_f.weight"])


def test_hf_tf_cross_attention_names():
    # as TFGPT2Model(add_cross_attention=True) names them (transformers-TF 4.57)
    config = GPT2Config(**TINY, add_cross_attention=True)
    tf = layouts.from_canonical(random_state(config, "base"), "hf_tf", model_class="base")
    block = [k.removeprefix("tfgpt2_model/transformer/h_._0/") for k in tf if "/h_._0/" in k]
    assert block == ["ln_1/gamma:0", "ln_1/beta:0", "attn/c_attn/weight:0", "attn/c_attn/bias:0",
                     "attn/c_proj/weight:0", "attn/c_proj/bias:0", "ln_2/gamma:0", "ln_2/beta:0",
                     "crossattention/c_attn/weight:0", "crossattention/c_attn/bias:0",
                     "crossattention/q_attn/weight:0", "crossattention/q_attn/bias:0",
                     "crossattention/c_proj/weight:0", "crossattention/c_proj/bias:0",
                     "ln_cross_attn/gamma:0", "ln_cross_attn/beta:0", "mlp/c_fc/weight:0", "mlp/c_fc/bias:0",
                     "mlp/c_proj/weight:0", "mlp/c_proj/bias:0"]
    assert tf["tfgpt2_model/transformer/h_._0/crossattention/c_attn/bias:0"].shape == (1, 16)


def test_hf_tf_legacy_names_read():
    config = GPT2Config(**TINY)
    state = random_state(config, "lm")
    tf = layouts.from_canonical(state, "hf_tf", model_class="lm")
    # transformers-TF before Keras Embedding layers: `tfgp_t2lm_head_model/` and TFSharedEmbeddings' `weight:0`.
    legacy = {k.replace("tfgpt2lm_head_model/", "tfgp_t2lm_head_model/").replace("wte/embeddings:0", "wte/weight:0"): v
              for k, v in tf.items()}
    assert "tfgp_t2lm_head_model/transformer/wte/weight:0" in legacy
    back = layouts.check_state(layouts.expected_shapes(config, "lm"), layouts.to_canonical(legacy, "hf_tf"))
    assert all(np.array_equal(back[k], state[k]) for k in state)


def test_alias_twice_is_an_error():
    arrays = {"m/transformer/wte/weight:0": np.zeros((3, 2)), "tfgpt2_model/transformer/wte/embeddings:0":
              np.zeros((3, 2))}
    with pytest.raises(CheckpointMismatchError, match="both map to 'transformer.wte.weight'"):
        layouts.to_canonical({"tfgpt2_model/transformer/wte/weight:0": np.zeros((3, 2)),
                              "tfgpt2_model/transformer/wte/embeddings:0": np.zeros((3, 2))}, "hf_tf")
    assert "m/transformer/wte/weight:0" in layouts.to_canonical(arrays, "hf_tf")  # not a Keras prefix: unknown


def test_bad_leading_axis_names_the_tensor():
    with pytest.raises(CheckpointMismatchError, match=r"model/h0/attn/c_attn/w.*leading axis.*\(2, 8, 24\)"):
        layouts.to_canonical({"model/h0/attn/c_attn/w": np.zeros((2, 8, 24))}, "openai_tf1")


def test_unknown_layout():
    with pytest.raises(ValueError, match="layout='hf_jax'"):
        layouts.to_canonical({}, "hf_jax")


@pytest.mark.parametrize("head", TF_HEADS)
def test_hf_tf_names_equal_transformers_tf_files(head):
    """Our hf_tf names and shapes for each class are exactly those in the h5 transformers-TF 4.57 saved."""
    folder = FIXTURES / head
    config = GPT2Config.from_json_file(folder / "config.json")
    with h5py.File(folder / "tf_model.h5", "r") as f:
        saved = {}
        for layer in f.attrs["layer_names"]:
            for name in f[layer].attrs["weight_names"]:
                saved[name] = f[layer][name].shape
    ours = layouts.from_canonical(random_state(config, head), "hf_tf", model_class=head)
    assert {k: v.shape for k, v in ours.items()} == saved


@pytest.mark.parametrize("head", TF_HEADS)
def test_transformers_tf_weights_reproduce_tf_outputs_in_transformers_pt(head):
    """The numbers check the transforms: TF weights mapped by our tables give TF's outputs in transformers PT."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = FIXTURES / head
    config = GPT2Config.from_json_file(folder / "config.json")
    arrays, layout = checkpoint.read_weights(folder / "tf_model.h5")
    state = layouts.check_state(layouts.expected_shapes(config, head), layouts.to_canonical(arrays, layout))
    pt_names = layouts.from_canonical(state, "hf_pt", model_class=head)
    model = getattr(transformers, layouts.MODEL_CLASSES[head])(transformers.GPT2Config.from_pretrained(folder))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in pt_names.items()}, strict=True)
    reference = np.load(folder / "reference.npz")
    inputs = {k: torch.from_numpy(reference[k].astype(np.int64)) for k in ("input_ids", "mc_token_ids")
              if k in reference}
    with torch.no_grad():
        out = model.eval()(**inputs)
    compared = 0
    for key in ("last_hidden_state", "logits", "mc_logits"):
        if key in reference:
            np.testing.assert_allclose(out[key].numpy(), reference[key], rtol=0, atol=1e-5, err_msg=key)
            compared += 1
    assert compared


# -- check_state -------------------------------------------------------------------------------------------------
def test_check_state_fills_tied_head_and_orders():
    config = GPT2Config(**TINY)
    state = random_state(config, "lm")
    del state["lm_head.weight"]
    shuffled = dict(reversed(list(state.items())))
    loaded = layouts.check_state(layouts.expected_shapes(config, "lm"), shuffled)
    assert list(loaded) == list(layouts.expected_shapes(config, "lm"))
    assert loaded["lm_head.weight"] is state["transformer.wte.weight"]


def test_check_state_lists_everything_in_one_error():
    config = GPT2Config(**TINY)
    expected = layouts.expected_shapes(config, "lm")
    state = random_state(config, "lm")
    del state["transformer.h.0.ln_1.bias"], state["lm_head.weight"]
    state["transformer.h.1.mlp.c_fc.weight"] = np.zeros((8, 30), np.float32)
    state["transformer.h.7.ln_1.weight"] = np.zeros(8, np.float32)
    with pytest.raises(CheckpointMismatchError) as info:
        layouts.check_state(expected, state, tied=())
    err = info.value
    assert err.missing == ["transformer.h.0.ln_1.bias", "lm_head.weight"]
    assert err.unexpected == ["transformer.h.7.ln_1.weight"]
    assert err.wrong_shape == [("transformer.h.1.mlp.c_fc.weight", (8, 32), (8, 30))]
    message = str(err)
    for part in ("transformer.h.0.ln_1.bias", "transformer.h.7.ln_1.weight", "expected (8, 32) got (8, 30)",
                 "untied"):
        assert part in message


def test_check_state_hints_at_unconverted_names():
    config = GPT2Config(**TINY)
    tf_names = layouts.from_canonical(random_state(config, "base"), "hf_tf", model_class="base")
    with pytest.raises(CheckpointMismatchError, match="to_canonical"):
        layouts.check_state(layouts.expected_shapes(config, "base"), tf_names)


# -- fit_to_head: what both backends tolerate before check_state -------------------------------------------------
def test_fit_to_head_drops_other_heads_and_allows_a_missing_own_head(caplog):
    config = GPT2Config(**TINY, num_labels=3, tie_word_embeddings=False)
    lm = random_state(config, "lm", tie=False)
    with caplog.at_level("WARNING"):
        state = layouts.fit_to_head(lm, config, "seq_cls", model_name="GPT2ForSequenceClassification")
    assert "Checkpoint tensors not used by GPT2ForSequenceClassification: lm_head.weight" in caplog.text
    assert "weights not in the checkpoint, initialised at random: score.weight" in caplog.text
    assert list(state) == [n for n in layouts.expected_shapes(config, "seq_cls") if n != "score.weight"]
    assert all(state[n] is lm[n] for n in state)  # no copies
    base = layouts.fit_to_head(lm, config, "base", model_name="GPT2Model")
    assert set(base) == set(layouts.expected_shapes(config, "base"))


def test_fit_to_head_fills_the_tied_head_and_still_refuses_body_problems():
    config = GPT2Config(**TINY)
    state = random_state(config, "base")
    fitted = layouts.fit_to_head(state, config, "lm", model_name="GPT2LMHeadModel")
    assert fitted["lm_head.weight"] is state["transformer.wte.weight"]
    del state["transformer.h.1.ln_2.bias"]
    with pytest.raises(CheckpointMismatchError, match="transformer.h.1.ln_2.bias"):
        layouts.fit_to_head(state, config, "lm", model_name="GPT2LMHeadModel")


def test_bfloat16_bits_keep_their_tag_through_the_tables():
    from gpt2_core.dtypes import BF16Array, cast

    config = GPT2Config(**TINY, num_labels=3)
    state = {name: cast(array, "bfloat16") for name, array in random_state(config, "seq_cls").items()}
    for layout in ("hf_pt", "hf_tf"):
        back = layouts.to_canonical(layouts.from_canonical(state, layout, model_class="seq_cls"), layout)
        for name, array in state.items():
            assert isinstance(back[name], BF16Array), (layout, name)  # hf_tf transposes score.weight
            np.testing.assert_array_equal(back[name].view(np.uint16), array.view(np.uint16))
