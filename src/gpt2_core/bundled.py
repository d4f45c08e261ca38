"""The small GPT-2 that ships inside the package, so generating, evaluating and serving work offline right after
install. It has its own name, BUNDLED_NAME, which no hub model uses (the hub only keeps the historic org-less
ids, and this is not one of them); the name `gpt2` always means OpenAI's GPT-2 and is never replaced by it.

    >>> from gpt2_core.bundled import default_model, BUNDLED_NAME
    >>> GPT2LMHeadModel.from_pretrained(BUNDLED_NAME)      # or default_model(), its folder  # doctest: +SKIP

Its model card (README.md in the folder) says what it was trained on, with which command, and how well it does.
"""

from __future__ import annotations

import os

BUNDLED_NAME = "gpt2-bundled-tiny"
_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled_model")


def default_model() -> str:
    """The bundled model's local folder (HF layout: config.json, model.safetensors, tokenizer files)."""
    if not os.path.isfile(os.path.join(_FOLDER, "model.safetensors")):
        raise FileNotFoundError(f"the bundled model is missing from this installation ({_FOLDER}); "
                                "`make model` rebuilds it, or pass --model")
    return _FOLDER


def is_bundled(name) -> bool:
    return os.fspath(name) == BUNDLED_NAME


def default_model_note(prog: str) -> str:
    """The one line a CLI prints on stderr when it falls back to the bundled model."""
    return (f"{prog}: no --model given: using the bundled model {BUNDLED_NAME!r} (a small GPT-2 trained on the "
            "Linux kernel documentation; pass --model gpt2 for OpenAI's GPT-2)")
