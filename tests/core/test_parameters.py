"""The canonical parameters of each model class: counts of the presets, names, shapes and state_dict order against
transformers' classes, head names, the class a config names."""

import numpy as np
import pytest

from gpt2_core import parameters
from gpt2_core.config import PRESETS, GPT2Config

TINY = dict(vocab_size=11, n_positions=6, n_embd=8, n_layer=2, n_head=2)


@pytest.mark.parametrize("name, count", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080),
    ("gpt2-xl", 1_557_611_200), ("distilgpt2", 81_912_576)])
def test_preset_parameter_counts(name, count):
    config = GPT2Config.from_dict(PRESETS[name])
    shapes = parameters.expected_shapes(config, "base")
    assert sum(int(np.prod(s)) for s in shapes.values()) == count
    # The tied LM head adds a name but no parameters.
    lm = parameters.expected_shapes(config, "lm")
    assert set(lm) - set(shapes) == {"lm_head.weight"}
    assert config.num_parameters() == count


@pytest.mark.parametrize("head", parameters.HEADS)
@pytest.mark.parametrize("options", [{}, {"add_cross_attention": True, "n_inner": 12},
                                     {"summary_use_proj": False}, {"summary_proj_to_labels": False}])
def test_expected_shapes_equal_transformers_state_dict(head, options):
    transformers = pytest.importorskip("transformers")
    ours = GPT2Config(**TINY, num_labels=3, **options)
    theirs = transformers.GPT2Config(**TINY, num_labels=3, **options)
    model = getattr(transformers, parameters.MODEL_CLASSES[head])(theirs)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = parameters.expected_shapes(ours, head)
    if head == "base":  # GPT2Model's own names lack the prefix; ours are canonical
        got = {k.removeprefix("transformer."): v for k, v in got.items()}
    assert list(got.items()) == list(expected.items())  # same names, shapes and state_dict order


def test_head_of_accepts_class_names():
    assert parameters.head_of("GPT2LMHeadModel") == "lm"
    assert parameters.head_of("TFGPT2ForSequenceClassification") == "seq_cls"
    assert parameters.head_of("qa") == "qa"
    with pytest.raises(ValueError, match="model_class='BertModel'"):
        parameters.head_of("BertModel")


def test_class_name_from_config():
    assert parameters.class_name_from_config(GPT2Config(**TINY)) == "GPT2LMHeadModel"
    assert parameters.class_name_from_config(GPT2Config(**TINY, architectures=["TFGPT2Model"])) == "GPT2Model"
    config = GPT2Config(**TINY, architectures=["SomethingElse", "GPT2ForQuestionAnswering"])
    assert parameters.class_name_from_config(config) == "GPT2ForQuestionAnswering"
