"""--dtype casting (gpt2_core.dtypes): bfloat16 rounding without torch equals torch's (round to nearest, ties to
even), and the one writer stores it as torch does."""

import numpy as np
import pytest

from gpt2_core import checkpoint
from gpt2_core.dtypes import BF16Array, bfloat16_to_float32, cast, float32_to_bfloat16_bits, is_bfloat16

torch = pytest.importorskip("torch")


def hard_float32s():
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
                        np.finfo(np.float32).max, -np.finfo(np.float32).max,  # round up to infinity
                        np.finfo(np.float32).tiny, 1e-45, -1e-45, 3.0e38], np.float32)
    # Exact ties: bit 15 set and bits 0-14 clear, with the kept lowest bit odd and even.
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7F8000, 0x00008000, 0x00018000], np.uint32)
    near_ties = np.concatenate([ties - 1, ties + 1])
    nans = np.array([0x7F800001, 0x7FFFFFFF, 0xFF800001, 0x7FC00000], np.uint32)  # low-payload NaNs stay NaN
    random_bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([special, ties.view(np.float32), near_ties.view(np.float32), nans.view(np.float32),
                           random_bits.view(np.float32), rng.standard_normal(10_000).astype(np.float32)])


def torch_bits(values):
    return torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_bfloat16_rounding_equals_torch():
    values = hard_float32s()
    ours, theirs = float32_to_bfloat16_bits(values), torch_bits(values)
    nan = np.isnan(values)
    np.testing.assert_array_equal(ours[~nan], theirs[~nan])
    # NaN payloads may differ between implementations; NaN must stay NaN with its sign.
    decoded = bfloat16_to_float32(ours[nan])
    assert np.isnan(decoded).all()
    np.testing.assert_array_equal(np.signbit(decoded), np.signbit(values[nan]))


def test_ml_dtypes_rounds_like_ours_and_is_accepted_as_bfloat16(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = hard_float32s()
    finite = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        theirs = values.astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(theirs.view(np.uint16)[finite], float32_to_bfloat16_bits(values)[finite])
    assert is_bfloat16(theirs) and isinstance(cast(theirs, "bfloat16"), BF16Array)
    checkpoint.write_safetensors({"w": theirs[finite]}, tmp_path / "m.safetensors")
    bits = checkpoint.read_safetensors(tmp_path / "m.safetensors", bf16="bits")["w"]
    np.testing.assert_array_equal(bits.view(np.uint16), torch_bits(values[finite]))


def test_bfloat16_is_labelled_bits():
    values = np.array([1.0, 2.5, -3.1], np.float32)
    out = cast(values, "bfloat16")
    assert isinstance(out, BF16Array) and is_bfloat16(out)
    np.testing.assert_array_equal(out.view(np.uint16), torch_bits(values))
    # back to float32 and float16 from the bits
    np.testing.assert_array_equal(cast(out, "float32"), torch.from_numpy(values).bfloat16().float().numpy())
    assert cast(out, "float16").dtype == np.float16
    assert cast(out, "bfloat16") is out


def test_float16_and_integers(caplog):
    values = np.array([1.0, 65504.0, 65519.0, 1e-8, np.nan, 70000.0, -np.inf], np.float32)
    np.testing.assert_array_equal(cast(values, "float16", "h.0.w"), torch.from_numpy(values).half().numpy())
    assert "h.0.w: 1 values beyond float16's range" in caplog.text  # 70000 -> inf; 65519 rounds to 65504
    ints = np.arange(4, dtype=np.int64)
    assert cast(ints, "float16") is ints  # only floating tensors are cast
    assert cast(values, None) is values
    with pytest.raises(ValueError, match="dtype"):
        cast(values, "float8")
