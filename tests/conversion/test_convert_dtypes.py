"""--dtype casting: bfloat16 rounding without torch equals torch's (round to nearest, ties to even)."""

import numpy as np
import pytest

from gpt2_convert import dtypes
from gpt2_convert.dtypes import BF16Array, cast, float32_to_bfloat16_bits, storage

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
    decoded = dtypes.bfloat16_bits_to_float32(ours[nan])
    assert np.isnan(decoded).all()
    np.testing.assert_array_equal(np.signbit(decoded), np.signbit(values[nan]))


@pytest.mark.skipif(dtypes.BFLOAT16 is None, reason="ml_dtypes is not installed")
def test_ml_dtypes_path_equals_ours():
    values = hard_float32s()
    finite = ~np.isnan(values)
    np.testing.assert_array_equal(cast(values, "bfloat16").view(np.uint16)[finite],
                                  float32_to_bfloat16_bits(values)[finite])


def test_without_ml_dtypes_bfloat16_is_labelled_bits(monkeypatch):
    monkeypatch.setattr(dtypes, "BFLOAT16", None)
    values = np.array([1.0, 2.5, -3.1], np.float32)
    out = cast(values, "bfloat16")
    assert isinstance(out, BF16Array)
    kind, data = storage(out)
    assert kind == "BF16"
    np.testing.assert_array_equal(data, torch_bits(values))
    # back to float32 and float16 from the bits
    np.testing.assert_array_equal(cast(out, "float32"), torch.from_numpy(values).bfloat16().float().numpy())
    assert cast(out, "float16").dtype == np.float16


def test_float16_and_integers(caplog):
    values = np.array([1.0, 65504.0, 65519.0, 1e-8, np.nan, 70000.0, -np.inf], np.float32)
    np.testing.assert_array_equal(cast(values, "float16", "h.0.w"), torch.from_numpy(values).half().numpy())
    assert "h.0.w: 1 values beyond float16's range" in caplog.text  # 70000 -> inf; 65519 rounds to 65504
    ints = np.arange(4, dtype=np.int64)
    assert cast(ints, "float16") is ints  # only floating tensors are cast
    assert cast(values, None) is values
    with pytest.raises(ValueError, match="dtype"):
        cast(values, "float8")
