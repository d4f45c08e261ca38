"""The shape of a tokenizer call's output: transformers' truncation and padding strategies, the rows of model inputs
of each text (and pair), padding them, and BatchEncoding of lists or tensors."""

from __future__ import annotations

from typing import Any

PAD_HINT = ("Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
            "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
            "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")


def strategies(padding, truncation, max_length, *, has_pair: bool, model_max_length: int,
               pad_token_id: int | None):
    """(padding strategy, truncation strategy, max_length) of a call's arguments, as transformers reads them."""
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
        max_length = model_max_length
    if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
        raise ValueError(f"max_length should be a non-negative integer. Received: max_length={max_length!r}")
    if padding_strategy is not None and pad_token_id is None:
        raise ValueError(PAD_HINT)
    if truncation_strategy == "only_second" and not has_pair:
        raise ValueError("truncation='only_second' needs text_pair")
    return padding_strategy, truncation_strategy, max_length


def input_rows(firsts, seconds, truncation_strategy: str | None, max_length: int | None, truncation_side: str, *,
               token_type_ids: bool, attention_mask: bool, special_tokens_mask: bool, offsets: bool) -> list[dict]:
    """One row of model inputs (a dict of lists) per text: `firsts` (and `seconds`, the pairs, or None) hold
    (ids, offsets or None) per text; truncated together by `truncation_strategy` (None: not at all)."""
    rows = []
    for k, (ids, first_offsets) in enumerate(firsts):
        pair_ids, pair_offsets = seconds[k] if seconds is not None else (None, None)
        if truncation_strategy is not None:
            ids, first_offsets, pair_ids, pair_offsets = truncate(
                ids, first_offsets, pair_ids, pair_offsets, truncation_strategy, max_length, truncation_side)
        row = {"input_ids": ids + pair_ids if pair_ids is not None else ids}
        if token_type_ids:
            row["token_type_ids"] = [0] * len(ids) + [1] * len(pair_ids or ())
        if attention_mask:
            row["attention_mask"] = [1] * len(row["input_ids"])
        if special_tokens_mask:
            row["special_tokens_mask"] = [0] * len(row["input_ids"])
        if offsets:
            row["offset_mapping"] = first_offsets + pair_offsets if pair_offsets is not None else first_offsets
        rows.append(row)
    return rows


def truncate(ids, offsets, pair_ids, pair_offsets, strategy: str, max_length: int, side: str):
    """Cut the ids (and offsets) of a text and its pair to max_length together, by `strategy`, on `side`."""
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
    ids, offsets = _cut(ids, offsets, keep_first, side)
    if pair_ids is not None:
        pair_ids, pair_offsets = _cut(pair_ids, pair_offsets, keep_second, side)
    return ids, offsets, pair_ids, pair_offsets


def _cut(ids, offsets, keep: int, side: str):
    if keep >= len(ids):
        return ids, offsets
    if side == "left":
        start = len(ids) - keep
        return ids[start:], offsets[start:] if offsets is not None else None
    return ids[:keep], offsets[:keep] if offsets is not None else None


def pad_rows(rows: list[dict], strategy: str, max_length: int | None, pad_to_multiple_of: int | None, side: str,
             pad_token_id: int) -> None:
    """Pad each row (a dict of lists: input_ids, attention_mask, ...) in place to the longest row or to
    max_length, rounded up to a multiple of `pad_to_multiple_of`, on `side`."""
    if side not in ("left", "right"):
        raise ValueError(f"padding_side should be 'left' or 'right'. Received: padding_side={side!r}")
    target = max((len(r["input_ids"]) for r in rows), default=0) if strategy == "longest" else max_length
    if pad_to_multiple_of:
        target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                  "special_tokens_mask": 1, "offset_mapping": (0, 0)}
    for row in rows:
        missing = target - len(row["input_ids"])
        if missing <= 0:
            continue
        for key, value in row.items():
            fill = [pad_values[key]] * missing
            row[key] = fill + value if side == "left" else value + fill


def as_list(ids):
    """A list of `ids` given as a list, an int, a numpy array or a tensor (nested lists stay nested)."""
    if hasattr(ids, "tolist"):  # numpy arrays, torch / tf tensors
        ids = ids.tolist()
    elif hasattr(ids, "numpy"):
        ids = ids.numpy().tolist()
    if isinstance(ids, int):
        return [ids]
    return list(ids)


def to_tensors(data: dict[str, list], kind: str) -> dict[str, Any]:
    """Each column of `data` (equal-length rows) as one tensor: "np", "pt" or "tf"."""
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


def batch_encoding(rows: list[dict], empty_keys: list[str], return_tensors: str | None, *, single: bool
                   ) -> BatchEncoding:
    """The rows as columns (`empty_keys` when there is no row): tensors of the `return_tensors` kind, else lists,
    the one row's own lists when `single`."""
    keys = list(rows[0]) if rows else empty_keys
    data = {key: [row[key] for row in rows] for key in keys}
    if return_tensors is not None:
        return BatchEncoding(to_tensors(data, return_tensors))
    return BatchEncoding({key: value[0] for key, value in data.items()} if single else data)
