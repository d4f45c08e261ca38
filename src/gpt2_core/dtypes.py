"""bfloat16 without a framework, and the one `cast` every writer uses.

numpy has no bfloat16. We carry it as its raw bits: a uint16 array viewed as `BF16Array`, a tag that tells writers
"these are bfloat16 bits, not integers". An ml_dtypes bfloat16 array (what TensorFlow's `.numpy()` returns) is
accepted wherever a BF16Array is. Rounding float32 to bfloat16 is ours (nearest, ties to even, as torch and
ml_dtypes round), so no optional package is ever needed.

    >>> import numpy as np
    >>> from gpt2_core import dtypes
    >>> bits = dtypes.cast(np.array([1.0, 3.14159], np.float32), "bfloat16")
    >>> dtypes.is_bfloat16(bits), dtypes.cast(bits, "float32").tolist()
    (True, [1.0, 3.140625])
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


class BF16Array(np.ndarray):
    """uint16 storage of bfloat16 values: lets writers tell bfloat16 bits from real uint16 tensors.

    Make one with `bits.view(BF16Array)` (no copy). Views, slices and reshapes keep the tag; `np.asarray` drops it,
    so code that may hold one uses `np.asanyarray`.
    """


def is_bfloat16(array) -> bool:
    """True for a BF16Array or an ml_dtypes bfloat16 array (recognised by name: ml_dtypes is never imported)."""
    return isinstance(array, BF16Array) or getattr(getattr(array, "dtype", None), "name", None) == "bfloat16"


def bfloat16_bits(array) -> np.ndarray:
    """The uint16 bit patterns of a bfloat16 array (a plain ndarray view, no copy)."""
    return np.asarray(array).view(np.uint16)


def float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) nearest to `array`, ties to even; NaN stays a quiet NaN."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    rounded = rounded.astype(np.uint16)
    nan = np.isnan(array)
    if nan.any():  # rounding a NaN's low mantissa bits away could turn it into infinity
        rounded[nan] = (bits[nan] >> np.uint32(16)).astype(np.uint16) | np.uint16(0x0040)
    return rounded


def bfloat16_to_float32(array) -> np.ndarray:
    """bfloat16 (bits, BF16Array or ml_dtypes) -> float32: bfloat16 is the top half of a float32, so this is exact."""
    return (bfloat16_bits(array).astype(np.uint32) << np.uint32(16)).view(np.float32)


def cast(array: np.ndarray, dtype: str | None, name: str = "") -> np.ndarray:
    """`array` in `dtype` (None keeps it; "float32", "float16" or "bfloat16"). Integer tensors are never cast.

    bfloat16 comes back as a BF16Array. An array already in `dtype` comes back as is (a memory map stays one).
    Values beyond float16's range become infinite, as in every framework; a warning names the tensor (`name`).
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"`dtype` should be one of {', '.join(DTYPES)}. Received: dtype={dtype!r}")
    bf16 = is_bfloat16(array)
    if dtype is None or not (bf16 or np.issubdtype(array.dtype, np.floating)):
        return array
    if bf16:
        if dtype == "bfloat16":
            return array if isinstance(array, BF16Array) else bfloat16_bits(array).view(BF16Array)
        array = bfloat16_to_float32(array)
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(array).view(BF16Array)
    with np.errstate(over="ignore"):
        out = array.astype(dtype, copy=False)
    if dtype == "float16" and out is not array and array.size and _beyond_float16(array):
        overflow = int(np.count_nonzero(np.isinf(out) & np.isfinite(array)))
        logger.warning("%s: %d values beyond float16's range (65504) became infinite", name or "a tensor", overflow)
    return out


def _beyond_float16(array: np.ndarray) -> bool:
    # Values from 65520 up round to infinity. fmax/fmin skip NaN and make no temporary array.
    flat = array.reshape(-1)
    return bool(np.fmax.reduce(flat) >= 65520 or np.fmin.reduce(flat) <= -65520)


def dtype_name(array) -> str:
    """"bfloat16" for bfloat16 in either form, else numpy's name ("float32", "int64", ...)."""
    return "bfloat16" if is_bfloat16(array) else np.dtype(array.dtype).name
