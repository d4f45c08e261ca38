"""--dtype: cast floating tensors to float32, float16 or bfloat16 with numpy alone.

numpy has no bfloat16; ml_dtypes (installed with TensorFlow) provides one. Without it we round float32 to the top
16 bits ourselves (round to nearest, ties to even, as torch and ml_dtypes do) and label the uint16 array with
`BF16`, the one dtype the writers need to be told about.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")

try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    BFLOAT16 = None


def float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) nearest to `array`, ties to even; NaN stays a quiet NaN."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    rounded = rounded.astype(np.uint16)
    nan = np.isnan(array)
    if nan.any():  # rounding a NaN's low mantissa bits away could turn it into infinity
        rounded[nan] = (bits[nan] >> np.uint32(16)).astype(np.uint16) | np.uint16(0x0040)
    return rounded


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def is_bfloat16(array: np.ndarray) -> bool:
    return isinstance(array, BF16Array) or (BFLOAT16 is not None and array.dtype == BFLOAT16)


def from_torch(tensor) -> np.ndarray:
    """A CPU torch tensor as a numpy array sharing its memory (bfloat16 as ml_dtypes' or as a BF16Array)."""
    import torch

    if tensor.dtype == torch.bfloat16:
        bits = tensor.view(torch.int16).numpy().view(np.uint16)
        return bits.view(BFLOAT16) if BFLOAT16 is not None else bits.view(BF16Array)
    return tensor.numpy()


def cast(array: np.ndarray, dtype: str | None, name: str = "") -> np.ndarray:
    """`array` in `dtype` (None keeps it). Integer tensors are never cast.

    bfloat16 comes back as ml_dtypes.bfloat16 when installed, otherwise as a `BF16Array` (uint16 bits). Values
    beyond float16's range become infinite, as in every framework; a warning names the tensor (`name`).
    """
    if dtype is None or not (np.issubdtype(array.dtype, np.floating) or is_bfloat16(array)):
        return array
    if dtype == "bfloat16" and is_bfloat16(array):
        return array
    if isinstance(array, BF16Array):
        array = bfloat16_bits_to_float32(array)
    if dtype == "bfloat16":
        if BFLOAT16 is not None:
            with np.errstate(invalid="ignore"):  # NaN stays NaN, quietly
                return np.asarray(array, dtype=np.float32).astype(BFLOAT16)
        return float32_to_bfloat16_bits(array).view(BF16Array)
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` should be one of {', '.join(DTYPES)}. Received: dtype={dtype!r}")
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


class BF16Array(np.ndarray):
    """uint16 storage of bfloat16 values: lets writers tell bfloat16 bits from real uint16 tensors."""


def storage(array: np.ndarray) -> tuple[str, np.ndarray]:
    """(safetensors dtype name, array whose bytes are the tensor) for writers that emit raw bytes."""
    if isinstance(array, BF16Array) or is_bfloat16(array):
        return "BF16", np.asarray(array).view(np.uint16)
    names = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
             "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
             "bool": "BOOL"}
    return names[array.dtype.name], array
