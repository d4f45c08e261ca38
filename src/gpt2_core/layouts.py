"""Weight-name tables: our canonical names <-> the names and array layouts of each checkpoint format, and the check
that a renamed state fits a model.

Canonical names are the transformers PyTorch state_dict names (``transformer.h.0.attn.c_attn.weight``, ...) with
the Conv1D (in, out) kernel layout; gpt2_core.parameters lists them per model class (and its names import from
here as before). Each other layout is a table of rows ``(ours, theirs, transform)`` where
``{i}`` stands for the block index and the transform says how their array relates to ours. Nothing here looks at
a name to decide what to do with an array: the tables decide.

    >>> import numpy as np
    >>> from gpt2_core import layouts
    >>> tf = layouts.from_canonical({"score.weight": np.zeros((3, 8))}, "hf_tf", model_class="seq_cls")
    >>> {k: v.shape for k, v in tf.items()}
    {'tfgpt2_for_sequence_classification/score/kernel:0': (8, 3)}
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .dtypes import BF16Array
from .parameters import (BLOCK, HEADS, MODEL_CLASSES, PARAMETERS, TIED_TO,  # noqa: F401  (imported from here)
                         class_name_from_config, expected_shapes, head_of, infer_head, order_key, pattern_regex)

logger = logging.getLogger(__name__)

LAYOUTS = ("hf_pt", "hf_tf", "openai_tf1")

# Keras names a TF model after its class (tf_keras' to_snake_case of parameters.MODEL_CLASSES' names with the "TF"
# prefix), and transformers-TF writes that name in front of every weight name in tf_model.h5.
KERAS_MODEL_NAMES = {
    "base": "tfgpt2_model",
    "lm": "tfgpt2lm_head_model",
    "double_heads": "tfgpt2_double_heads_model",
    "seq_cls": "tfgpt2_for_sequence_classification",
    "token_cls": "tfgpt2_for_token_classification",
    "qa": "tfgpt2_for_question_answering",
}
# The top-level Keras layers of each TF model, in the order Keras lists them in tf_model.h5's `layer_names`
# (the order the model class assigns them: TFGPT2ForSequenceClassification creates `score` first).
KERAS_LAYERS = {
    "base": ("transformer",),
    "lm": ("transformer",),
    "double_heads": ("transformer", "multiple_choice_head"),
    "seq_cls": ("score", "transformer"),
    "token_cls": ("transformer", "classifier"),
    "qa": ("transformer", "qa_outputs"),
}


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the model: lists every missing, unexpected and wrong-shape name."""

    def __init__(self, message: str, *, missing=(), unexpected=(), wrong_shape=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.wrong_shape = list(wrong_shape)  # (name, expected shape, got shape)


# ---------------------------------------------------------------------------------------------------------------
# Transforms: how their array relates to ours. Both are data: a leading axis of size 1 to drop, a transpose.
@dataclass(frozen=True)
class Transform:
    name: str
    leading_one: bool = False  # theirs = ours[None]: OpenAI's (1, in, out) kernels, TF Conv1D's (1, out) biases
    transpose: bool = False    # theirs = ours.T: Keras Dense kernels are (in, out), torch Linear weights (out, in)

    def to_ours(self, array: np.ndarray, their_name: str) -> np.ndarray:
        if self.leading_one:
            if array.ndim < 1 or array.shape[0] != 1:
                raise CheckpointMismatchError(
                    f"{their_name} should have a leading axis of size 1 ({self.name}). Received shape: {array.shape}")
            array = array.reshape(array.shape[1:])
        if self.transpose:
            array = _transposed(array, their_name)
        return array

    def to_theirs(self, array: np.ndarray, our_name: str) -> np.ndarray:
        if self.transpose:
            array = _transposed(array, our_name)
        if self.leading_one:
            array = array.reshape((1, *array.shape))
        return array


def _transposed(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim != 2:
        raise CheckpointMismatchError(f"{name} should be a 2-D kernel to transpose. Received shape: {array.shape}")
    out = np.ascontiguousarray(array.T)  # writers need C order; a copy, so only small head kernels pay it
    return out.view(BF16Array) if isinstance(array, BF16Array) else out  # keep bfloat16 bits tagged


SAME = Transform("same")
LEADING_ONE = Transform("leading_one", leading_one=True)
TRANSPOSED = Transform("transposed", transpose=True)


@dataclass(frozen=True)
class Row:
    ours: str
    theirs: str | None  # None: the layout does not store it (a tied weight, equal to its TIED_TO source)
    transform: Transform = SAME


@dataclass(frozen=True)
class Layout:
    """A table plus the two prefix rules the formats have.

    optional_prefix: their body names may lack it (transformers' GPT2Model saves ``h.0...`` not
        ``transformer.h.0...``); added on read when a name only matches with it, dropped on write for head "base".
    model_prefix: a regex of a prefix every name carries in files (the Keras model name, ``tfgpt2lm_head_model/``,
        or older spellings like ``tfgp_t2lm_head_model/``); stripped on read, written per model class on write.
    Rows are searched in order: on write the first row of a canonical name wins, later rows are read aliases.
    """

    name: str
    rows: tuple[Row, ...]
    ignore: tuple[str, ...] = ()  # regexes of their names that are buffers, not parameters
    optional_prefix: str = ""
    model_prefix: str | None = None


def _hf_pt_rows():
    return tuple(Row(pattern, pattern) for pattern, *_ in PARAMETERS)


def _hf_tf_rows():
    body = "transformer/h_._{i}/"
    rows = [
        Row("transformer.wte.weight", "transformer/wte/embeddings:0"),
        Row("transformer.wte.weight", "transformer/wte/weight:0"),  # older transformers-TF (TFSharedEmbeddings)
        Row("transformer.wpe.weight", "transformer/wpe/embeddings:0"),
    ]
    for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("ln_cross_attn", "ln_cross_attn")):
        rows += [Row(f"{BLOCK}{ours}.weight", f"{body}{theirs}/gamma:0"),
                 Row(f"{BLOCK}{ours}.bias", f"{body}{theirs}/beta:0")]
    # TFConv1D keeps the torch Conv1D (in, out) kernel but stores its bias as (1, out).
    for conv in ("attn.c_attn", "attn.c_proj", "crossattention.c_attn", "crossattention.q_attn",
                 "crossattention.c_proj", "mlp.c_fc", "mlp.c_proj"):
        path = conv.replace(".", "/")
        rows += [Row(f"{BLOCK}{conv}.weight", f"{body}{path}/weight:0"),
                 Row(f"{BLOCK}{conv}.bias", f"{body}{path}/bias:0", LEADING_ONE)]
    rows += [
        Row("transformer.ln_f.weight", "transformer/ln_f/gamma:0"),
        Row("transformer.ln_f.bias", "transformer/ln_f/beta:0"),
        Row("lm_head.weight", None),  # TFGPT2LMHeadModel multiplies by wte; there is no separate kernel
        # Keras Dense heads: (in, out) kernels.
        Row("multiple_choice_head.summary.weight", "multiple_choice_head/summary/kernel:0", TRANSPOSED),
        Row("multiple_choice_head.summary.bias", "multiple_choice_head/summary/bias:0"),
        Row("score.weight", "score/kernel:0", TRANSPOSED),
        Row("classifier.weight", "classifier/kernel:0", TRANSPOSED),
        Row("classifier.bias", "classifier/bias:0"),
        Row("qa_outputs.weight", "qa_outputs/kernel:0", TRANSPOSED),
        Row("qa_outputs.bias", "qa_outputs/bias:0"),
    ]
    return tuple(rows)


def _openai_tf1_rows():
    body = "model/h{i}/"
    rows = [Row("transformer.wte.weight", "model/wte"), Row("transformer.wpe.weight", "model/wpe")]
    for ln in ("ln_1", "ln_2"):
        rows += [Row(f"{BLOCK}{ln}.weight", f"{body}{ln}/g"), Row(f"{BLOCK}{ln}.bias", f"{body}{ln}/b")]
    # OpenAI's conv1d kernels are (1, in, out): a 1x1 convolution; biases are plain (out,).
    for conv in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        path = conv.replace(".", "/")
        rows += [Row(f"{BLOCK}{conv}.weight", f"{body}{path}/w", LEADING_ONE),
                 Row(f"{BLOCK}{conv}.bias", f"{body}{path}/b")]
    rows += [Row("transformer.ln_f.weight", "model/ln_f/g"), Row("transformer.ln_f.bias", "model/ln_f/b"),
             Row("lm_head.weight", None)]
    return tuple(rows)


TABLES: dict[str, Layout] = {
    "hf_pt": Layout(
        "hf_pt", _hf_pt_rows(),
        # Causal-mask buffers that older transformers saved with the weights (the hub's gpt2 files have them).
        ignore=(r"(transformer\.)?h\.\d+\.(attn|crossattention)\.(bias|masked_bias)",),
        optional_prefix="transformer."),
    "hf_tf": Layout("hf_tf", _hf_tf_rows(), model_prefix=r"tf[a-z0-9_]*/"),
    "openai_tf1": Layout("openai_tf1", _openai_tf1_rows()),
}


# ---------------------------------------------------------------------------------------------------------------
class _Index:
    """Row lookup by name in either direction: exact names in a dict, `{i}` patterns as regexes."""

    def __init__(self, rows, key):
        self.exact: dict[str, Row] = {}
        self.patterns: list[tuple[re.Pattern, Row]] = []
        for row in rows:
            name = getattr(row, key)
            if name is None:
                continue
            if "{i}" in name:
                self.patterns.append((pattern_regex(name), row))
            else:
                self.exact.setdefault(name, row)

    def find(self, name: str) -> tuple[Row, str | None] | None:
        row = self.exact.get(name)
        if row is not None:
            return row, None
        for regex, row in self.patterns:
            match = regex.fullmatch(name)
            if match:
                return row, match["i"]
        return None


_INDEXES: dict[tuple[str, str], _Index] = {}


def get_layout(layout: str) -> Layout:
    if layout not in TABLES:
        raise ValueError(f"`layout` should be one of {', '.join(LAYOUTS)}. Received: layout={layout!r}")
    return TABLES[layout]


def _index(layout: str, key: str) -> _Index:
    if (layout, key) not in _INDEXES:
        _INDEXES[layout, key] = _Index(get_layout(layout).rows, key)
    return _INDEXES[layout, key]


def _find_theirs(name: str, layout: str) -> tuple[Row, str | None] | None:
    """The row of one of their names (model prefix stripped, optional prefix tried), or None."""
    table = get_layout(layout)
    if table.model_prefix:
        match = re.match(table.model_prefix, name)
        if match:
            name = name[match.end():]
    idx = _index(layout, "theirs")
    hit = idx.find(name)
    if hit is None and table.optional_prefix and not name.startswith(table.optional_prefix):
        hit = idx.find(table.optional_prefix + name)
    return hit


def _ours_name(row: Row, i: str | None) -> str:
    return row.ours.format(i=i) if i is not None else row.ours


def canonical_name(their_name: str, layout: str) -> str | None:
    """The canonical name of one of `layout`'s names (prefix rules applied), or None when the table lacks it."""
    hit = _find_theirs(their_name, layout)
    return _ours_name(*hit) if hit is not None else None


def to_canonical(arrays: Mapping[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """Rename a checkpoint's arrays to canonical names and our array layout.

    Drops the buffers the layout marks as ignored; adds the `transformer.` prefix GPT2Model files lack; strips
    the Keras model name of transformers-TF files. Names the table does not know pass through unchanged, so
    `check_state` reports them as unexpected. Arrays that need no transform are returned as they came (a memory
    map stays a memory map).
    """
    table = get_layout(layout)
    ignore = [re.compile(p) for p in table.ignore]
    out: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for name, array in arrays.items():
        if any(p.fullmatch(name) for p in ignore):
            continue
        hit = _find_theirs(name, layout)
        if hit is None:
            ours, value = name, array
        else:
            ours = _ours_name(*hit)
            value = hit[0].transform.to_ours(np.asanyarray(array), name)  # "any": keeps memmaps, BF16Array
        if ours in out:
            raise CheckpointMismatchError(
                f"{name!r} and {sources[ours]!r} both map to {ours!r} in layout {layout!r}; the checkpoint holds "
                "the same tensor twice under two names")
        out[ours] = value
        sources[ours] = name
    return out


def from_canonical(arrays: Mapping[str, np.ndarray], layout: str, *, model_class: str | None = None
                   ) -> dict[str, np.ndarray]:
    """Rename canonical arrays to the names and array layout of `layout`, as the model class `model_class` saves.

    `model_class` is a key of HEADS or a transformers class name (TF prefix allowed); None infers it from the head
    tensors present (no head tensor: "base"). For "hf_pt" with head "base" the names lose `transformer.` like
    transformers' GPT2Model files; for "hf_tf" every name gets the Keras model name in front. A tied weight the
    layout does not store (lm_head in hf_tf and openai_tf1) is dropped when it equals its source and raises
    otherwise. A name with no row raises ValueError.
    """
    table = get_layout(layout)
    head = head_of(model_class) if model_class is not None else infer_head(arrays)
    drop_prefix = table.optional_prefix if head == "base" else ""
    prefix = KERAS_MODEL_NAMES[head] + "/" if table.model_prefix else ""
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        hit = _index(layout, "ours").find(name)
        if hit is None:
            raise ValueError(f"{name!r} has no name in layout {layout!r}; that format cannot store it")
        row, i = hit
        if row.theirs is None:
            source = TIED_TO.get(name)
            if source in arrays and (arrays[source] is array
                                     or np.array_equal(np.asarray(arrays[source]), np.asarray(array))):
                continue
            raise ValueError(f"Layout {layout!r} stores no {name!r}: it must equal {source!r} (tied), but "
                             f"{'differs' if source in arrays else 'that is absent'}")
        theirs = row.theirs.format(i=i) if i is not None else row.theirs
        if drop_prefix and theirs.startswith(drop_prefix):
            theirs = theirs[len(drop_prefix):]
        out[prefix + theirs] = row.transform.to_theirs(np.asanyarray(array), name)
    return out


def convert(arrays: Mapping[str, np.ndarray], source: str, target: str, *, model_class: str | None = None
            ) -> dict[str, np.ndarray]:
    """Arrays in layout `source` -> arrays in layout `target` (through the canonical names)."""
    return from_canonical(to_canonical(arrays, source), target, model_class=model_class)


# ---------------------------------------------------------------------------------------------------------------
def check_state(expected: Mapping[str, tuple], got: Mapping[str, np.ndarray], *, tied=("lm_head.weight",)
                ) -> dict[str, np.ndarray]:
    """Check canonical arrays against `expected_shapes(...)` and return them in that order, ready to load.

    Tied names (`tied`) absent from `got` are filled from their source (lm_head from wte). Compares both key sets
    and every shape, and raises one CheckpointMismatchError listing all missing, unexpected and wrong-shape names.
    """
    got = dict(got)
    for name in tied:
        source = TIED_TO.get(name)
        if name in expected and name not in got and source in got:
            got[name] = got[source]
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected]
    wrong = [(n, tuple(expected[n]), tuple(np.shape(got[n]))) for n in expected
             if n in got and tuple(np.shape(got[n])) != tuple(expected[n])]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(_mismatch_message(missing, unexpected, wrong, tied),
                                      missing=missing, unexpected=unexpected, wrong_shape=wrong)
    return {n: got[n] for n in expected}


def _mismatch_message(missing, unexpected, wrong, tied) -> str:
    def listing(items, limit=12):
        shown = ", ".join(items[:limit])
        return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

    parts = ["The checkpoint does not fit the model."]
    if missing:
        parts.append(f"Missing ({len(missing)}): {listing(missing)}.")
    if unexpected:
        parts.append(f"Unexpected ({len(unexpected)}): {listing(unexpected)}.")
    if wrong:
        parts.append(f"Wrong shape ({len(wrong)}): "
                     + listing([f"{n} expected {e} got {g}" for n, e, g in wrong]) + ".")
    # Hints for the mistakes we can recognise.
    if any(canonical_name(n, layout) not in (None, n) for n in unexpected for layout in LAYOUTS):
        parts.append("Hint: the unexpected names look like a file's own layout; convert them with "
                     "layouts.to_canonical first.")
    if "lm_head.weight" in missing and "lm_head.weight" not in tied:
        parts.append("Hint: lm_head.weight is untied (tie_word_embeddings=False) and the checkpoint lacks it.")
    if wrong and {n for n, *_ in wrong} >= {"transformer.wte.weight"}:
        parts.append("Hint: a vocab_size / n_embd / n_layer different from the checkpoint's config.json?")
    return " ".join(parts)


def fit_to_head(state: Mapping[str, np.ndarray], config, head: str, *, model_name: str) -> dict[str, np.ndarray]:
    """`check_state` for loading canonical `state` into the class of `head`, after what transformers tolerates:
    tensors of other heads are dropped, and this head's own tensors may be missing (the model keeps or gets a
    random init). Both are logged as warnings naming `model_name` and the tensors. Both backends load through it.
    """
    expected = expected_shapes(config, head)
    every_head = set().union(*(expected_shapes(config, h) for h in HEADS))
    foreign = [name for name in state if name not in expected and name in every_head]
    if foreign:
        logger.warning("Checkpoint tensors not used by %s: %s", model_name, ", ".join(foreign))
    state = {name: array for name, array in state.items() if name not in foreign}
    own = set(expected) - set(expected_shapes(config, "base")) - set(TIED_TO)
    absent = [name for name in expected if name in own and name not in state]
    if absent:
        logger.warning("%s weights not in the checkpoint, initialised at random: %s", model_name, ", ".join(absent))
        expected = {name: shape for name, shape in expected.items() if name not in absent}
    tied = ("lm_head.weight",) if config.tie_word_embeddings else ()
    return check_state(expected, state, tied=tied)
