"""Tokenizer files: reading and writing the files transformers saves for a GPT-2 tokenizer.

Read: tokenizer.json (the `tokenizers` format: transformers 5, and 4's fast tokenizer) or vocab.json + merges.txt
(4's slow tokenizer), with tokenizer_config.json, special_tokens_map.json and added_tokens.json when present.
Written: vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json, each
atomically; transformers 4 and 5 load them with `AutoTokenizer.from_pretrained` and give the same ids.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from .added_tokens import AddedEntry
from .bpe import ByteLevelBPE
from .io_utils import atomic_write_text

GPT2_MAX_LENGTH = 1024
VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length when a saved tokenizer names none
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
SETTINGS = ("clean_up_tokenization_spaces", "errors", "model_max_length", "padding_side", "truncation_side")


def token_content(value):
    """A token given as a string, an AddedToken-like object (`.content`) or a dict {"content": ...}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "content" in value:
        return value["content"]
    content = getattr(value, "content", None)
    return content if isinstance(content, str) else value


def read_tokenizer_files(paths: Mapping[str, str | None], *, name: str, builtin: bool) -> dict[str, Any]:
    """The `GPT2Tokenizer` constructor's arguments from the files in `paths` (file name -> path or None).

    Without tokenizer.json or vocab.json + merges.txt, a GPT-2 preset (`builtin`) gets the shipped vocabulary.
    """
    config: dict[str, Any] = {}
    for filename in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
        if paths.get(filename):
            config.update(_read_json(paths[filename], dict))
    added: list[AddedEntry] = []
    add_prefix_space = config.get("add_prefix_space")
    if paths.get("tokenizer.json"):
        bpe, vocab_extra, added, json_prefix = _read_tokenizer_json(paths["tokenizer.json"])
        add_prefix_space = json_prefix if add_prefix_space is None else add_prefix_space
    elif paths.get("vocab.json") and paths.get("merges.txt"):
        vocab = _read_json(paths["vocab.json"], dict)
        merges = _read_merges(paths["merges.txt"])
        try:
            bpe, vocab_extra = ByteLevelBPE.from_vocab(vocab, merges)
        except ValueError as e:
            raise ValueError(f"{paths['vocab.json']} and {paths['merges.txt']} do not match: {e}") from e
    elif builtin:
        bpe, vocab_extra = ByteLevelBPE.builtin(), None
    else:
        found = [f for f, p in paths.items() if p]
        raise OSError(f"Model {name!r} has no tokenizer files: it needs tokenizer.json or vocab.json + "
                      f"merges.txt (found: {found or 'none'})")
    if paths.get("added_tokens.json"):  # transformers 4's slow-tokenizer file: {content: id}
        for content, index in _read_json(paths["added_tokens.json"], dict).items():
            added.append(AddedEntry(content, int(index), special=False))
    for index, spec in (config.get("added_tokens_decoder") or {}).items():
        added.append(AddedEntry(spec["content"], int(index), bool(spec.get("special", False)),
                                spec.get("normalized")))
    options: dict[str, Any] = {}
    for key in SPECIAL_TOKEN_KEYS:
        if key in config:
            options[key] = token_content(config[key])
    extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
    if isinstance(extra, Mapping):
        extra = list(extra.values())
    options["additional_special_tokens"] = [token_content(t) for t in extra]
    for key in SETTINGS:
        if key in config and key != "model_max_length":
            options[key] = config[key]
    max_length = config.get("model_max_length")
    if max_length is None:
        max_length = GPT2_MAX_LENGTH if builtin else VERY_LARGE_INTEGER
    options["model_max_length"] = int(max_length)
    options["add_prefix_space"] = bool(add_prefix_space)
    return dict(options, bpe=bpe, vocab_extra=vocab_extra, added_tokens=added)


def write_tokenizer_files(directory: str, *, bpe: ByteLevelBPE, vocab: dict[str, int],
                          added: Sequence[AddedEntry], special: Mapping[str, str | None],
                          additional_special: Sequence[str], add_prefix_space: bool,
                          settings: Mapping[str, Any]) -> tuple[str, ...]:
    """Write the tokenizer files into `directory`; returns their paths. `vocab` is vocab.json's content (the BPE
    tokens and the vocabulary's other entries), `special` the named special tokens, `settings` the
    tokenizer_config.json values of SETTINGS."""
    if os.path.isfile(directory):
        raise ValueError(f"save_directory should be a directory, not a file: {directory!r}")
    os.makedirs(directory, exist_ok=True)
    added = sorted(added, key=lambda t: t.id)
    special_map = {k: v for k, v in special.items() if v is not None}
    if additional_special:
        special_map["additional_special_tokens"] = list(additional_special)
    config = {
        "add_prefix_space": add_prefix_space,
        "added_tokens_decoder": {str(t.id): {k: v for k, v in t.to_json().items() if k != "id"} for t in added},
        **{key: special.get(key) for key in ("bos_token", "eos_token", "unk_token", "pad_token")},
        **{k: v for k, v in special_map.items() if k not in ("bos_token", "eos_token", "unk_token", "pad_token")},
        **{key: settings[key] for key in SETTINGS},
        "tokenizer_class": "GPT2Tokenizer",
    }
    byte_level = {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
                  "use_regex": True}
    tokenizer_json = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [t.to_json() for t in added],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {},
        },
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [list(pair) for pair in bpe.merges()]},
    }
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": bpe.merges_text(),
        "tokenizer.json": json.dumps(tokenizer_json, ensure_ascii=False, indent=2),
        "tokenizer_config.json": json.dumps(config, ensure_ascii=False, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special_map, ensure_ascii=False, indent=2) + "\n",
    }
    written = []
    for filename, text in files.items():
        path = os.path.join(directory, filename)
        atomic_write_text(path, text)
        written.append(path)
    return tuple(written)


def _read_json(path: str, kind: type):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Cannot read {path}: {e}") from e
    if not isinstance(value, kind):
        raise ValueError(f"{path} should hold a JSON {kind.__name__}. Received: {type(value).__name__}")
    return value


def _read_merges(path: str) -> list[tuple[str, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read {path}: {e}") from e
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise ValueError(f"{path} line {number} should be two tokens separated by one space. Received: {line!r}")
        merges.append((pair[0], pair[1]))
    return merges


def _read_tokenizer_json(path: str):
    """BPE, vocabulary extras, added tokens and add_prefix_space of a `tokenizers` tokenizer.json."""
    data = _read_json(path, dict)
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{path} should hold a byte-level BPE model. Received: model type {model.get('type')!r}")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    bad = next((m for m in merges if len(m) != 2), None)
    if bad is not None:
        raise ValueError(f"{path}: each merge should be two tokens. Received: {bad!r}")
    try:
        bpe, extra = ByteLevelBPE.from_vocab(model["vocab"], merges)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    added = [AddedEntry(t["content"], int(t["id"]), bool(t.get("special", False)), t.get("normalized"))
             for t in data.get("added_tokens") or []]
    pre = data.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence":
        pre = next((p for p in pre.get("pretokenizers", []) if p.get("type") == "ByteLevel"), {})
    return bpe, extra, added, bool(pre.get("add_prefix_space", False))
