"""generate (PyTorch) against transformers 5's generate on the same tiny random checkpoint: same tokens.

The runner calls the model's own forward. It runs two models: transformers' GPT2LMHeadModel itself (same parameter
names and forward arguments as ours; its own cache) and ours loaded from the checkpoint transformers saved (our
KVCache, written in place).
"""

import copy
import io
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from gpt2_core.generation import GenerationConfig  # noqa: E402
from gpt2_pt import generation as pt_generation  # noqa: E402

VOCAB, EOS, PAD = 97, 1, 2  # PAD != 0: transformers pads beams with eos when pad_token_id is 0 (falsy)


def _tiny_reference(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=EOS, **overrides)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    # larger weights than the init gives spread-out logits, so greedy/beam choices are far from ties
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def reference():
    return _tiny_reference()


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory):
    modeling = pytest.importorskip("gpt2_pt.modeling")
    directory = tmp_path_factory.mktemp("tiny")
    reference.save_pretrained(directory)
    return modeling.GPT2LMHeadModel.from_pretrained(directory).eval()


@pytest.fixture(params=["transformers", "ours"])
def model(request, reference, ours):
    """The model the runner drives: transformers' own, or ours with the same weights."""
    return reference if request.param == "transformers" else ours


def reference_generate(model, ids, **kwargs):
    with torch.no_grad():
        return model.generate(ids, **kwargs)


def prompts(batch=1, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)


def left_padded(seed=2):
    g = torch.Generator().manual_seed(seed)
    lengths = [7, 4, 2]
    ids = torch.full((3, 7), EOS, dtype=torch.long)
    mask = torch.zeros((3, 7), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, 7 - n:] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[row, 7 - n:] = 1
    return ids, mask


def frequent_tokens(model, ids, count, **kwargs):
    """Tokens the model generates after a few steps, to use as eos ids that are reached mid-way."""
    out = reference_generate(model, ids, max_new_tokens=12, eos_token_id=None, pad_token_id=PAD, **kwargs)
    picked = []
    for token in out[:, ids.shape[1] + 2:].T.flatten().tolist():  # step by step over the rows
        if token not in picked:
            picked.append(token)
    return picked[:count]


GREEDY_CASES = {
    "plain": dict(),
    "repetition_penalty": dict(repetition_penalty=1.5),
    "repetition_penalty_below_1": dict(repetition_penalty=0.7),
    "no_repeat_ngram": dict(no_repeat_ngram_size=2),
    "bad_words": dict(bad_words_ids=[[5], [7, 8], [11, 12, 13]]),
    "min_new_tokens": dict(min_new_tokens=6),
}

BEAM_CASES = {
    "beams": dict(num_beams=3),
    "return_sequences": dict(num_beams=4, num_return_sequences=3),
    "length_penalty": dict(num_beams=3, length_penalty=0.5, num_return_sequences=2),
    "negative_length_penalty": dict(num_beams=3, length_penalty=-1.0),
    "early_stopping_true": dict(num_beams=3, early_stopping=True),
    "early_stopping_never": dict(num_beams=3, early_stopping="never", num_return_sequences=3),
    "penalties": dict(num_beams=3, repetition_penalty=1.3, no_repeat_ngram_size=3, bad_words_ids=[[9], [3, 4]]),
}


def _check_same(reference, ids, mask=None, *, model=None, **kwargs):
    """transformers' generate on `reference` vs ours on `model` (default: the reference model itself)."""
    ref = reference_generate(reference, ids, attention_mask=mask, **kwargs)
    out = pt_generation.generate(reference if model is None else model, ids, attention_mask=mask, **kwargs)
    assert out.dtype == torch.long
    assert out.shape == ref.shape, (out.tolist(), ref.tolist())
    assert torch.equal(out, ref), (out.tolist(), ref.tolist())
    return out


@pytest.mark.parametrize("case", sorted(GREEDY_CASES))
def test_greedy_matches_transformers(reference, model, case):
    _check_same(reference, prompts(2), model=model, max_new_tokens=15, pad_token_id=PAD, **GREEDY_CASES[case])


@pytest.mark.parametrize("case", sorted(BEAM_CASES))
def test_beam_search_matches_transformers(reference, model, case):
    _check_same(reference, prompts(2), model=model, max_new_tokens=12, pad_token_id=PAD, **BEAM_CASES[case])


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("n_eos", [1, 3])
def test_eos_reached_mid_way(reference, model, num_beams, n_eos):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(reference, ids, n_eos, num_beams=num_beams)
    # this repetitive model makes long beams score well: length_penalty=0 lets the short, ended ones win
    beam_kwargs = dict(num_return_sequences=2, length_penalty=0.0) if num_beams > 1 else {}
    out = _check_same(reference, ids, model=model, max_new_tokens=14, num_beams=num_beams, pad_token_id=PAD,
                      eos_token_id=eos if n_eos > 1 else eos[0], **beam_kwargs)
    assert num_beams == 1 or out.shape[1] < ids.shape[1] + 14
    assert any(t in eos for t in out[:, ids.shape[1]:].flatten().tolist())


def test_min_new_tokens_holds_eos_back(reference, model):
    ids = prompts(1, seed=5)
    eos = frequent_tokens(reference, ids, 1)[0]
    first = _check_same(reference, ids, model=model, max_new_tokens=14, eos_token_id=eos, pad_token_id=PAD)
    held = _check_same(reference, ids, model=model, max_new_tokens=14, eos_token_id=eos, pad_token_id=PAD,
                       min_new_tokens=10)
    assert (held[0, ids.shape[1]:ids.shape[1] + 10] != eos).all()
    assert first.shape != held.shape or not torch.equal(first, held)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batch_matches_transformers(reference, model, num_beams):
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, num_beams=num_beams, pad_token_id=PAD, repetition_penalty=1.2)
    _check_same(reference, ids, mask, model=model, **kwargs)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_rows_equal_each_prompt_alone(reference, num_beams):
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, num_beams=num_beams, pad_token_id=PAD, eos_token_id=None,
                  no_repeat_ngram_size=2)
    batch = pt_generation.generate(reference, ids, attention_mask=mask, **kwargs)
    for row in range(ids.shape[0]):
        alone_ids = ids[row:row + 1, mask[row].bool()]
        alone = pt_generation.generate(reference, alone_ids, **kwargs)
        assert batch[row, ids.shape[1] - alone_ids.shape[1]:].tolist() == alone[0].tolist()


def test_default_length_is_20_new_tokens_like_transformers(reference):
    ids = prompts(1)
    out = _check_same(reference, ids, eos_token_id=None, pad_token_id=PAD)
    assert out.shape[1] == ids.shape[1] + 20
    out = _check_same(reference, ids, max_length=12, eos_token_id=None, pad_token_id=PAD)
    assert out.shape[1] == 12


def test_ours_matches_transformers(reference, ours):
    ids, mask = left_padded()
    for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2), dict(repetition_penalty=1.3)):
        ref = reference_generate(reference, ids, attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, **kwargs)
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, **kwargs)
        assert torch.equal(out, ref)


@pytest.mark.parametrize("padded", [False, True])
def test_runner_logits_equal_transformers_forward(reference, ours, padded):
    ids, mask = left_padded()
    if not padded:
        mask = torch.ones_like(mask)
    runner = pt_generation._ModelRunner(ours, 3, 12)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = runner.prefill(ids.numpy(), mask.numpy())
        out = reference(ids, attention_mask=mask, position_ids=positions, use_cache=True)
        np.testing.assert_allclose(logits, out.logits[:, -1].numpy(), rtol=1e-5, atol=1e-5)
        token = torch.tensor([[3], [4], [5]])
        mask2 = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
        logits = runner.step(token[:, 0].numpy(), mask2.numpy())
        out = reference(token, attention_mask=mask2, position_ids=positions[:, -1:] + 1,
                        past_key_values=out.past_key_values, use_cache=True)
        np.testing.assert_allclose(logits, out.logits[:, -1].numpy(), rtol=1e-5, atol=1e-5)


# -- sampling: statistics, not snapshots


def _chi2_critical(df, z=3.719):  # the p = 1e-4 upper quantile (Wilson-Hilferty)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _first_token_distribution(model, ids, warpers):
    with torch.no_grad():
        logits = model(ids).logits[:, -1].float()
    scores = logits
    for w in warpers:
        scores = w(ids, scores)
    return torch.softmax(scores, dim=-1)[0]


@pytest.mark.parametrize("kwargs", [
    dict(top_k=5), dict(top_p=0.6, top_k=0), dict(temperature=0.7, top_k=8, top_p=0.9), dict(typical_p=0.5, top_k=0),
    dict(temperature=1.6, top_k=0), dict(min_p=0.3, top_k=0, temperature=1.3),
], ids=["top_k", "top_p", "temp_k_p", "typical", "temperature", "min_p"])
def test_sampled_distribution_matches_the_expected_one(reference, kwargs):
    from transformers.generation import logits_process as lp

    ids = prompts(1, seed=3)
    warpers = []
    if kwargs.get("temperature", 1.0) != 1.0:
        warpers.append(lp.TemperatureLogitsWarper(kwargs["temperature"]))
    if kwargs.get("top_k", 50):
        warpers.append(lp.TopKLogitsWarper(kwargs.get("top_k", 50)))
    if kwargs.get("top_p", 1.0) < 1:
        warpers.append(lp.TopPLogitsWarper(kwargs["top_p"]))
    if kwargs.get("min_p") is not None:
        warpers.append(lp.MinPLogitsWarper(kwargs["min_p"]))
    if kwargs.get("typical_p", 1.0) < 1:
        warpers.append(lp.TypicalLogitsWarper(kwargs["typical_p"]))
    expected = _first_token_distribution(reference, ids, warpers).double().numpy()
    n = 6000
    out = pt_generation.generate(reference, ids.repeat(n, 1), do_sample=True, max_new_tokens=1, pad_token_id=PAD,
                                 generator=torch.Generator().manual_seed(1234), **kwargs)
    counts = np.bincount(out[:, -1].numpy(), minlength=VOCAB)
    allowed = expected > 0
    assert counts[~allowed].sum() == 0, "sampled a token outside the top-k / top-p set"
    # merge rare tokens so every expected count is >= 5
    order = np.argsort(expected[allowed])
    exp, got = expected[allowed][order] * n, counts[allowed][order]
    merged_exp, merged_got, acc_e, acc_g = [], [], 0.0, 0
    for e, g in zip(exp, got):
        acc_e, acc_g = acc_e + e, acc_g + g
        if acc_e >= 5:
            merged_exp.append(acc_e), merged_got.append(acc_g)
            acc_e, acc_g = 0.0, 0
    if acc_e and merged_exp:
        merged_exp[-1] += acc_e
        merged_got[-1] += acc_g
    merged_exp, merged_got = np.array(merged_exp), np.array(merged_got)
    if len(merged_exp) < 2:
        assert merged_got.sum() == n
        return
    chi2 = float(((merged_got - merged_exp) ** 2 / merged_exp).sum())
    assert chi2 < _chi2_critical(len(merged_exp) - 1), (chi2, merged_got, merged_exp.round(1))


def test_sampling_is_reproducible(reference):
    ids = prompts(2)
    kwargs = dict(do_sample=True, max_new_tokens=10, pad_token_id=PAD, eos_token_id=None)
    torch.manual_seed(7)
    a = pt_generation.generate(reference, ids, **kwargs)
    torch.manual_seed(7)
    b = pt_generation.generate(reference, ids, **kwargs)
    c = pt_generation.generate(reference, ids, generator=torch.Generator().manual_seed(7), **kwargs)
    d = pt_generation.generate(reference, ids, generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(a, b) and torch.equal(c, d)
    many = pt_generation.generate(reference, ids, num_return_sequences=4, **kwargs)
    assert many.shape == (8, ids.shape[1] + 10)
    assert torch.equal(many[:4, :ids.shape[1]], ids[:1].expand(4, -1))


def test_beam_sampling_runs_and_keeps_the_prompt(reference):
    ids = prompts(2)
    out = pt_generation.generate(reference, ids, do_sample=True, num_beams=3, num_return_sequences=2,
                                 max_new_tokens=8, pad_token_id=PAD, top_k=10,
                                 generator=torch.Generator().manual_seed(0))
    assert out.shape[0] == 4 and torch.equal(out[::2, :ids.shape[1]], ids)


# -- finished rows, streaming, errors


def test_finished_rows_are_padded_with_pad_token(reference):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(reference, ids, 1)[0]
    out = _check_same(reference, ids, max_new_tokens=14, eos_token_id=eos, pad_token_id=PAD)
    for row in out.tolist():
        new = row[ids.shape[1]:]
        if eos in new:
            assert set(new[new.index(eos) + 1:]) <= {PAD}


def test_pad_defaults_to_eos_with_a_warning(reference, caplog):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(reference, ids, 1)[0]
    with caplog.at_level("WARNING"):
        out = _check_same(reference, ids, max_new_tokens=14, eos_token_id=eos)
    assert "pad_token_id" in caplog.text
    for row in out.tolist():
        new = row[ids.shape[1]:]
        if eos in new:
            assert set(new[new.index(eos):]) == {eos}


class Recorder:
    def __init__(self):
        self.puts, self.ended = [], False

    def put(self, value):
        assert isinstance(value, torch.Tensor)
        self.puts.append(value.tolist())

    def end(self):
        self.ended = True


def test_streamer_receives_prompt_then_each_token(reference):
    ids = prompts(1)
    recorder = Recorder()
    out = pt_generation.generate(reference, ids, max_new_tokens=6, pad_token_id=PAD, streamer=recorder)
    assert recorder.ended
    assert recorder.puts[0] == ids.tolist()
    assert [p[0] for p in recorder.puts[1:]] == out[0, ids.shape[1]:].tolist()


class Exploding(torch.nn.Module):
    """A model whose forward must not run: argument errors have to come first."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        raise AssertionError("forward ran before the arguments were checked")


BAD_ARGUMENTS = [
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(do_sample=True, temperature=-1.0), "temperature"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(max_new_tokens=60), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_length=5), "max_length"),
    (dict(top_k=-1, do_sample=True), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(bad_words_ids=[[200]]), "bad_words_ids"),
    (dict(bad_words_ids=[]), "bad_words_ids"),
    (dict(early_stopping="sometimes", num_beams=2), "early_stopping"),
    (dict(not_an_argument=3), "not_an_argument"),
    (dict(num_beams=2, streamer=Recorder()), "streamer"),
    (dict(quantize="int4"), "quantize"),
]


@pytest.mark.parametrize("kwargs,name", BAD_ARGUMENTS, ids=[n for _, n in BAD_ARGUMENTS])
def test_bad_arguments_raise_before_any_work(reference, kwargs, name):
    model = Exploding(reference.config)
    with pytest.raises(ValueError, match=name):
        pt_generation.generate(model, prompts(1, length=7), **kwargs)


def test_prompt_longer_than_context_raises(reference):
    with pytest.raises(ValueError, match="n_positions"):
        pt_generation.generate(Exploding(reference.config), prompts(1, length=65))
    with pytest.raises(ValueError, match="n_positions"):
        pt_generation.generate(Exploding(reference.config), prompts(1, length=64))


def test_mask_inferred_from_pad_tokens_like_transformers(reference, model):
    ids, mask = left_padded()
    ids = ids.masked_fill(mask == 0, PAD)
    _check_same(reference, ids, model=model, max_new_tokens=8, pad_token_id=PAD)
    _check_same(reference, ids, model=model, max_new_tokens=8, pad_token_id=PAD, num_beams=2)


def test_bad_ids_and_empty_rows_raise(reference):
    model = Exploding(reference.config)
    with pytest.raises(ValueError, match="attention_mask"):
        pt_generation.generate(model, prompts(2), attention_mask=torch.tensor([[1] * 7, [0] * 7]))
    with pytest.raises(ValueError, match="input_ids"):
        pt_generation.generate(model, torch.tensor([[VOCAB]]))


def test_generation_config_and_kwargs(reference):
    ids = prompts(1)
    config = GenerationConfig(max_new_tokens=5, num_beams=2, pad_token_id=PAD, eos_token_id=EOS)
    a = pt_generation.generate(reference, ids, generation_config=config)
    assert torch.equal(a, reference_generate(reference, ids, max_new_tokens=5, num_beams=2, pad_token_id=PAD))
    b = pt_generation.generate(reference, ids, generation_config=config, max_new_tokens=3)
    assert b.shape[1] <= ids.shape[1] + 3 and config.max_new_tokens == 5  # kwargs override, config untouched


# -- int8


def test_int8_decodes_and_stays_close(ours):
    ids = prompts(2)
    q_model = pt_generation.int8_copy(ours)
    assert pt_generation.int8_copy(ours) is q_model  # built once per set of weights
    assert q_model.transformer.wte is ours.transformer.wte  # shared, not copied
    assert isinstance(q_model.lm_head, pt_generation.Int8Linear) and isinstance(ours.lm_head, torch.nn.Linear)
    assert not any("int8" in name for name in ours.state_dict())
    fp = pt_generation._ModelRunner(ours, 2, 20)
    q = pt_generation._ModelRunner(q_model, 2, 20)
    with torch.no_grad():
        a, b = fp.prefill(ids.numpy(), np.ones_like(ids.numpy())), q.prefill(ids.numpy(), np.ones_like(ids.numpy()))
    # int8 weights move the logits a little; the distribution stays close (measured figures in bench/)
    spread = a.std()
    assert 0 < np.abs(a - b).max() < 0.25 * spread * 4
    pa, pb = torch.softmax(torch.from_numpy(a), -1), torch.softmax(torch.from_numpy(b), -1)
    assert (pa - pb).abs().sum(-1).max() < 0.3
    out = pt_generation.generate(ours, ids, max_new_tokens=8, pad_token_id=PAD, quantize="int8")
    assert out.shape == (2, ids.shape[1] + 8) and torch.equal(out[:, :ids.shape[1]], ids)


def test_int8_needs_our_model(reference):
    with pytest.raises(ValueError, match="quantize"):
        pt_generation.generate(reference, prompts(1), max_new_tokens=2, pad_token_id=PAD, quantize="int8")


# -- prepacked weights for batched steps


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_packed_steps_match_plain_steps(ours):
    ids = prompts(3)
    packed = pt_generation.packed_copy(ours, 3)
    assert pt_generation.packed_copy(ours, 3) is packed  # cached while the weights and rows stay the same
    assert isinstance(packed.lm_head, pt_generation.PackedLinear) and packed.transformer.wte is ours.transformer.wte
    assert not any("packed" in name for name in ours.state_dict())
    plain = pt_generation._ModelRunner(ours, 3, 20)
    fast = pt_generation._ModelRunner(ours, 3, 20, step_model=packed)
    mask = np.ones_like(ids.numpy())
    with torch.inference_mode():
        a, b = plain.prefill(ids.numpy(), mask), fast.prefill(ids.numpy(), mask)
        np.testing.assert_array_equal(a, b)  # the prompt runs on the model's own weights
        for step in range(4):
            tokens = a.argmax(-1)
            mask = np.concatenate([mask, np.ones((3, 1), mask.dtype)], axis=1)
            a, b = plain.step(tokens, mask), fast.step(tokens, mask)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    for args in (dict(), dict(num_beams=3), dict(do_sample=True, top_k=5)):
        torch.manual_seed(0)
        x = pt_generation.generate(ours, ids, max_new_tokens=6, pad_token_id=PAD, **args)
        torch.manual_seed(0)
        y = pt_generation.generate(ours, ids, max_new_tokens=6, pad_token_id=PAD, pack_weights=True, **args)
        assert torch.equal(x, y), args


def test_packed_copy_follows_the_weights(ours):
    if not pt_generation.can_pack(ours):
        pytest.skip("torch built without oneDNN")
    first = pt_generation.packed_copy(ours, 2)
    second = pt_generation.packed_copy(ours, 4)
    assert second is not first  # rows choose the blocked layout
    with torch.no_grad():
        ours.transformer.h[0].mlp.c_fc.bias.add_(0.0)  # an in-place change bumps the version
    assert pt_generation.packed_copy(ours, 4) is not second
    pt_generation.generate(ours, prompts(2), max_new_tokens=2, pad_token_id=PAD, pack_weights=False)
    assert "packed" not in pt_generation._COPIES[ours]  # pack_weights=False frees the copy
    assert not pt_generation.can_pack(copy.deepcopy(ours).double())


def test_models_with_cached_copies_still_copy_and_pickle(ours):
    pt_generation.generate(ours, prompts(2), max_new_tokens=2, pad_token_id=PAD, pack_weights=True)  # packs
    pt_generation.generate(ours, prompts(1), max_new_tokens=2, pad_token_id=PAD, quantize="int8")
    clone = copy.deepcopy(ours)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    ids = prompts(2)
    with torch.no_grad():
        expected = ours(ids).logits
        assert torch.equal(clone(ids).logits, expected) and torch.equal(loaded(ids).logits, expected)
    assert clone not in pt_generation._COPIES and loaded not in pt_generation._COPIES


@pytest.mark.parametrize("beams", [1, 2])
def test_max_time_like_transformers(reference, ours, beams):
    ids = prompts(2)
    args = dict(max_new_tokens=8, pad_token_id=PAD, num_beams=beams)
    expected = reference_generate(reference, ids, max_time=1e-9, **args)
    assert expected.shape[1] == ids.shape[1] + 1  # transformers: one token, then the time check stops it
    assert torch.equal(pt_generation.generate(ours, ids, max_time=1e-9, **args), expected)
    assert pt_generation.generate(ours, ids, max_time=60.0, **args).shape[1] > ids.shape[1] + 1


def test_stop_strings_like_transformers(reference, ours, tmp_path):
    import transformers

    from gpt2_core import GPT2Tokenizer

    tokenizer = GPT2Tokenizer.from_pretrained("gpt2")  # the tiny model's 99 ids are GPT-2's one-character tokens
    tokenizer.save_pretrained(tmp_path)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = prompts(3)
    free = pt_generation.generate(ours, ids, max_new_tokens=12, pad_token_id=PAD, eos_token_id=None)
    texts = [tokenizer.decode(row[ids.shape[1]:]) for row in free.tolist()]
    stops = [texts[0][3:5], texts[1][6]]  # strings these rows make mid-way (a row may never make either)
    for eos in (None, EOS):  # without eos ids transformers does not pad the rows that stopped; with them it does
        args = dict(max_new_tokens=12, pad_token_id=PAD, eos_token_id=eos, stop_strings=stops)
        expected = reference_generate(reference, ids, tokenizer=hf_tokenizer, **args)
        got = pt_generation.generate(ours, ids, tokenizer=tokenizer, **args)
        assert torch.equal(got, expected), eos
    assert (got[0, ids.shape[1] + 5:] == PAD).all() or got.shape[1] < free.shape[1]  # row 0 stopped at its string
    with pytest.raises(ValueError, match="tokenizer="):
        pt_generation.generate(ours, ids, max_new_tokens=2, pad_token_id=PAD, stop_strings=["x"])


def test_generation_names_come_with_the_backend():
    import gpt2_core
    import gpt2_pt

    assert (gpt2_pt.GenerationConfig, gpt2_pt.TextStreamer) == (gpt2_core.GenerationConfig, gpt2_core.TextStreamer)
