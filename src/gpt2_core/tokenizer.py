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

Many or long texts (training data: files of tens of MB): `tok.encode_batch(documents)` encodes each long text on
the bulk path (`tok(documents)` too, but it also builds attention masks): about tiktoken's speed on new text,
several times it on words seen before. Join the lists with `tok.eos_token_id` between documents.
`encode_batch(documents, num_workers=n)` adds n worker processes (only when asked for).

This file is the call API. Beside it: the vocabulary and its ids (gpt2_core.vocabulary), added tokens
(gpt2_core.added_tokens), files (gpt2_core.tokenizer_io), the call's output (BatchEncoding, importable here as
before), its rows, truncation, padding and tensors (gpt2_core.tokenizer_padding), worker processes (gpt2_core.tokenizer_parallel), and the encoding itself, with a
page on which path a text takes (gpt2_core.bpe).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping, Sequence

from . import hub
from .added_tokens import AddedEntry
from .bpe import EOS_TOKEN, ByteLevelBPE, byte_level_to_bytes
from .tokenizer_io import (GPT2_MAX_LENGTH, SETTINGS, SPECIAL_TOKEN_KEYS, TOKENIZER_FILES, VERY_LARGE_INTEGER,
                           read_tokenizer_files, token_content, write_tokenizer_files)
from .tokenizer_padding import BatchEncoding, as_list, batch_encoding, input_rows, pad_rows, strategies
from .tokenizer_parallel import WorkerPool, encode_serial
from .vocabulary import Vocabulary

logger = logging.getLogger(__name__)

# The checkpoints whose tokenizer is GPT-2's vocabulary, served from the package when no file is found locally.
BUILTIN_NAMES = frozenset({
    "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2",
    "openai-community/gpt2", "openai-community/gpt2-medium", "openai-community/gpt2-large",
    "openai-community/gpt2-xl", "distilbert/distilgpt2",
})


class GPT2Tokenizer:
    """GPT-2's tokenizer: byte-level BPE ids (== tiktoken's), the transformers call API and file formats.

    Build it with `from_pretrained` (a preset name, a hub id or a directory); the constructor takes an already
    loaded `ByteLevelBPE`.
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, bpe: ByteLevelBPE | None = None, *, vocab_extra: Mapping[str, int] | None = None,
                 added_tokens: Iterable[AddedEntry] = (), unk_token: str | None = EOS_TOKEN,
                 bos_token: str | None = EOS_TOKEN, eos_token: str | None = EOS_TOKEN,
                 pad_token: str | None = None, sep_token: str | None = None, cls_token: str | None = None,
                 mask_token: str | None = None, additional_special_tokens: Sequence[str] = (),
                 add_prefix_space: bool = False, errors: str = "replace",
                 model_max_length: int = GPT2_MAX_LENGTH, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 name_or_path: str = ""):
        self._vocab = Vocabulary(bpe if bpe is not None else ByteLevelBPE.builtin(), vocab_extra, added_tokens)
        self.bpe = self._vocab.bpe
        self.vocab_size = self._vocab.base_size
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
            self._vocab.add(content, special=True)
            if content not in self._additional_special:
                self._additional_special.append(content)
        self._workers: WorkerPool | None = None  # started by encode_batch(..., num_workers=n)
        self._workers_key: tuple | None = None

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
        return cls(**{**read_tokenizer_files(paths, name=name, builtin=builtin), **kwargs}, name_or_path=name)

    def save_pretrained(self, save_directory: str | os.PathLike, **_ignored) -> tuple[str, ...]:
        """Write vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        transformers (4 and 5) loads the directory with `AutoTokenizer.from_pretrained` and gives the same ids.
        Every file is written atomically.
        """
        return write_tokenizer_files(os.fspath(save_directory), bpe=self.bpe, vocab=self._vocab.base_vocab(),
                                     added=list(self._vocab.added.values()), special=self._special,
                                     additional_special=self._additional_special,
                                     add_prefix_space=self.add_prefix_space,
                                     settings={key: getattr(self, key) for key in SETTINGS})

    # ------------------------------------------------------------------------------------ vocabulary views
    def __len__(self) -> int:
        return self._vocab.size

    def get_vocab(self) -> dict[str, int]:
        vocab = self._vocab.base_vocab()
        vocab.update((t.content, t.id) for t in self._vocab.added.values())
        return vocab

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: t.id for t in sorted(self._vocab.added.values(), key=lambda t: t.id)}

    @property
    def added_tokens_decoder(self) -> dict[int, str]:
        return {t.id: t.content for t in sorted(self._vocab.added.values(), key=lambda t: t.id)}

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return self.get_added_vocab()

    @property
    def add_prefix_space(self) -> bool:
        return self._add_prefix_space

    @add_prefix_space.setter
    def add_prefix_space(self, value: bool) -> None:
        self._add_prefix_space = bool(value)

    # ------------------------------------------------------------------------------------- special tokens
    def _set_special(self, key: str, value) -> None:
        content = token_content(value)
        if content is not None and not isinstance(content, str):
            raise ValueError(f"{key} should be a string or None. Received: {key}={value!r}")
        if content is not None and self._vocab.lookup(content) is None:
            # Like transformers: naming a token that is not in the vocabulary does not add it (its id is the
            # unknown token's); add_special_tokens() adds it.
            logger.warning("%s %r is not in the vocabulary; use add_special_tokens({%r: %r}) to add it",
                           key, content, key, content)
        self._special[key] = content

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
            content = token_content(token)
            if not isinstance(content, str):
                raise ValueError(f"add_tokens takes strings. Received: {token!r}")
            if content and self._vocab.add(content, special=special_tokens):
                count += 1
        return count

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any],
                           replace_additional_special_tokens: bool = True) -> int:
        """Add special tokens and name them: `tok.add_special_tokens({"pad_token": "[PAD]"})`."""
        count = 0
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                contents = [token_content(v) for v in value]
                count += sum(self._vocab.add(c, special=True) for c in contents)
                if replace_additional_special_tokens:
                    self._additional_special = []
                self._additional_special += [c for c in contents if c not in self._additional_special]
            elif key in SPECIAL_TOKEN_KEYS:
                content = token_content(value)
                count += self._vocab.add(content, special=True)
                self._set_special(key, content)
            else:
                keys = SPECIAL_TOKEN_KEYS + ("additional_special_tokens",)
                raise ValueError(f"add_special_tokens takes the keys {keys}. Received: {key!r}")
        return count

    def _special_ids(self) -> frozenset[int]:
        """What skip_special_tokens drops: the named special tokens and every added token marked special."""
        ids = {self.convert_tokens_to_ids(t) for t in self.all_special_tokens}
        return frozenset(ids.union(t.id for t in self._vocab.added.values() if t.special)) - {None}

    # -------------------------------------------------------------------------------------------- encoding
    def _encode_text(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text should be a string or a list of strings. Received: {type(text).__name__}")
        segments = self._vocab.added.split(text)
        prefix = self._add_prefix_space
        if len(segments) == 1 and not prefix and isinstance(segments[0], str):
            return self.bpe.encode(text)
        ids: list[int] = []
        for segment in segments:
            if isinstance(segment, AddedEntry):
                ids.append(segment.id)
            else:
                ids += self.bpe.encode(" " + segment if prefix and not segment.startswith(" ") else segment)
        return ids

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        for segment in self._vocab.added.split(text):
            if isinstance(segment, AddedEntry):
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

    def encode_batch(self, texts: Sequence[str], *, num_workers: int | None = None) -> list[list[int]]:
        """The ids of each text (like `encode`), in this process unless `num_workers` asks for more.

        Long texts take the bulk path (see gpt2_core.bpe): to tokenize files for training, read each into one
        string and call `tok.encode_batch(documents)`, then join the results with `tok.eos_token_id` between
        documents. `num_workers=n` also encodes on n worker processes (kept for the next call; `close()` stops
        them): forked from this process when it runs a single thread, else started by a fork server, which is
        safe beside torch's or TensorFlow's threads (gpt2_core.tokenizer_parallel). The ids are the same.
        """
        if isinstance(texts, str):
            raise ValueError(f"texts should be a list of strings; for one text use encode(). Received: "
                             f"texts={texts[:40]!r}")
        texts = texts if isinstance(texts, list) else list(texts)
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                        or num_workers < 0):
            raise ValueError(f"num_workers should be a non-negative integer or None. Received: "
                             f"num_workers={num_workers!r}")
        if not num_workers or len(texts) < 2:
            return encode_serial(self._encode_text, texts)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:  # before any worker sees it
            raise ValueError(f"text should be a string or a list of strings. Received an item of type "
                             f"{type(bad).__name__}")
        key = (self._vocab.version, self._add_prefix_space, num_workers)  # what the workers' copies must share
        if self._workers is None or self._workers_key != key:
            self.close()
            self._workers, self._workers_key = WorkerPool(self, num_workers), key
        return self._workers.encode(self._encode_text, texts)

    def close(self) -> None:
        """Stop the worker processes of `encode_batch(..., num_workers=n)`, if any (they also stop at exit)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def __getstate__(self):
        return {**self.__dict__, "_workers": None}

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
            firsts = [(ids, None) for ids in encode_serial(self._encode_text, texts)]
            seconds = [(ids, None) for ids in encode_serial(self._encode_text, pairs)] if pairs is not None else None
        rows = input_rows(firsts, seconds, truncation_strategy, max_length, self.truncation_side,
                          token_type_ids=return_token_type_ids, attention_mask=return_attention_mask is not False,
                          special_tokens_mask=return_special_tokens_mask, offsets=return_offsets_mapping)
        if padding_strategy is not None:
            pad_rows(rows, padding_strategy, max_length, pad_to_multiple_of, padding_side or self.padding_side,
                     self.pad_token_id)
        elif verbose and self.model_max_length < VERY_LARGE_INTEGER:
            longest = max((len(r["input_ids"]) for r in rows), default=0)
            if longest > self.model_max_length:
                logger.warning("Token indices sequence length is longer than the specified maximum sequence length "
                               "for this model (%d > %d)", longest, self.model_max_length)
        if return_length:
            for row in rows:
                row["length"] = len(row["input_ids"])
        empty = ["input_ids"] + (["attention_mask"] if return_attention_mask is not False else [])
        return batch_encoding(rows, empty, return_tensors, single=not batched)

    def _strategies(self, padding, truncation, max_length, has_pair: bool):
        return strategies(padding, truncation, max_length, has_pair=has_pair,
                          model_max_length=self.model_max_length, pad_token_id=self.pad_token_id)

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
        data = {key: as_list(value) for key, value in encoded_inputs.items()}
        single = bool(data.get("input_ids")) and isinstance(data["input_ids"][0], int)
        if single:
            data = {key: [value] for key, value in data.items()}
        data = {key: [as_list(row) for row in value] for key, value in data.items()}
        padding_strategy, _, max_length = self._strategies(padding, False, max_length, False)
        rows = [dict(zip(data, values)) for values in zip(*data.values())]
        if return_attention_mask is not False:
            for row in rows:
                row.setdefault("attention_mask", [1] * len(row["input_ids"]))
        if padding_strategy is not None:
            pad_rows(rows, padding_strategy, max_length, pad_to_multiple_of, padding_side or self.padding_side,
                     self.pad_token_id)
        return batch_encoding(rows, list(data), return_tensors, single=single)

    # -------------------------------------------------------------------------------------------- tokens
    def tokenize(self, text: str, pair: str | None = None, **_ignored) -> list[str]:
        """Token strings: byte-level spelling ("Ġworld") for BPE tokens, the text itself for added tokens."""
        ids = self._encode_text(text) + (self._encode_text(pair) if pair is not None else [])
        return self.convert_ids_to_tokens(ids)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            index = self._vocab.lookup(tokens)
            return index if index is not None else self._unk_id()
        return [self.convert_tokens_to_ids(t) for t in tokens]  # type: ignore[misc]

    def _unk_id(self) -> int | None:
        content = self._special.get("unk_token")
        return None if content is None else self._vocab.lookup(content)

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        table = self._vocab.tokens()
        if isinstance(ids, int) or hasattr(ids, "__index__"):
            return table[self._vocab.check_id(int(ids))]  # type: ignore[arg-type]
        ids = as_list(ids)
        if skip_special_tokens:
            special = self._special_ids()
            ids = [i for i in ids if i not in special]
        self._vocab.check_ids(ids)
        return list(map(table.__getitem__, ids))

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        parts = [t.encode("utf-8") if t in self._vocab.added else byte_level_to_bytes(t) for t in tokens]
        return self._finish(b"".join(parts).decode("utf-8", self.errors), None)

    # -------------------------------------------------------------------------------------------- decoding
    def token_bytes(self) -> list[bytes]:
        """The UTF-8 bytes of every id (an added token's text for added ids): what stop strings and streamed text
        are matched on, since one character may span several tokens."""
        return self._vocab.token_bytes()

    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, errors: str | None = None, **_ignored) -> str:
        """Text of `token_ids` (a list, an int, a numpy array or a tensor).

        Bytes that do not form UTF-8 (a sequence cut inside a character) become U+FFFD with the default
        `errors="replace"`; any `bytes.decode` errors value works.
        """
        ids = as_list(token_ids)
        if ids and not isinstance(ids[0], int):
            raise ValueError("decode takes one sequence of ids; use batch_decode for a batch")
        if skip_special_tokens:
            special = self._special_ids()
            ids = [i for i in ids if i not in special]
        self._vocab.check_ids(ids)
        data = b"".join(map(self._vocab.token_bytes().__getitem__, ids))
        return self._finish(data.decode("utf-8", errors or self.errors), clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, errors: str | None = None,
                     **_ignored) -> list[str]:
        return [self.decode(seq, skip_special_tokens, clean_up_tokenization_spaces, errors)
                for seq in as_list(sequences)]

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
