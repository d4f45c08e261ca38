"""What the training tests of both backends share: a small corpus, a tiny GPT-2 shape, its data, and reading a
checkpoint's weights."""

import random

import numpy as np

from gpt2_core import training as core
from gpt2_core.checkpoint import find_weights
from gpt2_core.tokenizer import GPT2Tokenizer

TINY = dict(n_layer=2, n_embd=32, n_head=2, n_positions=64, block_size=32, dtype="float32")


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
