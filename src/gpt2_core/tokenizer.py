"""GPT2Tokenizer: GPT-2's byte-level BPE with the transformers tokenizer API.

    >>> from gpt2_core import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")          # the built-in vocabulary: no download
    >>> tok("Hello world")["input_ids"]
    [15496, 995]
    >>> tok.pad_token = tok.eos_token
    >>> batch = tok(["Hello world", "Hi"], padding=True, return_tensors="np")
    >>> batch.input_ids.tolist(), batch.attention_mask.tolist()
    ([[15496, 995], [17250, 50256]], [[1, 1], [1, 0]])
    >>> tok.decode([15496, 995])
    'Hello world'

Ids equal tiktoken's GPT-2 encoding; the call API, padding, truncation, offsets and saved files follow
transformers' GPT-2 tokenizer (version 5), so `AutoTokenizer.from_pretrained(saved_dir)` gives the same ids.
Added and special tokens split the text before BPE, like transformers (specials first, then the others, each
leftmost-longest). The encoding machinery lives in `gpt2_core.bpe`.
"""

from __future__ import annotations

import array
import json
import logging
import os
import re
import sys
import weakref
from bisect import bisect_left
from itertools import accumulate, chain
from typing import Any, Iterable, Mapping, Sequence

from . import hub
from .bpe import EOS_TOKEN, MERGES_HEADER, ByteLevelBPE, byte_level_to_bytes, gc_paused
from .io_utils import atomic_write_text

logger = logging.getLogger(__name__)

# The checkpoints whose tokenizer is GPT-2's vocabulary, served from the package when no file is found locally.
BUILTIN_NAMES = frozenset({
    "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2",
    "openai-community/gpt2", "openai-community/gpt2-medium", "openai-community/gpt2-large",
    "openai-community/gpt2-xl", "distilbert/distilgpt2",
})
GPT2_MAX_LENGTH = 1024
VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length when a saved tokenizer names none

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_PAD_HINT = ("Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
             "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
             "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
# Batches of at least this many characters are encoded by a process pool on every core (Linux, fork), cut into
# this many chunks per process (small enough to balance the work, large enough to send few messages).
PARALLEL_MIN_CHARS = 1 << 20
_CHUNKS_PER_PROCESS = 8


class BatchEncoding(dict):
    """What a tokenizer call returns: a dict (`enc["input_ids"]`) with attribute access (`enc.input_ids`)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; it has {sorted(self)}") from None

    @property
    def data(self) -> dict:
        return dict(self)

    def to(self, device) -> "BatchEncoding":
        """Move torch tensors to `device` (other values are left alone); returns self."""
        for key, value in self.items():
            if hasattr(value, "to") and hasattr(value, "device"):
                self[key] = value.to(device)
        return self


class _Added:
    """An added token: its id and how it matches (specials are matched before the others)."""

    __slots__ = ("content", "id", "special", "normalized")

    def __init__(self, content: str, id: int, special: bool, normalized: bool | None = None):
        self.content, self.id, self.special = content, id, special
        self.normalized = (not special) if normalized is None else normalized

    def to_json(self) -> dict:
        return {"id": self.id, "content": self.content, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": self.normalized, "special": self.special}


class GPT2Tokenizer:
    """GPT-2's tokenizer: byte-level BPE ids (== tiktoken's), the transformers call API and file formats.

    Build it with `from_pretrained` (a preset name, a hub id or a directory); the constructor takes an already
    loaded `ByteLevelBPE`.
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, bpe: ByteLevelBPE | None = None, *, vocab_extra: Mapping[str, int] | None = None,
                 added_tokens: Iterable[_Added] = (), unk_token: str | None = EOS_TOKEN,
                 bos_token: str | None = EOS_TOKEN, eos_token: str | None = EOS_TOKEN,
                 pad_token: str | None = None, sep_token: str | None = None, cls_token: str | None = None,
                 mask_token: str | None = None, additional_special_tokens: Sequence[str] = (),
                 add_prefix_space: bool = False, errors: str = "replace",
                 model_max_length: int = GPT2_MAX_LENGTH, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 name_or_path: str = ""):
        self.bpe = bpe if bpe is not None else ByteLevelBPE.builtin()
        if vocab_extra is None:  # GPT-2's vocab.json: the BPE tokens plus <|endoftext|> right after them
            vocab_extra = {EOS_TOKEN: len(self.bpe.tokens)}
        self._vocab_extra = dict(vocab_extra)
        self.vocab_size = max(chain((len(self.bpe.tokens) - 1,), self._vocab_extra.values())) + 1
        self._added: dict[str, _Added] = {}
        self._version = 0  # bumped by every change to how text encodes (the process pool checks it)
        for token in added_tokens:
            self._added[token.content] = token
        for content, index in self._vocab_extra.items():  # vocabulary entries without a merge act as specials
            self._added.setdefault(content, _Added(content, index, special=True))
        self._size = max(chain((self.vocab_size,), (t.id + 1 for t in self._added.values())))
        self._add_prefix_space = bool(add_prefix_space)
        self.errors = errors
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.name_or_path = name_or_path
        self._special: dict[str, str | None] = {}
        self._additional_special: list[str] = []
        for key, value in (("unk_token", unk_token), ("bos_token", bos_token), ("eos_token", eos_token),
                           ("pad_token", pad_token), ("sep_token", sep_token), ("cls_token", cls_token),
                           ("mask_token", mask_token)):
            self._set_special(key, value)
        for content in additional_special_tokens:
            self._register(content, special=True)
            if content not in self._additional_special:
                self._additional_special.append(content)
        self.parallel_min_chars = PARALLEL_MIN_CHARS
        self._pool = None
        self._rebuild_added()

    # --------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, cache_dir=None, revision: str | None = None,
                        local_files_only: bool = False, token=None, force_download: bool = False,
                        **kwargs) -> "GPT2Tokenizer":
        """Load a tokenizer: a directory (tokenizer.json, or vocab.json + merges.txt), the HF cache, the hub.

        The GPT-2 presets (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, and their openai-community/ and
        distilbert/ ids) need no download: files in a directory of that name or in the HF cache win, otherwise
        the vocabulary shipped with the package is used. Keyword arguments override tokenizer_config.json
        (`pad_token=`, `add_prefix_space=`, `model_max_length=`, `padding_side=`, ...).
        """
        name = os.fspath(name_or_path)
        builtin = name in BUILTIN_NAMES
        hub_kwargs = dict(cache_dir=cache_dir, revision=revision, local_files_only=local_files_only, token=token,
                          force_download=force_download)
        paths = {f: hub.resolve_file(name, f, fallback_ok=builtin, **hub_kwargs) for f in TOKENIZER_FILES}
        return cls._from_files(paths, name=name, builtin=builtin, **kwargs)

    @classmethod
    def _from_files(cls, paths: Mapping[str, str | None], *, name: str, builtin: bool,
                    **kwargs) -> "GPT2Tokenizer":
        config: dict[str, Any] = {}
        for filename in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
            if paths.get(filename):
                config.update(_read_json(paths[filename], dict))
        added: list[_Added] = []
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
                added.append(_Added(content, int(index), special=False))
        for index, spec in (config.get("added_tokens_decoder") or {}).items():
            added.append(_Added(spec["content"], int(index), bool(spec.get("special", False)),
                                spec.get("normalized")))
        options: dict[str, Any] = {}
        for key in SPECIAL_TOKEN_KEYS:
            if key in config:
                options[key] = _token_content(config[key])
        extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
        if isinstance(extra, Mapping):
            extra = list(extra.values())
        options["additional_special_tokens"] = [_token_content(t) for t in extra]
        for key in ("errors", "padding_side", "truncation_side", "clean_up_tokenization_spaces"):
            if key in config:
                options[key] = config[key]
        max_length = config.get("model_max_length")
        if max_length is None:
            max_length = GPT2_MAX_LENGTH if builtin else VERY_LARGE_INTEGER
        options["model_max_length"] = int(max_length)
        options["add_prefix_space"] = bool(add_prefix_space)
        options.update(kwargs)
        return cls(bpe, vocab_extra=vocab_extra, added_tokens=added, name_or_path=name, **options)

    def save_pretrained(self, save_directory: str | os.PathLike, **_ignored) -> tuple[str, ...]:
        """Write vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        transformers (4 and 5) loads the directory with `AutoTokenizer.from_pretrained` and gives the same ids.
        Every file is written atomically.
        """
        directory = os.fspath(save_directory)
        if os.path.isfile(directory):
            raise ValueError(f"save_directory should be a directory, not a file: {directory!r}")
        os.makedirs(directory, exist_ok=True)
        vocab = self._base_vocab()
        added = sorted(self._added.values(), key=lambda t: t.id)
        special_map = {k: v for k, v in self._special.items() if v is not None}
        if self._additional_special:
            special_map["additional_special_tokens"] = list(self._additional_special)
        config = {
            "add_prefix_space": self.add_prefix_space,
            "added_tokens_decoder": {str(t.id): {k: v for k, v in t.to_json().items() if k != "id"} for t in added},
            **{key: self._special.get(key) for key in ("bos_token", "eos_token", "unk_token", "pad_token")},
            **{k: v for k, v in special_map.items() if k not in ("bos_token", "eos_token", "unk_token", "pad_token")},
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": self.errors,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "tokenizer_class": "GPT2Tokenizer",
        }
        byte_level = {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": True,
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
                      "vocab": vocab, "merges": [list(pair) for pair in self.bpe.merges()]},
        }
        files = {
            "vocab.json": json.dumps(vocab, ensure_ascii=False),
            "merges.txt": self.bpe.merges_text(),
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

    def _base_vocab(self) -> dict[str, int]:
        vocab = dict(self.bpe.encoder)
        vocab.update(self._vocab_extra)
        return dict(sorted(vocab.items(), key=lambda item: item[1]))

    # ------------------------------------------------------------------------------------ vocabulary views
    def __len__(self) -> int:
        return self._size

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self.bpe.encoder)
        vocab.update(self._vocab_extra)
        vocab.update((t.content, t.id) for t in self._added.values())
        return vocab

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: t.id for t in sorted(self._added.values(), key=lambda t: t.id)}

    @property
    def added_tokens_decoder(self) -> dict[int, str]:
        return {t.id: t.content for t in sorted(self._added.values(), key=lambda t: t.id)}

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return self.get_added_vocab()

    @property
    def add_prefix_space(self) -> bool:
        return self._add_prefix_space

    @add_prefix_space.setter
    def add_prefix_space(self, value: bool) -> None:
        self._add_prefix_space = bool(value)
        self._version += 1

    # ------------------------------------------------------------------------------------- special tokens
    def _set_special(self, key: str, value) -> None:
        content = _token_content(value)
        if content is not None and not isinstance(content, str):
            raise ValueError(f"{key} should be a string or None. Received: {key}={value!r}")
        if content is not None and content not in self._added and self._lookup(content) is None:
            # Like transformers: naming a token that is not in the vocabulary does not add it (its id is the
            # unknown token's); add_special_tokens() adds it.
            logger.warning("%s %r is not in the vocabulary; use add_special_tokens({%r: %r}) to add it",
                           key, content, key, content)
        self._special[key] = content

    def _lookup(self, token: str) -> int | None:
        added = self._added.get(token)
        if added is not None:
            return added.id
        index = self.bpe.encoder.get(token)
        return index if index is not None else self._vocab_extra.get(token)

    def _special_id(self, key: str) -> int | None:
        content = self._special.get(key)
        return None if content is None else self.convert_tokens_to_ids(content)

    bos_token = property(lambda self: self._special.get("bos_token"),
                         lambda self, v: self._set_special("bos_token", v))
    eos_token = property(lambda self: self._special.get("eos_token"),
                         lambda self, v: self._set_special("eos_token", v))
    unk_token = property(lambda self: self._special.get("unk_token"),
                         lambda self, v: self._set_special("unk_token", v))
    pad_token = property(lambda self: self._special.get("pad_token"),
                         lambda self, v: self._set_special("pad_token", v))
    sep_token = property(lambda self: self._special.get("sep_token"),
                         lambda self, v: self._set_special("sep_token", v))
    cls_token = property(lambda self: self._special.get("cls_token"),
                         lambda self, v: self._set_special("cls_token", v))
    mask_token = property(lambda self: self._special.get("mask_token"),
                          lambda self, v: self._set_special("mask_token", v))
    bos_token_id = property(lambda self: self._special_id("bos_token"))
    eos_token_id = property(lambda self: self._special_id("eos_token"))
    unk_token_id = property(lambda self: self._special_id("unk_token"))
    sep_token_id = property(lambda self: self._special_id("sep_token"))
    cls_token_id = property(lambda self: self._special_id("cls_token"))
    mask_token_id = property(lambda self: self._special_id("mask_token"))

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    @pad_token_id.setter
    def pad_token_id(self, value: int | None) -> None:
        self._set_special("pad_token", None if value is None else self.convert_ids_to_tokens(value))

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._additional_special)

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self._special.items() if v is not None}
        if self._additional_special:
            out["additional_special_tokens"] = list(self._additional_special)
        return out

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [v for v in self._special.values() if v is not None] + self._additional_special
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    # ------------------------------------------------------------------------------------- adding tokens
    def add_tokens(self, new_tokens: str | Sequence[str], special_tokens: bool = False) -> int:
        """Add tokens matched in text before BPE; returns how many were not added tokens already.

        A token already in the vocabulary keeps its id (it only starts splitting the text); a new one gets the
        next id, `len(tok)`.
        """
        if isinstance(new_tokens, str) or not isinstance(new_tokens, Sequence):
            new_tokens = [new_tokens]  # type: ignore[list-item]
        count = 0
        for token in new_tokens:
            content = _token_content(token)
            if not isinstance(content, str):
                raise ValueError(f"add_tokens takes strings. Received: {token!r}")
            if content and self._register(content, special=special_tokens):
                count += 1
        return count

    def _register(self, content: str, *, special: bool) -> bool:
        existing = self._added.get(content)
        if existing is not None:
            if special and not existing.special:
                self._added[content] = _Added(content, existing.id, special=True)
                self._rebuild_added()
            return False
        index = self.bpe.encoder.get(content)
        if index is None:
            index = self._vocab_extra.get(content, self._size)
        self._added[content] = _Added(content, index, special=special)
        self._size = max(self._size, index + 1)
        self._rebuild_added()
        return True

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any],
                           replace_additional_special_tokens: bool = True) -> int:
        """Add special tokens and name them: `tok.add_special_tokens({"pad_token": "[PAD]"})`."""
        count = 0
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                contents = [_token_content(v) for v in value]
                count += sum(self._register(c, special=True) for c in contents)
                if replace_additional_special_tokens:
                    self._additional_special = []
                self._additional_special += [c for c in contents if c not in self._additional_special]
            elif key in SPECIAL_TOKEN_KEYS:
                content = _token_content(value)
                count += self._register(content, special=True)
                self._set_special(key, content)
            else:
                raise ValueError(f"add_special_tokens takes the keys {SPECIAL_TOKEN_KEYS + ('additional_special_tokens',)}. "
                                 f"Received: {key!r}")
        return count

    def _rebuild_added(self) -> None:
        """Compile the patterns that cut added tokens out of text and the id -> bytes table for decoding."""
        self._version += 1
        groups = ([t for t in self._added.values() if not t.normalized],
                  [t for t in self._added.values() if t.normalized])
        self._added_passes = []
        for group in groups:
            if group:
                contents = sorted((t.content for t in group), key=len, reverse=True)  # longest first
                pattern = re.compile("|".join(map(re.escape, contents)))
                self._added_passes.append((pattern, {t.content: t for t in group}))
        self._added_contents = [t.content for t in self._added.values()]
        self._id_bytes = None  # rebuilt on the next decode
        self._id_tokens = None

    def _special_ids(self) -> frozenset[int]:
        """What skip_special_tokens drops: the named special tokens and every added token marked special."""
        ids = {self.convert_tokens_to_ids(t) for t in self.all_special_tokens}
        return frozenset(ids.union(t.id for t in self._added.values() if t.special)) - {None}

    # -------------------------------------------------------------------------------------------- encoding
    def _segments(self, text: str) -> list[str | _Added]:
        """`text` cut at added tokens: strings to encode and the added tokens found, in order."""
        contents = self._added_contents
        if len(contents) == 1:  # GPT-2 as shipped: only <|endoftext|>
            if contents[0] not in text:
                return [text]
        elif len(contents) <= 8:  # `in` (a fast substring search) beats a regex for a few tokens
            if not any(content in text for content in contents):
                return [text]
        elif not any(pattern.search(text) for pattern, _ in self._added_passes):
            return [text]
        segments: list[str | _Added] = [text]
        for pattern, tokens in self._added_passes:
            cut: list[str | _Added] = []
            for segment in segments:
                if not isinstance(segment, str):
                    cut.append(segment)
                    continue
                pos = 0
                for match in pattern.finditer(segment):
                    if match.start() > pos:
                        cut.append(segment[pos:match.start()])
                    cut.append(tokens[match.group()])
                    pos = match.end()
                if pos < len(segment):
                    cut.append(segment[pos:])
            segments = cut
        return segments

    def _encode_text(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text should be a string or a list of strings. Received: {type(text).__name__}")
        segments = self._segments(text)
        prefix = self._add_prefix_space
        if len(segments) == 1 and not prefix and isinstance(segments[0], str):
            return self.bpe.encode(text)
        ids: list[int] = []
        for segment in segments:
            if isinstance(segment, _Added):
                ids.append(segment.id)
            else:
                ids += self.bpe.encode(" " + segment if prefix and not segment.startswith(" ") else segment)
        return ids

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        for segment in self._segments(text):
            if isinstance(segment, _Added):
                ids.append(segment.id)
                offsets.append((pos, pos + len(segment.content)))
                pos += len(segment.content)
                continue
            if self._add_prefix_space and not segment.startswith(" "):
                seg_ids, seg_offsets = self.bpe.encode_with_offsets(" " + segment, pos - 1)
                # the inserted space has no character of its own: transformers gives it the first one's span
                start, end = seg_offsets[0]
                seg_offsets[0] = (max(start, pos), max(end, pos + 1))
            else:
                seg_ids, seg_offsets = self.bpe.encode_with_offsets(segment, pos)
            ids += seg_ids
            offsets += seg_offsets
            pos += len(segment)
        return ids, offsets

    def _encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if len(texts) > 1 and (os.cpu_count() or 1) > 1 and _fork_available():
            try:
                total = sum(map(len, texts))
            except TypeError:  # not all strings: the serial loop names the culprit
                total = 0
            if total >= self.parallel_min_chars:
                return self._encode_parallel(texts)
        with gc_paused():  # one list per text: see gc_paused
            return list(map(self._encode_text, texts))

    def _encode_parallel(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode on every core: worker processes forked from this one (so they start with our caches) take
        chunks from the front of the batch while this process encodes chunks from the back that no worker has
        started; it then unpacks the workers' results.

        Workers send each chunk's ids back as two flat uint32 arrays (ids, lengths): unpacking is one C call per
        chunk plus a slice per text, so the share of work that stays here is small.
        """
        if not set(map(type, texts)) <= {str}:
            bad = next(t for t in texts if not isinstance(t, str))
            raise ValueError(f"text should be a string or a list of strings. Received an item of type "
                             f"{type(bad).__name__}")
        pool, workers = self._get_pool()
        chunks = _chunks(texts, _CHUNKS_PER_PROCESS * (workers + 1))
        futures = [pool.submit(_worker_encode, chunk) for chunk in chunks]
        results: list[list | None] = [None] * len(chunks)
        with gc_paused():
            for k in reversed(range(len(chunks))):
                if not futures[k].cancel():  # a worker has it: so are all before it
                    break
                results[k] = list(map(self._encode_text, chunks[k]))
            for k, future in enumerate(futures):
                if results[k] is None:
                    results[k] = _unpack(*future.result())
        return list(chain.from_iterable(results))

    def _get_pool(self):
        key = self._version
        if self._pool is not None and self._pool[0] == key:
            return self._pool[1], self._pool[2]
        self.close()
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, cores - 1)  # this process encodes too
        # fork: the workers inherit this tokenizer (and its warm caches) without pickling
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_init, initargs=(self,))
        self._pool = (key, pool, workers)
        self._pool_finalizer = weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
        return pool, workers

    def close(self) -> None:
        """Stop the worker processes of parallel batch encoding, if any (they also stop at exit)."""
        if self._pool is not None:
            self._pool[1].shutdown(wait=False, cancel_futures=True)
            self._pool_finalizer.detach()
            self._pool = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = None
        state.pop("_pool_finalizer", None)
        return state

    # ------------------------------------------------------------------------------------- the call API
    def __call__(self, text: str | Sequence[str] | None = None, text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False,
                 truncation: bool | str | None = None, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 return_tensors: str | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_special_tokens_mask: bool = False,
                 return_offsets_mapping: bool = False, return_length: bool = False,
                 verbose: bool = True) -> BatchEncoding:
        """Tokenize one text or a batch, like a transformers tokenizer call.

        `padding`: True / "longest", "max_length", False / "do_not_pad" (needs `pad_token`). `truncation`: True /
        "longest_first", "only_first", "only_second", False. `return_tensors`: "np", "pt", "tf" or None (lists).
        GPT-2 adds no special tokens, so `add_special_tokens` changes nothing.
        """
        if text is None:
            raise ValueError("text should be a string or a list of strings. Received: text=None")
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        pairs = None
        if text_pair is not None:
            pairs = list(text_pair) if not isinstance(text_pair, str) else [text_pair]
            if isinstance(text_pair, str) == batched or len(pairs) != len(texts):
                raise ValueError(f"text_pair should match text: one string with one string, or lists of the same "
                                 f"length. Received: {len(texts)} text(s) and {len(pairs)} pair(s)")
        padding_strategy, truncation_strategy, max_length = self._strategies(padding, truncation, max_length,
                                                                            pairs is not None)
        if return_offsets_mapping:
            firsts = [self._encode_with_offsets(t) for t in texts]
            seconds = [self._encode_with_offsets(t) for t in pairs] if pairs is not None else None
        else:
            firsts = [(ids, None) for ids in self._encode_batch(texts)]
            seconds = [(ids, None) for ids in self._encode_batch(pairs)] if pairs is not None else None
        rows = []
        for k, (ids, offsets) in enumerate(firsts):
            pair_ids, pair_offsets = seconds[k] if seconds is not None else (None, None)
            if truncation_strategy is not None:
                ids, offsets, pair_ids, pair_offsets = self._truncate(
                    ids, offsets, pair_ids, pair_offsets, truncation_strategy, max_length)
            row = {"input_ids": ids + pair_ids if pair_ids is not None else ids}
            if return_token_type_ids:
                row["token_type_ids"] = [0] * len(ids) + [1] * len(pair_ids or ())
            if return_attention_mask is not False:
                row["attention_mask"] = [1] * len(row["input_ids"])
            if return_special_tokens_mask:
                row["special_tokens_mask"] = [0] * len(row["input_ids"])
            if return_offsets_mapping:
                row["offset_mapping"] = offsets + pair_offsets if pair_offsets is not None else offsets
            rows.append(row)
        if padding_strategy is not None:
            self._pad_rows(rows, padding_strategy, max_length, pad_to_multiple_of, padding_side)
        elif verbose and self.model_max_length < VERY_LARGE_INTEGER:
            longest = max((len(r["input_ids"]) for r in rows), default=0)
            if longest > self.model_max_length:
                logger.warning("Token indices sequence length is longer than the specified maximum sequence length "
                               "for this model (%d > %d)", longest, self.model_max_length)
        if return_length:
            for row in rows:
                row["length"] = len(row["input_ids"])
        keys = list(rows[0]) if rows else ["input_ids"] + (["attention_mask"] if return_attention_mask is not False
                                                           else [])
        data = {key: [row[key] for row in rows] for key in keys}
        if return_tensors is not None:
            return BatchEncoding(_to_tensors(data, return_tensors))
        if not batched:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data)

    def _strategies(self, padding, truncation, max_length, has_pair):
        if padding is True or padding == "longest":
            padding_strategy = "longest"
        elif padding is False or padding is None or padding == "do_not_pad":
            padding_strategy = None
        elif padding == "max_length":
            padding_strategy = "max_length"
        else:
            raise ValueError(f"padding should be True, False, 'longest', 'max_length' or 'do_not_pad'. "
                             f"Received: padding={padding!r}")
        if truncation is None:  # transformers: max_length without padding turns on longest_first
            truncation = max_length is not None and padding_strategy is None
        if truncation is True:
            truncation_strategy = "longest_first"
        elif truncation is False or truncation == "do_not_truncate":
            truncation_strategy = None
        elif truncation in ("longest_first", "only_first", "only_second"):
            truncation_strategy = truncation
        else:
            raise ValueError(f"truncation should be True, False, 'longest_first', 'only_first', 'only_second' or "
                             f"'do_not_truncate'. Received: truncation={truncation!r}")
        if max_length is None and (truncation_strategy is not None or padding_strategy == "max_length"):
            max_length = self.model_max_length
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise ValueError(f"max_length should be a non-negative integer. Received: max_length={max_length!r}")
        if padding_strategy is not None and self.pad_token_id is None:
            raise ValueError(_PAD_HINT)
        if truncation_strategy == "only_second" and not has_pair:
            raise ValueError("truncation='only_second' needs text_pair")
        return padding_strategy, truncation_strategy, max_length

    def _truncate(self, ids, offsets, pair_ids, pair_offsets, strategy, max_length):
        total = len(ids) + (len(pair_ids) if pair_ids is not None else 0)
        if total <= max_length:
            return ids, offsets, pair_ids, pair_offsets
        if pair_ids is None:
            if strategy == "only_second":
                raise ValueError("truncation='only_second' needs text_pair")
            keep_first, keep_second = max_length, 0
        elif strategy == "longest_first":
            # like `tokenizers`: the shorter keeps up to half of max_length, the longer the rest
            if len(ids) >= len(pair_ids):
                keep_second = min(len(pair_ids), max_length // 2)
                keep_first = max_length - keep_second
            else:
                keep_first = min(len(ids), max_length // 2)
                keep_second = max_length - keep_first
        elif strategy == "only_first":
            keep_first, keep_second = max_length - len(pair_ids), len(pair_ids)
        else:
            keep_first, keep_second = len(ids), max_length - len(ids)
        if keep_first < 0 or keep_second < 0:
            raise ValueError(f"Truncation error: the sequence to truncate ({strategy}) is too short to respect "
                             f"max_length={max_length} (lengths {len(ids)} and {len(pair_ids or ())})")
        ids, offsets = self._cut(ids, offsets, keep_first)
        if pair_ids is not None:
            pair_ids, pair_offsets = self._cut(pair_ids, pair_offsets, keep_second)
        return ids, offsets, pair_ids, pair_offsets

    def _cut(self, ids, offsets, keep):
        if keep >= len(ids):
            return ids, offsets
        if self.truncation_side == "left":
            start = len(ids) - keep
            return ids[start:], offsets[start:] if offsets is not None else None
        return ids[:keep], offsets[:keep] if offsets is not None else None

    def _pad_rows(self, rows, strategy, max_length, pad_to_multiple_of, padding_side):
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side should be 'left' or 'right'. Received: padding_side={side!r}")
        target = max((len(r["input_ids"]) for r in rows), default=0) if strategy == "longest" else max_length
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        pad_values = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                      "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        for row in rows:
            missing = target - len(row["input_ids"])
            if missing <= 0:
                continue
            for key, value in row.items():
                fill = [pad_values[key]] * missing
                row[key] = fill + value if side == "left" else value + fill

    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None, max_length: int | None = None,
               return_tensors: str | None = None, **kwargs) -> list[int]:
        """The ids of one text (and pair), or a (1, n) tensor when `return_tensors` is given."""
        if text_pair is None and not padding and not truncation and max_length is None and \
                return_tensors is None and not kwargs:
            return self._encode_text(text)
        out = self(text, text_pair, padding=padding, truncation=truncation, max_length=max_length,
                   return_tensors=return_tensors, return_attention_mask=False, **kwargs)
        return out["input_ids"]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of many texts; large batches are encoded on every core."""
        return self._encode_batch(list(texts))

    def pad(self, encoded_inputs, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None,
            verbose: bool = True) -> BatchEncoding:
        """Pad already encoded inputs: a dict of lists (one example or a batch), or a list of dicts (what data
        collators pass)."""
        if not isinstance(encoded_inputs, Mapping):
            items = list(encoded_inputs)
            keys = list(items[0]) if items else ["input_ids"]
            encoded_inputs = {key: [item[key] for item in items] for key in keys}
        data = {key: _as_list(value) for key, value in encoded_inputs.items()}
        single = bool(data.get("input_ids")) and isinstance(data["input_ids"][0], int)
        if single:
            data = {key: [value] for key, value in data.items()}
        data = {key: [_as_list(row) for row in value] for key, value in data.items()}
        padding_strategy, _, max_length = self._strategies(padding, False, max_length, False)
        rows = [dict(zip(data, values)) for values in zip(*data.values())]
        if return_attention_mask is not False:
            for row in rows:
                row.setdefault("attention_mask", [1] * len(row["input_ids"]))
        if padding_strategy is not None:
            self._pad_rows(rows, padding_strategy, max_length, pad_to_multiple_of, padding_side)
        keys = list(rows[0]) if rows else list(data)
        out = {key: [row[key] for row in rows] for key in keys}
        if return_tensors is not None:
            return BatchEncoding(_to_tensors(out, return_tensors))
        return BatchEncoding({k: v[0] for k, v in out.items()} if single else out)

    # -------------------------------------------------------------------------------------------- tokens
    def tokenize(self, text: str, pair: str | None = None, **_ignored) -> list[str]:
        """Token strings: byte-level spelling ("Ġworld") for BPE tokens, the text itself for added tokens."""
        ids = self._encode_text(text) + (self._encode_text(pair) if pair is not None else [])
        return self.convert_ids_to_tokens(ids)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            index = self._lookup(tokens)
            return index if index is not None else self._unk_id()
        return [self.convert_tokens_to_ids(t) for t in tokens]  # type: ignore[misc]

    def _unk_id(self) -> int | None:
        content = self._special.get("unk_token")
        return None if content is None else self._lookup(content)

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        table = self._tokens_table()
        if isinstance(ids, int) or hasattr(ids, "__index__"):
            return table[self._check_id(int(ids))]  # type: ignore[arg-type]
        ids = _as_list(ids)
        if skip_special_tokens:
            special = self._special_ids()
            ids = [i for i in ids if i not in special]
        self._check_ids(ids)
        return list(map(table.__getitem__, ids))

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        parts = [t.encode("utf-8") if t in self._added else byte_level_to_bytes(t) for t in tokens]
        return self._finish(b"".join(parts).decode("utf-8", self.errors), None)

    def _tokens_table(self) -> list[str | None]:
        if self._id_tokens is None:
            table: list[str | None] = list(self.bpe.tokens) + [None] * (len(self) - len(self.bpe.tokens))
            for content, index in self._vocab_extra.items():
                table[index] = content
            for token in self._added.values():
                table[token.id] = token.content
            self._id_tokens = table
        return self._id_tokens

    def _bytes_table(self) -> list[bytes]:
        if self._id_bytes is None:
            table = list(self.bpe.token_bytes) + [b""] * (len(self) - len(self.bpe.tokens))
            for content, index in self._vocab_extra.items():
                table[index] = content.encode("utf-8")
            for token in self._added.values():
                if token.id >= len(self.bpe.tokens) or self.bpe.tokens[token.id] != token.content:
                    table[token.id] = token.content.encode("utf-8")
            self._id_bytes = table
        return self._id_bytes

    def _check_id(self, index: int) -> int:
        if not 0 <= index < len(self) or self._tokens_table()[index] is None:
            raise ValueError(f"Token id {index} is not in the vocabulary (ids are 0..{len(self) - 1})")
        return index

    def _check_ids(self, ids: list[int]) -> None:
        if ids and (min(ids) < 0 or max(ids) >= len(self)):
            bad = next(i for i in ids if not 0 <= i < len(self))
            raise ValueError(f"Token id {bad} is not in the vocabulary (ids are 0..{len(self) - 1})")

    # -------------------------------------------------------------------------------------------- decoding
    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, errors: str | None = None, **_ignored) -> str:
        """Text of `token_ids` (a list, an int, a numpy array or a tensor).

        Bytes that do not form UTF-8 (a sequence cut inside a character) become U+FFFD with the default
        `errors="replace"`; any `bytes.decode` errors value works.
        """
        ids = _as_list(token_ids)
        if ids and not isinstance(ids[0], int):
            raise ValueError("decode takes one sequence of ids; use batch_decode for a batch")
        if skip_special_tokens:
            special = self._special_ids()
            ids = [i for i in ids if i not in special]
        self._check_ids(ids)
        data = b"".join(map(self._bytes_table().__getitem__, ids))
        return self._finish(data.decode("utf-8", errors or self.errors), clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, errors: str | None = None,
                     **_ignored) -> list[str]:
        return [self.decode(seq, skip_special_tokens, clean_up_tokenization_spaces, errors)
                for seq in _as_list(sequences)]

    def _finish(self, text: str, clean_up: bool | None) -> str:
        if clean_up if clean_up is not None else self.clean_up_tokenization_spaces:
            # transformers' clean_up_tokenization (its 5.x ignores the flag for BPE tokenizers; we apply it when
            # asked, as 4.x did)
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                  (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text

    def __repr__(self) -> str:
        return (f"GPT2Tokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, len={len(self)}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"add_prefix_space={self.add_prefix_space}, special_tokens={self.special_tokens_map})")


# ------------------------------------------------------------------------------------------------ helpers
def _token_content(value):
    """A token given as a string, an AddedToken-like object (`.content`) or a dict {"content": ...}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "content" in value:
        return value["content"]
    content = getattr(value, "content", None)
    return content if isinstance(content, str) else value


def _as_list(ids):
    if hasattr(ids, "tolist"):  # numpy arrays, torch / tf tensors
        ids = ids.tolist()
    elif hasattr(ids, "numpy"):
        ids = ids.numpy().tolist()
    if isinstance(ids, int):
        return [ids]
    return list(ids)


def _to_tensors(data: dict[str, list], kind: str) -> dict[str, Any]:
    lengths = {len(row) for value in data.values() for row in value}
    if len(lengths) > 1:
        raise ValueError("Unable to create tensors from sequences of different lengths: activate padding "
                         "(`padding=True`) and/or truncation (`truncation=True`)")
    if kind == "np":
        import numpy as np

        return {key: np.asarray(value, dtype=np.int64) for key, value in data.items()}
    if kind == "pt":
        import torch

        return {key: torch.tensor(value, dtype=torch.long) for key, value in data.items()}
    if kind == "tf":
        import tensorflow as tf

        return {key: tf.constant(value, dtype=tf.int32) for key, value in data.items()}
    raise ValueError(f"return_tensors should be 'np', 'pt', 'tf' or None. Received: return_tensors={kind!r}")


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
    added = [_Added(t["content"], int(t["id"]), bool(t.get("special", False)), t.get("normalized"))
             for t in data.get("added_tokens") or []]
    pre = data.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence":
        pre = next((p for p in pre.get("pretokenizers", []) if p.get("type") == "ByteLevel"), {})
    return bpe, extra, added, bool(pre.get("add_prefix_space", False))


def _fork_available() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and os.name == "posix" and \
        not os.uname().sysname == "Darwin"


_WORKER: GPT2Tokenizer | None = None


def _worker_init(tokenizer: GPT2Tokenizer) -> None:
    global _WORKER
    _WORKER = tokenizer


def _worker_encode(texts: list[str]) -> tuple[bytes, bytes]:
    """The ids of a chunk of texts, packed: all ids as uint32, then each text's number of ids."""
    if _WORKER is None:
        raise RuntimeError("tokenizer worker used before _worker_init")
    with gc_paused():
        encoded = list(map(_WORKER._encode_text, texts))
    ids = array.array("I")
    any(map(ids.extend, encoded))  # extend returns None: any() runs them all at C speed
    return ids.tobytes(), array.array("I", map(len, encoded)).tobytes()


def _unpack(ids_blob: bytes, lengths_blob: bytes) -> list[list[int]]:
    ids = array.array("I", ids_blob).tolist()
    ends = list(accumulate(array.array("I", lengths_blob)))
    return list(map(ids.__getitem__, map(slice, chain((0,), ends), ends)))


def _chunks(texts: Sequence[str], count: int) -> list[Sequence[str]]:
    """`texts` cut into about `count` runs of similar size in characters, in order."""
    ends = list(accumulate(map(len, texts)))
    step = max(1, ends[-1] // count)
    cuts = sorted({bisect_left(ends, size) + 1 for size in range(step, ends[-1], step)} - {len(texts)})
    cuts = [0, *cuts, len(texts)]
    return list(map(texts.__getitem__, map(slice, cuts, cuts[1:])))
