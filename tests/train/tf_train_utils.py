"""What the training tests of both backends share: a small corpus, a tiny GPT-2 shape, its data, reading a
checkpoint's weights, and the bf16-vs-float32 tolerance."""

import random

import numpy as np

from gpt2_core import training as core
from gpt2_core.checkpoint import find_weights
from gpt2_core.tokenizer import GPT2Tokenizer

TINY = dict(n_layer=2, n_embd=32, n_head=2, n_positions=64, block_size=32, dtype="float32")
# A bf16 run's losses against float32's on the same settings, relative. bfloat16 keeps 8 significant bits: one
# rounding is up to 2^-9 ~ 2e-3 relative. Each logit carries a few roundings (torch autocast: the matmul inputs;
# Keras's mixed_bfloat16: every activation between layers too), zero-mean, which mostly cancel in the loss, a mean
# over all B x T tokens, and the weights after a few steps differ by far less than the step itself. Measured over
# 30 steps of TINY: 1.5e-4 (torch), 1.3e-3 (Keras). 5e-3 allows ~2.5 roundings, and is ~1/100 of what the tests'
# runs move the loss by (they also check that bf16 really ran: its losses are not float32's bits).
BF16_LOSS_RTOL = 5e-3


def write_corpus(folder, words=8000):
    rng = random.Random(0)
    vocab = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex every jolly "
             "zebra near the old river bank, then they all go home.").split()
    path = folder / "corpus.txt"
    path.write_text(" ".join(rng.choice(vocab) for _ in range(words)), encoding="utf-8")
    return str(path)


def loader(cfg):
    tokenizer = GPT2Tokenizer.from_pretrained("gpt2")
    return lambda: core.load_train_data(cfg, tokenizer)


def weights(folder) -> dict[str, np.ndarray]:
    """The checkpoint's model.safetensors, by name."""
    from safetensors.numpy import load_file

    files = find_weights(str(folder))
    out = {}
    for path in files.paths:
        out.update(load_file(path))
    return out
