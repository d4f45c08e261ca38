"""gpt2_tf's generate against transformers 5 (PyTorch) and gpt2_pt's generate on the same tiny checkpoint: the same
tokens, for greedy decoding, beam search, penalties, eos reached mid-way and left-padded batches.

The checkpoint is transformers' own (saved by its save_pretrained); gpt2_pt and gpt2_tf load it. Most cases run
our default path (the model compiled with XLA over a KVCache); a few also run it as a graph and eagerly.
"""

import numpy as np
import pytest
from parity_utils import tf, torch

transformers = pytest.importorskip("transformers")

import gpt2_pt  # noqa: E402
import gpt2_tf  # noqa: E402
from gpt2_tf import generation as tf_generation  # noqa: E402

VOCAB, EOS, PAD = 97, 1, 2  # PAD != 0: transformers pads beams with eos when pad_token_id is 0 (falsy)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(transformers model, gpt2_pt model, gpt2_tf model), all with the same weights."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=EOS)
    reference = transformers.GPT2LMHeadModel(cfg).eval()
    # larger weights than the init gives spread-out logits, so greedy/beam choices are far from ties
    with torch.no_grad():
        for p in reference.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    directory = tmp_path_factory.mktemp("tiny")
    reference.save_pretrained(directory)
    return (reference, gpt2_pt.GPT2LMHeadModel.from_pretrained(directory).eval(),
            gpt2_tf.TFGPT2LMHeadModel.from_pretrained(directory))


@pytest.fixture(autouse=True, scope="module")
def quick():
    # this module uses a handful of shapes: keep every compiled program instead of compiling some twice; and one
    # torch thread: on a busy 2-core machine torch's second thread makes these tiny decodes ~40x slower
    saved = tf_generation._MAX_PROGRAMS, torch.get_num_threads()
    tf_generation._MAX_PROGRAMS = 32
    torch.set_num_threads(1)
    yield
    tf_generation._MAX_PROGRAMS = saved[0]
    torch.set_num_threads(saved[1])


@pytest.fixture(params=["xla", "graph", "eager"])
def execution(request):
    return request.param


def prompts(batch=1, length=7, seed=1):
    return np.random.default_rng(seed).integers(3, VOCAB, size=(batch, length)).astype(np.int64)


def left_padded(seed=2):
    rng = np.random.default_rng(seed)
    ids = np.full((3, 7), EOS, dtype=np.int64)
    mask = np.zeros((3, 7), dtype=np.int64)
    for row, n in enumerate([7, 4, 2]):
        ids[row, 7 - n:] = rng.integers(3, VOCAB, size=n)
        mask[row, 7 - n:] = 1
    return ids, mask


def reference_generate(model, ids, mask=None, **kwargs):
    with torch.no_grad():
        return model.generate(torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask),
                              **kwargs).numpy()


def frequent_tokens(models, ids, count, **kwargs):
    """Tokens the model generates after a few steps, to use as eos ids that are reached mid-way."""
    out = reference_generate(models[0], ids, max_new_tokens=12, eos_token_id=None, pad_token_id=PAD, **kwargs)
    picked = []
    for token in out[:, ids.shape[1] + 2:].T.flatten().tolist():  # step by step over the rows
        if token not in picked:
            picked.append(token)
    return picked[:count]


def _check_same(models, ids, mask=None, execution="xla", **kwargs):
    reference, pt, tf_model = models
    expected = reference_generate(reference, ids, mask, **kwargs)
    with torch.no_grad():
        pt_out = pt.generate(torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask),
                             **kwargs).numpy()
    out = tf_model.generate(tf.constant(ids), attention_mask=None if mask is None else tf.constant(mask),
                            execution=execution, **kwargs)
    assert out.dtype == tf.int64
    assert out.shape == expected.shape, (out.numpy().tolist(), expected.tolist())
    np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal(pt_out, expected)
    return out.numpy()


GREEDY_CASES = {
    "plain": dict(),
    "repetition_penalty": dict(repetition_penalty=1.5),
    "no_repeat_ngram": dict(no_repeat_ngram_size=2),
    "bad_words": dict(bad_words_ids=[[5], [7, 8], [11, 12, 13]]),
    "min_new_tokens": dict(min_new_tokens=6),
}

BEAM_CASES = {
    "beams": dict(num_beams=3),
    "return_sequences": dict(num_beams=3, num_return_sequences=2, length_penalty=0.5),
    "early_stopping_never": dict(num_beams=3, early_stopping="never", num_return_sequences=3),
    "penalties": dict(num_beams=3, repetition_penalty=1.3, no_repeat_ngram_size=3, bad_words_ids=[[9], [3, 4]],
                      min_new_tokens=4),
}


@pytest.mark.parametrize("case", sorted(GREEDY_CASES))
def test_greedy_matches(models, case):
    _check_same(models, prompts(2), max_new_tokens=15, pad_token_id=PAD, **GREEDY_CASES[case])


@pytest.mark.parametrize("case", sorted(BEAM_CASES))
def test_beam_search_matches(models, case):
    _check_same(models, prompts(2), max_new_tokens=12, pad_token_id=PAD, **BEAM_CASES[case])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_every_runner_matches(models, execution, num_beams):
    ids, mask = left_padded()
    _check_same(models, ids, mask, execution=execution, max_new_tokens=10, num_beams=num_beams, pad_token_id=PAD,
                repetition_penalty=1.2)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("n_eos", [1, 3])
def test_eos_reached_mid_way(models, num_beams, n_eos):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(models, ids, n_eos, num_beams=num_beams)
    # this repetitive model makes long beams score well: length_penalty=0 lets the short, ended ones win
    beam_kwargs = dict(num_return_sequences=2, length_penalty=0.0) if num_beams > 1 else {}
    out = _check_same(models, ids, max_new_tokens=14, num_beams=num_beams, pad_token_id=PAD,
                      eos_token_id=eos if n_eos > 1 else eos[0], **beam_kwargs)
    assert any(t in eos for t in out[:, ids.shape[1]:].flatten().tolist())


def test_min_new_tokens_holds_eos_back(models):
    ids = prompts(2, seed=5)
    eos = frequent_tokens(models, ids, 1)[0]
    first = _check_same(models, ids, max_new_tokens=14, eos_token_id=eos, pad_token_id=PAD)
    held = _check_same(models, ids, max_new_tokens=14, eos_token_id=eos, pad_token_id=PAD, min_new_tokens=10)
    assert (held[:, ids.shape[1]:ids.shape[1] + 10] != eos).all()
    assert first.shape != held.shape or not np.array_equal(first, held)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_mask_inferred_from_pad_tokens(models, num_beams):
    ids, mask = left_padded()
    ids = np.where(mask == 0, PAD, ids)
    _check_same(models, ids, max_new_tokens=10, pad_token_id=PAD, num_beams=num_beams)


def test_default_length_and_pad_fallback(models):
    ids = prompts(2, seed=5)
    out = _check_same(models, ids, eos_token_id=None, pad_token_id=PAD)
    assert out.shape[1] == ids.shape[1] + 20
    eos = frequent_tokens(models, ids, 1)[0]
    _check_same(models, ids, max_new_tokens=14, eos_token_id=eos)  # pad_token_id falls back to eos


def test_stop_strings_match(models, tmp_path):
    from gpt2_core import GPT2Tokenizer

    reference, pt, tf_model = models
    tokenizer = GPT2Tokenizer.from_pretrained("gpt2")  # the tiny model's ids are GPT-2's one-character tokens
    tokenizer.save_pretrained(tmp_path)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = prompts(2, seed=7)
    free = reference_generate(reference, ids, max_new_tokens=12, pad_token_id=PAD, eos_token_id=EOS)
    stops = [tokenizer.decode(free[0, ids.shape[1] + 2:ids.shape[1] + 4].tolist())]
    args = dict(max_new_tokens=12, pad_token_id=PAD, eos_token_id=EOS, stop_strings=stops)
    expected = reference_generate(reference, ids, tokenizer=hf_tokenizer, **args)
    with torch.no_grad():
        np.testing.assert_array_equal(pt.generate(torch.from_numpy(ids), tokenizer=tokenizer, **args).numpy(),
                                      expected)
    for execution in ("xla", "eager"):
        out = tf_model.generate(tf.constant(ids), tokenizer=tokenizer, execution=execution, **args)
        np.testing.assert_array_equal(out.numpy(), expected)
    assert (expected[0, ids.shape[1] + 4:] == PAD).all()  # row 0 stopped on its string
