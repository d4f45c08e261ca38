"""Helpers for tests/conversion (fixtures in conftest.py). Tiny sources for gpt2-convert: a transformers 5 model directory and a fake OpenAI GPT-2 release (TF1 checkpoint).

Everything is built here from random numbers; nothing downloads. The OpenAI release is written by TensorFlow's own
tf.compat.v1 Saver under the variable names of OpenAI's `model.ckpt`, and the test states its own name mapping
(OPENAI_TO_HF) instead of trusting the one under test.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=16)


# ---------------------------------------------------------------------------------------------------------------
# A tiny byte-level BPE vocabulary: the 256 byte symbols, a few merges, <|endoftext|> last (as in GPT-2).
def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte: printable latin-1 bytes stand for themselves, the others are
    shifted past 255 in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, shifted = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + shifted)
            shifted += 1
    return [symbols[b] for b in range(256)]


MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("Ġa", "n"), ("Ġan", "d")]


def tiny_vocab() -> dict[str, int]:
    vocab = {s: i for i, s in enumerate(byte_symbols())}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


VOCAB_SIZE = len(tiny_vocab())  # 264


def write_tokenizer_sources(directory, *, openai: bool) -> None:
    """encoder.json + vocab.bpe (OpenAI spelling) or vocab.json + merges.txt (transformers spelling)."""
    vocab_name, merges_name = ("encoder.json", "vocab.bpe") if openai else ("vocab.json", "merges.txt")
    with open(os.path.join(directory, vocab_name), "w", encoding="utf-8") as f:
        json.dump(tiny_vocab(), f)
    with open(os.path.join(directory, merges_name), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))


# ---------------------------------------------------------------------------------------------------------------
# transformers 5 models
def hf_config(transformers, **overrides):
    return transformers.GPT2Config(vocab_size=VOCAB_SIZE, **TINY, bos_token_id=VOCAB_SIZE - 1,
                                   eos_token_id=VOCAB_SIZE - 1, **overrides)


def random_hf_model(transformers, class_name="GPT2LMHeadModel", seed=0, **overrides):
    """A transformers model with random values in every parameter (biases and LayerNorms too)."""
    import torch

    model = getattr(transformers, class_name)(hf_config(transformers, **overrides)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen) + (1.0 if ".ln_" in name and "weight" in name else 0))
    return model


IDS = np.array([[5, 200, 7, 263, 1, 99, 42, 17], [0, 1, 2, 3, 4, 5, 6, 7]])


def hf_logits(model, ids=IDS) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids))
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float().numpy()


# ---------------------------------------------------------------------------------------------------------------
# A fake OpenAI release
def openai_variables(n_vocab=VOCAB_SIZE, n_ctx=16, n_embd=32, n_layer=2, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"model/wte": (n_vocab, n_embd), "model/wpe": (n_ctx, n_embd),
              "model/ln_f/g": (n_embd,), "model/ln_f/b": (n_embd,)}
    for i in range(n_layer):
        h = f"model/h{i}/"
        shapes.update({
            h + "ln_1/g": (n_embd,), h + "ln_1/b": (n_embd,), h + "ln_2/g": (n_embd,), h + "ln_2/b": (n_embd,),
            h + "attn/c_attn/w": (1, n_embd, 3 * n_embd), h + "attn/c_attn/b": (3 * n_embd,),
            h + "attn/c_proj/w": (1, n_embd, n_embd), h + "attn/c_proj/b": (n_embd,),
            h + "mlp/c_fc/w": (1, n_embd, 4 * n_embd), h + "mlp/c_fc/b": (4 * n_embd,),
            h + "mlp/c_proj/w": (1, 4 * n_embd, n_embd), h + "mlp/c_proj/b": (n_embd,),
        })
    return {name: (0.2 * rng.standard_normal(shape) + (1.0 if name.endswith("/g") else 0.0)).astype(np.float32)
            for name, shape in shapes.items()}


def openai_to_hf(name: str) -> str:
    """The test's own statement of the mapping: model/h3/attn/c_attn/w -> transformer.h.3.attn.c_attn.weight."""
    parts = name.split("/")[1:]
    if parts[0].startswith("h"):
        parts = ["h", parts[0][1:], *parts[1:]]
    leaf = {"w": "weight", "b": "bias", "g": "weight"}.get(parts[-1])
    parts = parts[:-1] + [leaf] if leaf else parts + ["weight"]
    return "transformer." + ".".join(parts)


def save_tf1_checkpoint(variables: dict[str, np.ndarray], prefix: str) -> None:
    """Save `variables` under their exact names with tf.compat.v1's Saver (the V2 bundle OpenAI ships)."""
    tf = pytest.importorskip("tensorflow")
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        created = []
        for name, value in variables.items():
            value = np.asarray(value)
            dtype = tf.as_dtype(value.dtype)
            # Zero-initialised, then loaded from the session: no 500 MB of constants in the graph (.meta).
            scope, _, leaf = name.rpartition("/")
            with tf1.variable_scope(scope or tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
                created.append((tf1.get_variable(leaf, shape=value.shape, dtype=dtype,
                                                 initializer=tf1.zeros_initializer()), value))
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            for variable, value in created:
                variable.load(value, session)
            saver.save(session, prefix)


def write_openai_release(directory, *, variables=None, hparams=None) -> dict[str, np.ndarray]:
    """A fake OpenAI release in `directory`; returns the variables written."""
    os.makedirs(directory, exist_ok=True)
    variables = openai_variables() if variables is None else variables
    save_tf1_checkpoint(variables, os.path.join(directory, "model.ckpt"))
    with open(os.path.join(directory, "checkpoint"), "w") as f:  # relative paths, as in OpenAI's download
        f.write('model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')
    hparams = hparams or {"n_vocab": VOCAB_SIZE, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}
    with open(os.path.join(directory, "hparams.json"), "w") as f:
        json.dump(hparams, f, indent=2)
    write_tokenizer_sources(directory, openai=True)
    return variables
