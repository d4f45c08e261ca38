"""pytorch_model.bin for --format pytorch: the one weights file gpt2_core cannot write (it is a torch pickle).

safetensors and tf_model.h5 are written by gpt2_core.checkpoint (streamed tensor by tensor). torch.save needs a
whole shard in memory, so .bin files are written shard by shard, split and indexed as checkpoint.save_weights
splits and indexes safetensors.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import numpy as np

from gpt2_core import checkpoint
from gpt2_core.dtypes import bfloat16_bits, cast, is_bfloat16


def write_torch_bin(path: str, tensors: Mapping[str, np.ndarray], *, dtype: str | None = None,
                    on_tensor: Callable[[str], None] = lambda name: None) -> str:
    """One pytorch_model.bin (a torch.save'd dict of tensors, as transformers writes it). Needs torch."""
    import torch

    state = {}
    for name, array in tensors.items():
        array = cast(array, dtype, name)
        # a copy: the source may be a read-only memory map, and torch.save writes whole storages
        if is_bfloat16(array):
            state[name] = torch.from_numpy(bfloat16_bits(array).astype(np.int16)).view(torch.bfloat16)
        else:
            state[name] = torch.from_numpy(np.array(array, order="C"))
        on_tensor(name)
    torch.save(state, path)
    return path


def save_torch_bins(tensors: Mapping[str, np.ndarray], directory: str, *, dtype: str | None, max_bytes: int,
                    on_tensor: Callable[[str], None] = lambda name: None) -> list[str]:
    """pytorch_model.bin, or shards + pytorch_model.bin.index.json; returns the paths written (index last)."""
    shards = checkpoint.plan_shards(tensors, max_bytes, dtype=dtype)
    filenames = checkpoint.shard_filenames(checkpoint.WEIGHTS_NAME, len(shards))
    written = [write_torch_bin(os.path.join(directory, filename), {name: tensors[name] for name in names},
                               dtype=dtype, on_tensor=on_tensor)
               for names, filename in zip(shards, filenames)]
    if len(shards) > 1:
        written.append(checkpoint.write_index(os.path.join(directory, checkpoint.WEIGHTS_INDEX_NAME), tensors,
                                              shards, filenames, dtype=dtype))
    return written
