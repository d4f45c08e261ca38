"""Tokenizer files for DST: vocab.json, merges.txt, tokenizer.json, tokenizer_config.json (+ what SRC has).

A transformers SRC has some of them (transformers 5 saves only tokenizer.json + tokenizer_config.json, older
versions vocab.json + merges.txt): we copy what is there, byte for byte. OpenAI's release has encoder.json (the
mapping vocab.json holds) and vocab.bpe (merges.txt, `#version` line included): copied under those names. The
missing files are written by gpt2_core's GPT2Tokenizer, loaded from the copies, so DST's tokenizer.json is the
one our tokenizer (and transformers) reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from gpt2_core.io_utils import read_json_object
from gpt2_core.tokenizer import GPT2Tokenizer

COPIED = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "added_tokens.json")
OPENAI_NAMES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}
ALWAYS = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")
EOS = "<|endoftext|>"
MERGES_HEADER = b"#version: 0.2\n"


def eos_id(encoder_json: str) -> int | None:
    """The id of <|endoftext|> in an encoder.json / vocab.json, or None."""
    try:
        vocab = read_json_object(encoder_json)
    except (OSError, ValueError) as e:
        raise ValueError(f"{encoder_json}: cannot read the vocabulary ({e})") from e
    value = vocab.get(EOS)
    return value if isinstance(value, int) else None


def write_tokenizer_files(found: dict[str, str], directory: str, *, model_max_length: int) -> list[str]:
    """Copy the tokenizer files in `found` (DST name or OpenAI name -> path) into `directory`, then write the
    missing ones of vocab.json, merges.txt, tokenizer.json and tokenizer_config.json. Returns the names written
    (none when `found` holds no vocabulary)."""
    sources = {OPENAI_NAMES.get(name, name): path for name, path in found.items()
               if OPENAI_NAMES.get(name, name) in COPIED}
    if not ({"vocab.json", "merges.txt"} <= set(sources) or "tokenizer.json" in sources):
        return []
    for name, path in sources.items():
        target = os.path.join(directory, name)
        if name == "merges.txt":
            _copy_merges(path, target)
        else:
            shutil.copyfile(path, target)
    missing = [name for name in ALWAYS if name not in sources]
    if missing:
        try:
            tokenizer = GPT2Tokenizer.from_pretrained(directory)
        except (OSError, ValueError) as e:  # name SRC's files, not our temp copies
            raise ValueError(f"{', '.join(sorted(sources.values()))}: not a GPT-2 tokenizer ({e})") from e
        if "tokenizer_config.json" not in sources:
            tokenizer.model_max_length = model_max_length
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            tokenizer.save_pretrained(scratch)
            for name in [*missing, "special_tokens_map.json"]:
                if name not in sources and os.path.exists(os.path.join(scratch, name)):
                    os.replace(os.path.join(scratch, name), os.path.join(directory, name))
    return sorted(name for name in os.listdir(directory) if name in COPIED)


def _copy_merges(path: str, target: str) -> None:
    # transformers skips the first line of merges.txt whatever it holds: a file without the `#version` header
    # would lose its first merge.
    with open(path, "rb") as f:
        first = f.readline()
    if first.startswith(b"#version"):
        shutil.copyfile(path, target)
        return
    with open(path, "rb") as f, open(target, "wb") as out:
        out.write(MERGES_HEADER)
        shutil.copyfileobj(f, out)
