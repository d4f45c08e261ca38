"""Every public model class, every output field, 1-D, 2-D and 3-D inputs: transformers 5 against gpt2_pt against
gpt2_tf on one checkpoint, so the next drift between the twins (or from transformers) fails here.

The walk takes the classes from the packages themselves and the fields from transformers' own output, so a new
class or a new field is compared without editing this file. Where transformers rejects an input shape, both
backends must reject it too, with a ValueError.
"""

import inspect

import numpy as np
import pytest
from parity_utils import TINY, assert_close, randomize_torch, tf, torch

import gpt2_pt
import gpt2_tf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

PT_CLASSES = sorted(name for name in gpt2_pt.__all__ if inspect.isclass(getattr(gpt2_pt, name))
                    and issubclass(getattr(gpt2_pt, name), gpt2_pt.GPT2PreTrainedModel)
                    and name != "GPT2PreTrainedModel")
SHAPES = {1: (5,), 2: (2, 5), 3: (2, 3, 5)}
# Where transformers 5 fails from indexing alone (its LM head slices hidden_states[:, keep, :], which assumes a
# batch axis) and ours answers: one sequence without a batch axis. There ours must equal transformers' numbers for
# the same sequence as a batch of one.
BEYOND_TRANSFORMERS = {("GPT2LMHeadModel", 1)}


def test_every_public_class_has_its_twin():
    tf_classes = sorted(name for name in gpt2_tf.__all__ if inspect.isclass(getattr(gpt2_tf, name))
                        and issubclass(getattr(gpt2_tf, name), gpt2_tf.TFGPT2PreTrainedModel)
                        and name != "TFGPT2PreTrainedModel")
    assert tf_classes == ["TF" + name for name in PT_CLASSES]
    assert len(PT_CLASSES) == 6


def _labels(class_name, ids, rng):
    """The labels each head takes for `ids` of any rank (None where the head has no loss)."""
    lead = ids.shape[:-1]
    if class_name in ("GPT2LMHeadModel", "GPT2ForTokenClassification"):
        return dict(labels=ids % 3 if class_name == "GPT2ForTokenClassification" else ids)
    if class_name == "GPT2DoubleHeadsModel":
        inputs = dict(labels=ids)
        if ids.ndim == 3:
            inputs.update(mc_token_ids=rng.integers(0, ids.shape[-1], size=lead), mc_labels=rng.integers(0, 3, lead[:1]))
        return inputs
    if class_name == "GPT2ForSequenceClassification":
        return dict(labels=rng.integers(0, 3, size=lead[:1] or (1,)))
    if class_name == "GPT2ForQuestionAnswering":
        return dict(start_positions=rng.integers(0, 5, size=lead[:1] or (1,)),
                    end_positions=rng.integers(0, 5, size=lead[:1] or (1,)))
    return {}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = {}

    def get(class_name):
        if class_name not in cache:
            directory = tmp_path_factory.mktemp(class_name)
            # pad_token_id only where it is needed (batches of sequence classification): transformers 5 checks
            # ids for padding by indexing them as 2-D when it is set, which fails on 1-D inputs
            pad = dict(pad_token_id=0) if class_name == "GPT2ForSequenceClassification" else {}
            config = transformers.GPT2Config(**TINY, num_labels=3, **pad)
            config._attn_implementation = "eager"  # the only transformers path that returns attention weights
            torch.manual_seed(0)
            hf = randomize_torch(getattr(transformers, class_name)(config), seed=5).eval()
            hf.save_pretrained(directory)
            cache[class_name] = (hf, getattr(gpt2_pt, class_name).from_pretrained(directory).eval(),
                                 getattr(gpt2_tf, "TF" + class_name).from_pretrained(directory))
        return cache[class_name]

    return get


def _past_of(out):
    past = getattr(out, "cache", None) if "cache" in out.keys() else getattr(out, "past_key_values", None)
    if past is None or isinstance(past, tuple):
        return past
    return tuple((layer.keys, layer.values) for layer in past.layers)


def _compare(name, ours, ref, backend):
    what = f"{backend} {name}"
    if isinstance(ref, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(ref), f"{what}: {len(ours)} items, expected {len(ref)}"
        for i, (o, r) in enumerate(zip(ours, ref)):
            _compare(f"{name}[{i}]", o, r, backend)
    else:
        assert_close(ours, ref, what)


@pytest.mark.parametrize("rank", sorted(SHAPES))
@pytest.mark.parametrize("class_name", PT_CLASSES)
def test_every_output_field_of_every_class(models, class_name, rank):
    hf, pt, tf_model = models(class_name)
    rng = np.random.default_rng(rank)
    ids = rng.integers(1, 99, size=SHAPES[rank])
    inputs = dict(input_ids=ids, **_labels(class_name, ids, rng), output_hidden_states=True, output_attentions=True)
    if class_name != "GPT2ForQuestionAnswering":
        inputs["use_cache"] = True

    def convert(to):
        return {k: to(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}

    try:
        with torch.no_grad():
            ref = hf(**convert(torch.from_numpy))
    except Exception as error:  # transformers rejects this shape: so must we, clearly
        if (class_name, rank) in BEYOND_TRANSFORMERS:
            _assert_equals_batch_of_one(hf, pt, tf_model, inputs)
            return
        with pytest.raises(ValueError):
            with torch.no_grad():
                pt(**convert(torch.from_numpy))
        with pytest.raises(ValueError):
            tf_model(**convert(tf.constant))
        pytest.skip(f"transformers rejects rank {rank} for {class_name} ({type(error).__name__}); both backends too")
    with torch.no_grad():
        pt_out = pt(**convert(torch.from_numpy))
    tf_out = tf_model(**convert(tf.constant))

    # (transformers also returns an empty `cross_attentions`: cross-attention is not supported here)
    fields = {k: v for k, v in ref.items() if v is not None and k not in ("cache", "past_key_values")
              and not (k == "cross_attentions" and len(v) == 0)}
    for out, backend in ((pt_out, "pt"), (tf_out, "tf")):
        present = {k for k in out.keys() if out[k] is not None and k != "past_key_values"}
        assert present == set(fields), f"{backend} fields {sorted(present)} != transformers' {sorted(fields)}"
        for name, value in fields.items():
            _compare(name, out[name], value, backend)
        ref_past, our_past = _past_of(ref), _past_of(out)
        assert (ref_past is None) == (our_past is None), f"{backend} past_key_values"
        if ref_past is not None:
            _compare("past_key_values", tuple(tuple(pair) for pair in our_past),
                     tuple(tuple(pair) for pair in ref_past), backend)


@pytest.mark.parametrize("class_name", ["GPT2LMHeadModel"])
def test_logits_to_keep_takes_ints_only_in_both(models, class_name):
    _, pt, tf_model = models(class_name)
    ids = np.random.default_rng(0).integers(1, 99, size=(1, 4))
    with torch.no_grad():
        kept = pt(torch.from_numpy(ids), logits_to_keep=1).logits
    assert_close(tf_model(tf.constant(ids), logits_to_keep=1).logits, kept, "logits_to_keep=1")
    for bad in (True, -1, 1.0):
        with pytest.raises(ValueError, match="logits_to_keep"):
            pt(torch.from_numpy(ids), logits_to_keep=bad)
        with pytest.raises(ValueError, match="logits_to_keep"):
            tf_model(tf.constant(ids), logits_to_keep=bad)



def _assert_equals_batch_of_one(hf, pt, tf_model, inputs):
    batched = {k: v[None] if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batched.items()})
        pt_out = pt(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
    tf_out = tf_model(**{k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
    for out, backend in ((pt_out, "pt"), (tf_out, "tf")):
        assert_close(out.logits, ref.logits[0], f"{backend} unbatched logits")
        assert_close(out.loss, ref.loss, f"{backend} unbatched loss")
        _compare("hidden_states[-1]", out.hidden_states[-1], ref.hidden_states[-1][0], backend)
