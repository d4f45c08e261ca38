"""convert(SRC, DST): read a GPT-2 checkpoint, write it as a transformers model directory in another format.

    >>> from gpt2_convert import convert
    >>> convert("models/124M", "gpt2-from-openai", format="safetensors")        # an OpenAI release
    >>> convert("gpt2", "gpt2-tf", format="tf", dtype="float16")               # a hub model -> tf_model.h5

DST is built in a temp directory beside it and renamed into place at the end, so an interrupted or failed run
leaves no DST (and no temp directory); an existing DST is replaced only with `force=True`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from gpt2_core import checkpoint, layouts, pretrained
from gpt2_core.dtypes import DTYPES, dtype_name
from gpt2_core.generation import GenerationConfig

from . import writers
from .sources import GENERATION_CONFIG, Source, open_source
from .tokenizer_files import write_tokenizer_files

logger = logging.getLogger(__name__)

FORMATS = ("safetensors", "pytorch", "tf")
DEFAULT_SHARD_SIZE = "5GB"
_PROGRESS_MIN_BYTES = 200 * 10**6  # below this a conversion takes about a second: no bar


class ConversionError(OSError):
    """A conversion step failed; the message names the file and the problem."""


@dataclass
class ConversionResult:
    directory: str
    format: str
    dtype: str
    model_class: str
    num_parameters: int
    weight_files: list[str]
    nbytes: int
    files: list[str] = field(default_factory=list)
    verify_report: list = field(default_factory=list)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, format: str = "safetensors", dtype: str | None = None,
            shard_size: str | int = DEFAULT_SHARD_SIZE, force: bool = False, verify: bool = False,
            progress: bool | None = None, **hub_kwargs) -> ConversionResult:
    """Convert SRC (a transformers model directory / hub id / preset name, or an OpenAI release directory) to DST.

    `format`: safetensors (default), pytorch (pytorch_model.bin, needs torch) or tf (tf_model.h5, read by
    transformers-TF). `dtype` casts floating tensors (None keeps them). `shard_size` splits safetensors and .bin
    files like transformers' max_shard_size. `verify` runs `gpt2_convert.verify` on the result before it is moved
    into place and raises when the outputs differ. `progress`: a tqdm bar over tensors (None: for big models).
    """
    _check_options(format, dtype)
    try:
        max_bytes = checkpoint.parse_size(shard_size)
    except ValueError as e:
        raise ValueError(f"`shard_size` should be a size like 500MB, 2GB or 1GiB. Received: shard_size={shard_size!r}"
                         ) from e
    dst = os.path.abspath(os.fspath(dst))
    if os.path.lexists(dst) and not force:
        raise FileExistsError(f"{dst}: already exists (pass --force to replace it)")
    _refuse_overlap(src, dst)
    source = open_source(src, **hub_kwargs)
    if dtype is None and _stored_dtype(source) == "bfloat16":
        dtype = "bfloat16"  # a no-op cast, but it lets the checks below refuse --format tf
    _check_options(format, dtype)
    parent = os.path.dirname(dst)
    created = _missing_ancestors(parent)  # removed again if the conversion fails
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=parent)
    except OSError as e:
        _remove_empty(created)
        raise ConversionError(e.errno, f"cannot create the output directory ({e.strerror})", parent) from e
    try:
        result = _write_all(source, staging, format=format, dtype=dtype, max_bytes=max_bytes, progress=progress)
        if verify:
            from .verify import verify_conversion

            result.verify_report = verify_conversion(source, staging, format=format, dtype=dtype)
        _move_into_place(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    result.directory = dst
    return result


def _missing_ancestors(path: str) -> list[str]:
    missing = []
    while not os.path.isdir(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing  # deepest first


def _remove_empty(directories: list[str]) -> None:
    for directory in directories:
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _check_options(format: str, dtype: str | None) -> None:
    if format not in FORMATS:
        raise ValueError(f"`format` should be one of {', '.join(FORMATS)}. Received: format={format!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"`dtype` should be one of {', '.join(DTYPES)}. Received: dtype={dtype!r}")
    if format == "tf" and dtype == "bfloat16":
        raise ValueError("tf_model.h5 cannot hold bfloat16 (HDF5 has no such type and transformers-TF reads none): "
                         "use --dtype float16 or float32 with --format tf")
    if format == "pytorch":
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise ValueError("--format pytorch writes pytorch_model.bin, which needs torch (pip install torch); "
                             "--format safetensors needs nothing") from e


def _refuse_overlap(src, dst: str) -> None:
    """DST must not be SRC or contain it: replacing DST would delete the files being read."""
    if not os.path.exists(os.fspath(src)):
        return
    src = os.path.realpath(src)
    real_dst = os.path.realpath(dst)
    if real_dst == src or src.startswith(real_dst + os.sep) or real_dst.startswith(src + os.sep):
        raise ValueError(f"{dst}: DST should be a new directory outside SRC ({src})")


def _write_all(source: Source, directory: str, *, format: str, dtype: str | None, max_bytes: int,
               progress: bool | None) -> ConversionResult:
    config = _output_config(source, dtype)
    _guarded(os.path.join(directory, "config.json"), config.save_pretrained, directory)
    tensors = _file_tensors(source, format)
    nbytes = sum(checkpoint.stored_nbytes(a, dtype) for a in tensors.values())
    # None lets tqdm decide (no bar when stderr is not a terminal); small models convert too fast to need one.
    disable = (None if nbytes >= _PROGRESS_MIN_BYTES else True) if progress is None else not progress
    with tqdm(total=len(tensors), unit="tensor", desc="converting", disable=disable, leave=False) as bar:
        weight_files = _write_weights(directory, tensors, format=format, dtype=dtype, max_bytes=max_bytes,
                                      model_class="TF" + layouts.MODEL_CLASSES[source.head],
                                      on_tensor=lambda name: bar.update(1))
    files = list(weight_files)
    if source.head in pretrained.GENERATING_HEADS:  # the classes that can generate, as transformers decides
        path = os.path.join(directory, GENERATION_CONFIG)
        if GENERATION_CONFIG in source.side_files:
            _guarded(path, shutil.copyfile, source.side_files[GENERATION_CONFIG], path)
        else:
            _guarded(path, GenerationConfig.from_model_config(config).save_pretrained, directory)
        files.append(GENERATION_CONFIG)
    tokenizer_side = {k: v for k, v in source.side_files.items() if k != GENERATION_CONFIG}
    written = _guarded(directory, write_tokenizer_files, tokenizer_side, directory,
                       model_max_length=config.n_positions)
    if not written:
        logger.warning("%s has no tokenizer files (vocab.json + merges.txt, tokenizer.json or encoder.json + "
                       "vocab.bpe): DST gets none", source.name)
    files += ["config.json", *written]
    return ConversionResult(directory, format, dtype or _stored_dtype(source), layouts.MODEL_CLASSES[source.head],
                            source.num_parameters, weight_files, nbytes, sorted(files))


def _output_config(source: Source, dtype: str | None):
    return pretrained.config_for_saving(source.config, layouts.MODEL_CLASSES[source.head],
                                        dtype or _stored_dtype(source))


def _stored_dtype(source: Source) -> str:
    return dtype_name(source.state["transformer.wte.weight"])


def _file_tensors(source: Source, format: str) -> dict[str, np.ndarray]:
    layout = "hf_tf" if format == "tf" else "hf_pt"
    try:
        return layouts.from_canonical(source.state, layout, model_class=source.head)
    except ValueError as e:
        raise ValueError(f"{source.weights}: cannot be written as {format}: {e}") from e


def _write_weights(directory, tensors, *, format, dtype, max_bytes, model_class, on_tensor) -> list[str]:
    """Stream the tensors into DST's weight files, cast on the way; returns the file names."""
    if format == "tf":
        path = os.path.join(directory, checkpoint.TF2_WEIGHTS_NAME)
        written = [_guarded(path, checkpoint.write_tf_h5, tensors, path, model_class, dtype=dtype,
                            on_tensor=on_tensor)]
    elif format == "safetensors":
        written = _guarded(directory, checkpoint.save_weights, tensors, directory, max_shard_size=max_bytes,
                           dtype=dtype, on_tensor=on_tensor)
    else:
        written = _guarded(directory, writers.save_torch_bins, tensors, directory, dtype=dtype, max_bytes=max_bytes,
                           on_tensor=on_tensor)
    return [os.path.basename(path) for path in written]


def _guarded(path: str, fn, *args, **kwargs):
    """Run one write step; an OSError without a file name (disk full, ...) gets `path`."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        if e.filename is None and not isinstance(e, ConversionError) and e.strerror:
            raise ConversionError(e.errno, e.strerror, path) from e
        raise


def _move_into_place(staging: str, dst: str) -> None:
    old = None
    if os.path.lexists(dst):  # --force: move the old DST aside first, delete it once the new one is in place
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", suffix=".old", dir=os.path.dirname(dst))
        os.rename(dst, os.path.join(old, "dst"))
    try:
        os.rename(staging, dst)
    except OSError:
        if old is not None:
            os.rename(os.path.join(old, "dst"), dst)
            os.rmdir(old)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
