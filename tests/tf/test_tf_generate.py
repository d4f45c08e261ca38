"""generate (TensorFlow) on its own: every runner gives the same tokens, the compiled decoder never retraces,
sampling is reproducible and stays in the top-k / top-p set, dtypes, streaming, and errors before any work.
(Tokens against transformers and gpt2_pt: tests/parity/test_parity_generate.py.)"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_utils import assert_close, tiny_model

from gpt2_core.generation import GenerationConfig
from gpt2_tf import generation as tf_generation

PAD = 2
EOS = 98  # tiny_model's eos


@pytest.fixture(scope="module")
def lm():
    return tiny_model(seed=3)


def prompts(batch=2, length=7, seed=1):
    return np.random.default_rng(seed).integers(3, 98, size=(batch, length)).astype(np.int32)


def left_padded(seed=2):
    rng = np.random.default_rng(seed)
    ids = np.full((3, 7), PAD, dtype=np.int32)
    mask = np.zeros((3, 7), dtype=np.int32)
    for row, n in enumerate([7, 4, 2]):
        ids[row, 7 - n:] = rng.integers(3, 98, size=n)
        mask[row, 7 - n:] = 1
    return ids, mask


def _programs(model):
    return model.__dict__.get("_gpt2_decode_programs", {})


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3, num_return_sequences=2, repetition_penalty=1.3)],
                         ids=["greedy", "beams"])
def test_every_execution_gives_the_same_tokens(lm, kwargs):
    ids, mask = left_padded()
    common = dict(attention_mask=mask, max_new_tokens=10, pad_token_id=PAD, **kwargs)
    outs = {execution: lm.generate(ids, execution=execution, **common).numpy()
            for execution in tf_generation.EXECUTION_MODES}
    for name, out in outs.items():
        np.testing.assert_array_equal(out, outs["xla"], err_msg=name)


@pytest.mark.parametrize("execution", ["xla", "eager"])
def test_runner_logits_equal_the_uncached_forward(lm, execution):
    ids, mask = left_padded()
    decoder = tf_generation._ModelRunner(lm, 3, 12, execution=execution)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    cached = decoder.prefill(ids, mask)
    out = lm(ids, attention_mask=mask, position_ids=positions, use_cache=True)
    assert_close(cached, out.logits[:, -1], "prefill logits")
    token = np.array([3, 4, 5])
    mask2 = np.concatenate([mask, np.ones((3, 1), mask.dtype)], axis=1)
    cached = decoder.step(token, mask2)
    out = lm(token[:, None], attention_mask=mask2, position_ids=positions[:, -1:] + 1,
             past_key_values=out.past_key_values, use_cache=True)
    assert_close(cached, out.logits[:, -1], "step logits")


def test_decoding_never_retraces(lm):
    ids = prompts()
    kwargs = dict(pad_token_id=PAD, eos_token_id=None)
    lm.generate(ids, max_new_tokens=10, **kwargs)
    program = _programs(lm)[(2, 32, "xla")]  # 17 positions round up to a capacity of 32
    lm.generate(ids[:, :4], max_new_tokens=14, **kwargs)  # another prompt length: the same trace
    lm.generate(ids, max_new_tokens=20, **kwargs)
    assert program.trace_counts() == {"prefill": 0, "step": 0, "reorder": 0, "greedy": 1}  # greedy: one loop
    assert _programs(lm)[(2, 32, "xla")] is program
    lm.generate(ids, max_new_tokens=10, repetition_penalty=1.2, **kwargs)  # a processor: token by token
    lm.generate(ids[:, :4], max_new_tokens=14, repetition_penalty=1.2, **kwargs)
    assert program.trace_counts() == {"prefill": 1, "step": 1, "reorder": 0, "greedy": 1}
    lm.generate(ids, max_new_tokens=10, num_beams=3, **kwargs)
    lm.generate(ids, max_new_tokens=12, num_beams=3, **kwargs)
    assert _programs(lm)[(6, 32, "xla")].trace_counts() == {"prefill": 1, "step": 1, "reorder": 1, "greedy": 0}


class _Collect:
    def __init__(self):
        self.values = []

    def put(self, value):
        self.values.append(value)

    def end(self):
        pass


def _first_new_tokens(lm, ids, mask, count):
    """Tokens that greedy decoding of these prompts makes early on: eos ids that end rows mid-way."""
    out = lm.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=PAD, eos_token_id=None,
                      execution="eager").numpy()
    return list(dict.fromkeys(out[:, ids.shape[1] + 1:].T.flatten().tolist()))[:count]


@pytest.mark.parametrize("execution", ["xla", "graph"])
@pytest.mark.parametrize("case", ["no_eos", "eos_mid_way", "two_eos_min_new_tokens", "eos_at_once_min_new_tokens"])
def test_compiled_greedy_loop_equals_token_by_token_decoding(lm, execution, case):
    ids, mask = left_padded()
    early = _first_new_tokens(lm, ids, mask, 2)
    kwargs = dict(no_eos=dict(eos_token_id=None), eos_mid_way=dict(eos_token_id=early[0]),
                  two_eos_min_new_tokens=dict(eos_token_id=early, min_new_tokens=3),
                  eos_at_once_min_new_tokens=dict(eos_token_id=early, min_new_tokens=12))[case]
    common = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=PAD, execution=execution, **kwargs)
    whole = lm.generate(ids, **common).numpy()  # the compiled loop
    streamer = _Collect()  # a streamer takes gpt2_core's decode, one call per token
    by_token = lm.generate(ids, streamer=streamer, **common).numpy()
    np.testing.assert_array_equal(whole, by_token)
    program = _programs(lm)[(3, 32, execution)]
    assert program.trace_counts()["greedy"] == 1
    new = whole[:, ids.shape[1]:]
    if case in ("eos_mid_way", "two_eos_min_new_tokens"):  # some row ended early: padded, or all ended at once
        assert new.shape[1] < 12 or (new == PAD).any(), new
    if case == "eos_at_once_min_new_tokens":  # eos banned throughout
        assert new.shape[1] == 12 and not np.isin(new, early).any(), new


def test_key_value_cache_is_no_model_weight(lm):
    before = [w.path for w in lm.weights]
    lm.generate(prompts(), max_new_tokens=10, pad_token_id=PAD)
    assert [w.path for w in lm.weights] == before
    assert _programs(lm)  # the programs live on the model, outside Keras' tracking


def test_reorder_and_upcast_attn_gives_the_same_tokens():
    plain, upcast = tiny_model(seed=4), tiny_model(seed=4, reorder_and_upcast_attn=True)
    ids = prompts()
    for kwargs in (dict(), dict(num_beams=3)):
        a = plain.generate(ids, max_new_tokens=8, pad_token_id=PAD, execution="eager", **kwargs)
        b = upcast.generate(ids, max_new_tokens=8, pad_token_id=PAD, **kwargs)  # fp32: upcasting changes nothing
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_rows_equal_each_prompt_alone(lm, num_beams):
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, num_beams=num_beams, pad_token_id=PAD, eos_token_id=None,
                  no_repeat_ngram_size=2, execution="eager")
    batch = lm.generate(ids, attention_mask=mask, **kwargs).numpy()
    for row in range(ids.shape[0]):
        alone_ids = ids[row:row + 1, mask[row] == 1]
        alone = lm.generate(alone_ids, **kwargs).numpy()
        assert batch[row, ids.shape[1] - alone_ids.shape[1]:].tolist() == alone[0].tolist()


@pytest.mark.parametrize("make,dtype", [
    (lambda ids: tf.constant(ids, tf.int32), tf.int32), (lambda ids: tf.constant(ids, tf.int64), tf.int64),
    (lambda ids: ids.astype(np.int32), tf.int32), (lambda ids: ids.astype(np.int64), tf.int64),
    (lambda ids: ids.tolist(), tf.int32),
], ids=["tf_int32", "tf_int64", "np_int32", "np_int64", "list"])
def test_output_dtype_follows_the_prompt(lm, make, dtype):
    ids = prompts()
    out = lm.generate(make(ids), max_new_tokens=10, pad_token_id=PAD)
    assert isinstance(out, tf.Tensor) and out.dtype == dtype
    np.testing.assert_array_equal(out.numpy()[:, :7], ids)


# -- sampling


def test_sampling_is_reproducible(lm):
    ids = prompts()
    kwargs = dict(do_sample=True, max_new_tokens=10, pad_token_id=PAD, eos_token_id=None)
    a, b = (lm.generate(ids, seed=7, **kwargs).numpy() for _ in range(2))
    c = lm.generate(ids, seed=8, **kwargs).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    outs = []
    for _ in range(2):
        keras.utils.set_random_seed(11)  # what gpt2-generate --seed does; tf.random.set_seed alone works too
        outs.append(lm.generate(ids, **kwargs).numpy())
    np.testing.assert_array_equal(*outs)
    many = lm.generate(ids, num_return_sequences=4, seed=0, execution="eager", **kwargs).numpy()
    assert many.shape == (8, ids.shape[1] + 10)
    np.testing.assert_array_equal(many[:4, :ids.shape[1]], np.repeat(ids[:1], 4, axis=0))


def _chi2_critical(df, z=3.719):  # the p = 1e-4 upper quantile (Wilson-Hilferty)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _expected_distribution(logits, top_k, top_p, temperature):
    scores = logits.astype(np.float64) / temperature
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(scores.shape, bool)
    keep[order[:top_k or len(scores)]] = True
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if top_p < 1:  # the most likely tokens until their mass reaches top_p (transformers applies it after top-k)
        masked = np.where(keep, probs, 0) / probs[keep].sum()
        cumulative = np.cumsum(masked[order])
        keep &= np.isin(np.arange(len(scores)), order[:int(np.searchsorted(cumulative, top_p)) + 1])
    probs = np.where(keep, probs, 0)
    return probs / probs.sum()


@pytest.mark.parametrize("kwargs", [dict(top_k=5), dict(top_p=0.6, top_k=0), dict(temperature=0.7, top_k=8, top_p=0.9)],
                         ids=["top_k", "top_p", "temp_k_p"])
def test_sampled_tokens_follow_the_top_k_top_p_distribution(lm, kwargs):
    ids = prompts(1, seed=3)
    logits = lm(ids).logits[0, -1].numpy()
    expected = _expected_distribution(logits, kwargs.get("top_k", 50), kwargs.get("top_p", 1.0),
                                      kwargs.get("temperature", 1.0))
    n = 3000
    out = lm.generate(np.repeat(ids, n, axis=0), do_sample=True, max_new_tokens=1, pad_token_id=PAD, seed=1234,
                      execution="eager", **kwargs).numpy()
    counts = np.bincount(out[:, -1], minlength=len(expected))
    assert counts[expected == 0].sum() == 0, "sampled a token outside the top-k / top-p set"
    # chi-square over bins of expected count >= 5 (the rarest tokens merged)
    order = np.argsort(expected[expected > 0])
    exp, got = expected[expected > 0][order] * n, counts[expected > 0][order]
    bins_e, bins_g, acc_e, acc_g = [], [], 0.0, 0
    for e, g in zip(exp, got):
        acc_e, acc_g = acc_e + e, acc_g + g
        if acc_e >= 5:
            bins_e.append(acc_e), bins_g.append(acc_g)
            acc_e, acc_g = 0.0, 0
    if len(bins_e) < 2:
        return
    bins_e[-1] += acc_e
    bins_g[-1] += acc_g
    bins_e, bins_g = np.array(bins_e), np.array(bins_g)
    chi2 = float(((bins_g - bins_e) ** 2 / bins_e).sum())
    assert chi2 < _chi2_critical(len(bins_e) - 1), (chi2, bins_g, bins_e.round(1))


# -- streaming, configs, errors


class Recorder:
    def __init__(self):
        self.puts, self.ended = [], False

    def put(self, value):
        assert isinstance(value, np.ndarray) and value.dtype == np.int32  # numpy: streamers call .tolist()
        self.puts.append(value.tolist())

    def end(self):
        self.ended = True


def test_streamer_receives_prompt_then_each_token(lm):
    ids = prompts(1)
    recorder = Recorder()
    out = lm.generate(tf.constant(ids), max_new_tokens=6, pad_token_id=PAD, streamer=recorder)
    assert recorder.ended
    assert recorder.puts[0] == ids.tolist()
    assert [p[0] for p in recorder.puts[1:]] == out.numpy()[0, ids.shape[1]:].tolist()


def test_text_streamer_writes_the_generated_text(lm):
    import io

    from gpt2_core.streamers import TextStreamer

    class Tokenizer:  # the tiny vocabulary has no text: one letter per id
        def decode(self, ids, **kwargs):
            return "".join(chr(ord("A") + i % 26) for i in ids)

    file = io.StringIO()
    out = lm.generate(prompts(1), max_new_tokens=6, pad_token_id=PAD, streamer=TextStreamer(Tokenizer(), file=file))
    assert file.getvalue() == Tokenizer().decode(out.numpy()[0].tolist()) + "\n"


def test_generation_config_and_kwargs(lm):
    ids = prompts()
    config = GenerationConfig(max_new_tokens=5, num_beams=2, pad_token_id=PAD, eos_token_id=EOS)
    a = lm.generate(ids, generation_config=config, execution="eager")
    b = lm.generate(ids, max_new_tokens=5, num_beams=2, pad_token_id=PAD, execution="eager")  # eos: model config's
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    c = lm.generate(ids, generation_config=config, max_new_tokens=3, execution="eager")
    assert c.shape[1] <= ids.shape[1] + 3 and config.max_new_tokens == 5  # kwargs override, config untouched


class Exploding:
    """A model that must not run: argument errors have to come first."""

    def __init__(self, config):
        self.config = config

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model ran before the arguments were checked")


BAD_ARGUMENTS = [
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(max_new_tokens=60), "max_new_tokens"),
    (dict(max_length=5), "max_length"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(bad_words_ids=[[200]]), "bad_words_ids"),
    (dict(not_an_argument=3), "not_an_argument"),
    (dict(num_beams=2, streamer=Recorder()), "streamer"),
    (dict(seed="7"), "seed"),
    (dict(execution="jit"), "execution"),
    (dict(generation_config={"max_new_tokens": 3}), "generation_config"),
    (dict(attention_mask=np.zeros((1, 7), np.int32)), "attention_mask"),
]


@pytest.mark.parametrize("kwargs,name", BAD_ARGUMENTS, ids=[n for _, n in BAD_ARGUMENTS])
def test_bad_arguments_raise_before_any_work(lm, kwargs, name):
    with pytest.raises(ValueError, match=name):
        tf_generation.generate(Exploding(lm.config), prompts(1), **kwargs)


def test_bad_prompts_raise(lm):
    model = Exploding(lm.config)
    with pytest.raises(ValueError, match="n_positions"):
        tf_generation.generate(model, prompts(1, length=64))
    with pytest.raises(ValueError, match="input_ids"):
        tf_generation.generate(model, tf.constant([[99]]))
    with pytest.raises(ValueError, match="input_ids"):
        tf_generation.generate(model, tf.constant([[1.0, 2.0]]))


@pytest.mark.parametrize("execution", ["xla", "eager"])
def test_max_time_stops_after_one_token(lm, execution):
    ids, mask = left_padded()
    out = lm.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=PAD, max_time=1e-9,
                      execution=execution).numpy()
    assert out.shape[1] == ids.shape[1] + 1  # decoded token by token (the compiled loop has no clock)
    full = lm.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=PAD, execution=execution).numpy()
    np.testing.assert_array_equal(out, full[:, :out.shape[1]])


def test_generation_names_come_with_the_backend():
    import gpt2_core
    import gpt2_tf

    assert (gpt2_tf.GenerationConfig, gpt2_tf.TextStreamer) == (gpt2_core.GenerationConfig, gpt2_core.TextStreamer)
