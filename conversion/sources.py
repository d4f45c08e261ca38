"""SRC -> a Source: config, model class, canonical tensors (memory-mapped where the format allows) and the side files.

Two kinds of SRC:
  * a transformers model (directory, hub id or one of the five names): config.json + whatever weight file
    `checkpoint.find_weights` prefers, read by `checkpoint.read_weights` (pytorch_model.bin with torch here);
  * an OpenAI GPT-2 release directory: hparams.json + a TF1 checkpoint (`checkpoint`, model.ckpt.index/.data) +
    encoder.json / vocab.bpe.
Either way the tensors are renamed to canonical names by the layout tables and checked whole against the config.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from gpt2_core import checkpoint, hub, layouts
from gpt2_core.checkpoint import CheckpointError
from gpt2_core.config import GPT2Config
from gpt2_core.dtypes import BF16Array
from gpt2_core.io_utils import read_json_object

from .tf1_bundle import TF1Bundle, UnsupportedBundleError
from .tokenizer_files import COPIED, eos_id

logger = logging.getLogger(__name__)

GENERATION_CONFIG = "generation_config.json"
HPARAMS = "hparams.json"
HPARAMS_FIELDS = {"n_vocab": "vocab_size", "n_ctx": "n_positions", "n_embd": "n_embd", "n_head": "n_head",
                  "n_layer": "n_layer"}
# Variables a TF1 training run saves beside the model: optimizer slots and counters.
_TF1_TRAINING_STATE = re.compile(r"(.*/Adam(_\d+)?|.*/Momentum|global_step|beta[12]_power(_\d+)?)")


@dataclass
class Source:
    name: str                           # SRC as given
    weights: str                        # the weight file(s), for messages
    config: GPT2Config
    head: str                           # a key of layouts.HEADS
    state: dict[str, np.ndarray]        # canonical names, in model order; tied lm_head left out
    side_files: dict[str, str] = field(default_factory=dict)  # tokenizer / generation config name -> path

    @property
    def num_parameters(self) -> int:
        return sum(int(np.prod(a.shape)) for a in self.state.values())


def is_openai_release(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, HPARAMS))


def open_source(src: str | os.PathLike, **hub_kwargs) -> Source:
    src = os.fspath(src)
    if is_openai_release(src):
        return _open_openai(src)
    return _open_transformers(src, **hub_kwargs)


# ---------------------------------------------------------------------------------------------------------------
def _open_transformers(src: str, **hub_kwargs) -> Source:
    config = GPT2Config.from_pretrained(src, **hub_kwargs)
    files = checkpoint.find_weights(src, **hub_kwargs)
    weights = ", ".join(files.paths)
    if files.kind.startswith("pytorch_bin"):
        arrays, layout = _read_torch_bins(files), "hf_pt"
    else:  # bfloat16 stays bfloat16 (as its bits): without --dtype DST keeps SRC's dtype
        arrays, layout = checkpoint.read_weights(files, bf16="bits")
    side = {}
    for name in (*COPIED, GENERATION_CONFIG):
        try:
            path = hub.resolve_file(src, name, **hub_kwargs)
        except hub.ModelNotFoundError:  # offline and not cached: DST simply goes without it
            path = None
        if path is not None:
            side[name] = path
    return _checked(src, weights, config, arrays, layout, side)


def _read_torch_bins(files: checkpoint.WeightFiles) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(files.paths[0], "reading pytorch_model.bin needs torch (pip install torch)") from e

    def load(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # files from torch < 1.6 are not zip archives and cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)

    # bfloat16 kept as its bits (core's default conversion upcasts it to float32)
    return checkpoint.state_from_torch_bin(files.paths, load, convert=_from_torch, index=files.index)


def _from_torch(tensor) -> np.ndarray:
    """A CPU torch tensor as a numpy array sharing its memory (bfloat16 as a BF16Array of its bits)."""
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BF16Array)
    return tensor.numpy()


# ---------------------------------------------------------------------------------------------------------------
def _open_openai(src: str) -> Source:
    config = read_hparams(os.path.join(src, HPARAMS))
    prefix = checkpoint_prefix(src)
    try:
        bundle = TF1Bundle(prefix)
        arrays = {name: bundle.get_tensor(name) for name in bundle.keys() if not _TF1_TRAINING_STATE.fullmatch(name)}
    except UnsupportedBundleError:
        arrays = _read_with_tensorflow(prefix)
    side = {name: os.path.join(src, name) for name in ("encoder.json", "vocab.bpe")
            if os.path.isfile(os.path.join(src, name))}
    if "encoder.json" in side:  # hparams.json has no special tokens: <|endoftext|> is GPT-2's bos and eos
        eos = eos_id(side["encoder.json"])
        if eos is not None:
            config.bos_token_id = config.eos_token_id = eos
    return _checked(src, prefix + ".index", config, arrays, "openai_tf1", side, config_file=HPARAMS)


def read_hparams(path: str) -> GPT2Config:
    """GPT2Config of an OpenAI release's hparams.json ({n_vocab, n_ctx, n_embd, n_head, n_layer})."""
    hparams = read_json_object(path)
    for key in HPARAMS_FIELDS:
        value = hparams.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{path}: `{key}` should be a positive integer. Received: {key}={value!r}")
    try:
        return GPT2Config(**{ours: hparams[theirs] for theirs, ours in HPARAMS_FIELDS.items()},
                          architectures=["GPT2LMHeadModel"], extra={"n_ctx": hparams["n_ctx"]})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def checkpoint_prefix(directory: str) -> str:
    """The checkpoint prefix a TF1 `checkpoint` file points to (or the directory's only *.index file)."""
    state_file = os.path.join(directory, "checkpoint")
    if os.path.isfile(state_file):
        with open(state_file, encoding="utf-8") as f:
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.MULTILINE)
        if match:
            path = match.group(1)
            # A relative path is relative to the directory; an absolute one from the machine that trained the
            # model usually is not there, but its file name is.
            for prefix in (os.path.join(directory, path), os.path.join(directory, os.path.basename(path))):
                if os.path.isfile(prefix + ".index"):
                    return prefix
            raise CheckpointError(state_file, f"points to {path!r}, but {path}.index is not in {directory}")
    indexes = glob.glob(os.path.join(glob.escape(directory), "*.index"))
    if len(indexes) != 1:
        raise CheckpointError(directory, f"has {HPARAMS} but {'no' if not indexes else 'several'} TF1 checkpoints "
                                         "(*.index) and no `checkpoint` file saying which to use")
    return indexes[0][: -len(".index")]


def _read_with_tensorflow(prefix: str) -> dict[str, np.ndarray]:
    try:
        import tensorflow as tf
    except ImportError:
        raise  # the UnsupportedBundleError being handled says what the checkpoint needs
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not _TF1_TRAINING_STATE.fullmatch(name)}


# ---------------------------------------------------------------------------------------------------------------
def _checked(src: str, weights: str, config: GPT2Config, arrays, layout: str, side: dict[str, str], *,
             config_file: str = "config.json") -> Source:
    """Canonical names, the model class, and a whole check against the config (an error names the weight file)."""
    try:
        canonical = layouts.to_canonical(arrays, layout)
        head = _head(config, canonical)
        tied = ("lm_head.weight",) if config.tie_word_embeddings else ()
        state = layouts.check_state(layouts.expected_shapes(config, head), canonical, tied=tied)
    except layouts.CheckpointMismatchError as e:
        raise layouts.CheckpointMismatchError(
            f"{weights}: does not match {config_file}: {e}", missing=e.missing, unexpected=e.unexpected,
            wrong_shape=e.wrong_shape) from e
    except ValueError as e:
        raise ValueError(f"{weights}: {e}") from e
    # A tied lm_head is wte: store it once, as transformers does.
    if config.tie_word_embeddings and "lm_head.weight" in state:
        lm_head, wte = state["lm_head.weight"], state["transformer.wte.weight"]
        if lm_head is wte or np.array_equal(lm_head, wte):
            del state["lm_head.weight"]
        else:
            logger.warning("%s: lm_head.weight differs from wte although tie_word_embeddings=True; keeping both",
                           weights)
    return Source(src, weights, config, head, state, side)


def _head(config: GPT2Config, canonical) -> str:
    for name in config.architectures or ():
        try:
            return layouts.head_of(name)
        except ValueError:
            continue
    head = layouts.infer_head(canonical)
    # Without architectures, a bare body is most useful as an LM with tied embeddings (a superset of GPT2Model).
    return "lm" if head == "base" else head
