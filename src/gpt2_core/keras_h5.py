"""tf_model.h5 <-> numpy arrays, in the Keras 2 weights-file layout transformers-TF reads and writes: every weight
under its full Keras name (memory-mapped where the dataset is stored contiguously), and a writer that reproduces
transformers-TF's file (layer order, weight order, attributes) casting one tensor at a time; atomic.
h5py is imported only when an .h5 file is read or written.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Mapping

import numpy as np

from . import layouts
from .checkpoint_errors import CheckpointError
from .dtypes import cast, is_bfloat16
from .io_utils import atomic_path

# tf_model.h5: the Keras 2 weights-file layout transformers-TF writes.
#   root attrs:  layer_names = [b"transformer", ...] (top-level Keras layers), backend, keras_version
#   /<layer>     attrs: weight_names = [b"<model>/<layer>/.../<w>:0", ...]; datasets at /<layer>/<weight name>
#   /top_level_model_weights  weight_names = [] (an empty float64 array, as Keras writes it)
# Keras splits a string-list attribute over `name0`, `name1`, ... when it passes HDF5's 64 KiB header limit.
H5_ATTR_LIMIT = 64512
KERAS_VERSION = "2.21.0"  # the tf-keras whose save_weights this layout reproduces (transformers-TF 4.57)


def read_tf_h5(path) -> dict[str, np.ndarray]:
    """Every weight of a Keras/transformers-TF .h5 weights file, under its full weight name."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except OSError as e:
        raise CheckpointError(path, f"is not a readable HDF5 file (truncated or corrupt): {e}") from e
    out: dict[str, np.ndarray] = {}
    try:
        with f:
            layer_names = _h5_strings(f.attrs, "layer_names")
            if layer_names is None:  # not written by Keras: take every group
                layer_names = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
            for layer in [*layer_names, "top_level_model_weights"]:
                if layer not in f:
                    if layer == "top_level_model_weights":
                        continue
                    raise CheckpointError(path, f"lists layer {layer!r} in layer_names but has no such group")
                group = f[layer]
                names = _h5_strings(group.attrs, "weight_names")
                if names is None:
                    names = _h5_dataset_paths(group)
                for name in names:
                    if name not in group:
                        raise CheckpointError(path, f"lists weight {name!r} but has no such dataset")
                    out[name] = _h5_array(group[name], path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"could not be read (truncated or corrupt HDF5): {e}") from e
    return out


def _h5_dataset_paths(group) -> list[str]:
    import h5py

    paths: list[str] = []
    group.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
    return paths


def _h5_strings(attrs, name: str) -> list[str] | None:
    if name in attrs:
        values = list(attrs[name])
    elif f"{name}0" in attrs:
        values, i = [], 0
        while f"{name}{i}" in attrs:
            values += list(attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _h5_array(dataset, path: str) -> np.ndarray:
    # A contiguous, unfiltered dataset is plain bytes at a known offset: map it instead of reading it.
    offset = dataset.id.get_offset()
    plist = dataset.id.get_create_plist()
    import h5py

    mappable = (offset is not None and dataset.size > 0 and dataset.ndim > 0 and dataset.dtype.kind in "fiub"
                and plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0)
    if not mappable:
        return dataset[()]
    nbytes = dataset.size * dataset.dtype.itemsize
    if offset + nbytes > os.path.getsize(path):
        raise CheckpointError(path, f"dataset {dataset.name!r} runs past the end of the file (truncated file)")
    return np.memmap(path, dtype=dataset.dtype, mode="c", offset=offset, shape=dataset.shape)


def write_tf_h5(state: Mapping[str, np.ndarray], path, model_class_name: str, *, dtype: str | None = None,
                on_tensor: Callable[[str], None] | None = None) -> str:
    """Write hf_tf-named arrays as tf_model.h5 exactly as transformers-TF (tf-keras save_weights) lays it out.

    Names may carry any Keras model prefix or none; the file gets the one of `model_class_name` (a head key or a
    class name such as "TFGPT2LMHeadModel"). Weights are ordered as Keras orders them (state_dict order). Like
    `write_safetensors`, tensors are cast to `dtype` ("float32" or "float16") one at a time; HDF5 has no bfloat16.
    """
    if dtype == "bfloat16":
        raise ValueError("tf_model.h5 cannot hold bfloat16 (HDF5 has no such type and transformers-TF reads none). "
                         "Received: dtype='bfloat16'")
    import h5py

    head = layouts.head_of(model_class_name)
    model = layouts.KERAS_MODEL_NAMES[head]
    strip = re.compile(layouts.TABLES["hf_tf"].model_prefix)
    by_layer: dict[str, list[tuple[str, str]]] = {}  # layer -> [(name in the file, key in state)]
    for key in state.keys():  # names only: values are read one at a time below (they may be lazy)
        match = strip.match(key)
        bare = key[match.end():] if match else key
        if "/" not in bare or not bare.endswith(":0"):
            raise ValueError(f"write_tf_h5 takes hf_tf weight names like 'transformer/wte/embeddings:0'. "
                             f"Received: {key!r} (convert with layouts.from_canonical(state, 'hf_tf', ...))")
        by_layer.setdefault(bare.split("/", 1)[0], []).append((f"{model}/{bare}", key))
    layer_names = [n for n in layouts.KERAS_LAYERS[head] if n in by_layer]
    layer_names += sorted(set(by_layer) - set(layer_names))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _h5_put_strings(f.attrs, "layer_names", layer_names)
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = KERAS_VERSION.encode()
            for layer in sorted(layer_names):  # Keras creates the groups in name order
                weights = sorted(by_layer[layer], key=lambda item: _keras_order(item[0]))
                group = f.create_group(layer)
                _h5_put_strings(group.attrs, "weight_names", [name for name, _ in weights])
                for name, key in weights:
                    array = cast(np.asanyarray(state[key]), dtype, key)
                    if is_bfloat16(array):
                        raise ValueError(f"{key!r} is bfloat16, which tf_model.h5 cannot hold: pass dtype='float32'")
                    dataset = group.create_dataset(name, array.shape, dtype=array.dtype)
                    if array.shape:
                        dataset[:] = array
                    else:
                        dataset[()] = array
                    if on_tensor is not None:
                        on_tensor(key)
            f.create_group("top_level_model_weights").attrs["weight_names"] = np.asarray([])
    return os.fspath(path)


def _keras_order(name: str) -> tuple:
    canonical = layouts.canonical_name(name, "hf_tf")
    return layouts.order_key(canonical) if canonical else (1, 0, 0)


def _h5_put_strings(attrs, name: str, values: list[str]) -> None:
    encoded = [v.encode("utf-8") for v in values]
    packed = np.asarray(encoded)
    if packed.nbytes <= H5_ATTR_LIMIT:
        attrs[name] = encoded  # a list of bytes: h5py stores variable-length strings, as Keras does
        return
    chunks = 2
    while any(c.nbytes > H5_ATTR_LIMIT for c in np.array_split(packed, chunks)):
        chunks += 1
    for i, chunk in enumerate(np.array_split(packed, chunks)):
        attrs[f"{name}{i}"] = chunk
