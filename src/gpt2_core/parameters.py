"""The canonical parameters of each GPT-2 model class: their names (the transformers PyTorch state_dict names), their
shapes for a config, their state_dict order, and which head class a set of tensors or a config's `architectures`
names.

What a checkpoint file calls these parameters, and how its arrays relate to ours, is gpt2_core.layouts' job; both
backends build their modules to these names and shapes, so loading is a copy plus a check.

    >>> from gpt2_core import GPT2Config, parameters
    >>> shapes = parameters.expected_shapes(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10), "seq_cls")
    >>> shapes["score.weight"], len(shapes)
    ((2, 8), 17)
"""

from __future__ import annotations

import functools
import re
from typing import Mapping

HEADS = ("base", "lm", "double_heads", "seq_cls", "token_cls", "qa")

# The transformers class of each head. The TF classes carry a "TF" prefix (gpt2_core.layouts: the Keras model names
# transformers-TF writes in front of every weight name in tf_model.h5).
MODEL_CLASSES = {
    "base": "GPT2Model",
    "lm": "GPT2LMHeadModel",
    "double_heads": "GPT2DoubleHeadsModel",
    "seq_cls": "GPT2ForSequenceClassification",
    "token_cls": "GPT2ForTokenClassification",
    "qa": "GPT2ForQuestionAnswering",
}

# A tied weight is not stored when absent: it is filled from its source (transformers ties lm_head to wte).
TIED_TO = {"lm_head.weight": "transformer.wte.weight"}


# The canonical parameters: name pattern, shape in symbols, the heads that have it, the config flag it needs.
# Shapes follow transformers: Conv1D weights are (in, out), nn.Linear weights (out, in).
ALL = HEADS
BLOCK = "transformer.h.{i}."
PARAMETERS = (
    ("transformer.wte.weight", ("vocab", "embd"), ALL, None),
    ("transformer.wpe.weight", ("positions", "embd"), ALL, None),
    (BLOCK + "ln_1.weight", ("embd",), ALL, None),
    (BLOCK + "ln_1.bias", ("embd",), ALL, None),
    (BLOCK + "attn.c_attn.weight", ("embd", "3embd"), ALL, None),
    (BLOCK + "attn.c_attn.bias", ("3embd",), ALL, None),
    (BLOCK + "attn.c_proj.weight", ("embd", "embd"), ALL, None),
    (BLOCK + "attn.c_proj.bias", ("embd",), ALL, None),
    (BLOCK + "ln_2.weight", ("embd",), ALL, None),
    (BLOCK + "ln_2.bias", ("embd",), ALL, None),
    (BLOCK + "crossattention.c_attn.weight", ("embd", "2embd"), ALL, "add_cross_attention"),
    (BLOCK + "crossattention.c_attn.bias", ("2embd",), ALL, "add_cross_attention"),
    (BLOCK + "crossattention.q_attn.weight", ("embd", "embd"), ALL, "add_cross_attention"),
    (BLOCK + "crossattention.q_attn.bias", ("embd",), ALL, "add_cross_attention"),
    (BLOCK + "crossattention.c_proj.weight", ("embd", "embd"), ALL, "add_cross_attention"),
    (BLOCK + "crossattention.c_proj.bias", ("embd",), ALL, "add_cross_attention"),
    (BLOCK + "ln_cross_attn.weight", ("embd",), ALL, "add_cross_attention"),
    (BLOCK + "ln_cross_attn.bias", ("embd",), ALL, "add_cross_attention"),
    (BLOCK + "mlp.c_fc.weight", ("embd", "inner"), ALL, None),
    (BLOCK + "mlp.c_fc.bias", ("inner",), ALL, None),
    (BLOCK + "mlp.c_proj.weight", ("inner", "embd"), ALL, None),
    (BLOCK + "mlp.c_proj.bias", ("embd",), ALL, None),
    ("transformer.ln_f.weight", ("embd",), ALL, None),
    ("transformer.ln_f.bias", ("embd",), ALL, None),
    ("lm_head.weight", ("vocab", "embd"), ("lm", "double_heads"), None),
    ("multiple_choice_head.summary.weight", ("summary", "embd"), ("double_heads",), "summary_use_proj"),
    ("multiple_choice_head.summary.bias", ("summary",), ("double_heads",), "summary_use_proj"),
    ("score.weight", ("labels", "embd"), ("seq_cls",), None),
    ("classifier.weight", ("labels", "embd"), ("token_cls",), None),
    ("classifier.bias", ("labels",), ("token_cls",), None),
    ("qa_outputs.weight", ("2", "embd"), ("qa",), None),
    ("qa_outputs.bias", ("2",), ("qa",), None),
)


def _dims(config) -> dict[str, int]:
    embd = config.n_embd
    return {
        "vocab": config.vocab_size, "positions": config.n_positions, "embd": embd, "2embd": 2 * embd,
        "3embd": 3 * embd, "inner": config.inner_dim, "labels": config.num_labels, "2": 2,
        # GPT2DoubleHeadsModel sets num_labels = 1, so a projection "to labels" has one output.
        "summary": 1 if config.summary_proj_to_labels else embd,
    }


def head_of(model_class: str) -> str:
    """The head key for a head key or a transformers class name, with or without the TF prefix."""
    if model_class in HEADS:
        return model_class
    name = model_class[2:] if model_class.startswith("TF") else model_class
    for head, cls in MODEL_CLASSES.items():
        if cls == name:
            return head
    raise ValueError(f"`model_class` should be one of {', '.join(HEADS)} or a GPT-2 model class name. "
                     f"Received: model_class={model_class!r}")


def expected_shapes(config, head: str = "lm") -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every parameter of the model class `head` (a key of HEADS or a class name).

    `lm_head.weight` is listed for the LM heads even when tied; `check_state` fills it from wte when absent.
    """
    head = head_of(head)
    dims = _dims(config)
    out: dict[str, tuple[int, ...]] = {}
    for pattern, shape, heads, flag in _in_state_dict_order(config.n_layer):
        if head in heads and (flag is None or getattr(config, flag)):
            out[pattern] = tuple(dims[d] for d in shape)
    return out


def _in_state_dict_order(n_layer: int):
    """PARAMETERS with `{i}` filled, block by block, in the order of a transformers state_dict."""
    block = [p for p in PARAMETERS if "{i}" in p[0]]
    first = PARAMETERS.index(block[0])
    yield from PARAMETERS[:first]
    for i in range(n_layer):
        for pattern, *rest in block:
            yield (pattern.format(i=i), *rest)
    yield from PARAMETERS[first + len(block):]


def order_key(name: str) -> tuple:
    """Sort key putting canonical names in state_dict order (wte, wpe, h.0..., h.1..., ln_f, heads)."""
    for pos, (pattern, *_) in enumerate(PARAMETERS):
        match = pattern_regex(pattern).fullmatch(name)
        if match:
            block = int(match["i"]) if "{i}" in pattern else (-1 if pos < 2 else 1 << 30)
            return (0, block, pos)
    return (1, 0, 0)  # unknown names last, in their given order (sorted() is stable)


@functools.lru_cache(maxsize=None)
def pattern_regex(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(re.escape("{i}"), r"(?P<i>\d+)"))


def infer_head(arrays: Mapping[str, object]) -> str:
    """The head whose head tensors appear among canonical `arrays` ("lm" when only lm_head; "base" when none)."""
    names = set(arrays)
    for head in ("double_heads", "seq_cls", "token_cls", "qa", "lm"):
        own = {p for p, _, heads, _ in PARAMETERS if heads == (head,) or (head == "lm" and p == "lm_head.weight")}
        if names & own:
            return head
    return "base"


def class_name_from_config(config) -> str:
    """The PyTorch class name a config's `architectures` names (a "TF" prefix dropped), else GPT2LMHeadModel."""
    for name in config.architectures or ():
        name = name[2:] if name.startswith("TF") else name
        if name in MODEL_CLASSES.values():
            return name
    return MODEL_CLASSES["lm"]
