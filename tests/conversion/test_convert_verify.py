"""--verify: SRC and DST run in every installed backend; a wrong tensor fails the conversion and leaves no DST."""

import os

import numpy as np
import pytest

from gpt2_convert import converter, convert
from gpt2_convert.verify import PARITY_RTOL, VerificationError

pytest.importorskip("torch")


@pytest.mark.parametrize("fmt, dtype", [("safetensors", None), ("pytorch", "float16"), ("tf", "float16")])
def test_verify_compares_src_and_dst(hf_lm, tmp_path, fmt, dtype):
    result = convert(hf_lm[0], tmp_path / "dst", format=fmt, dtype=dtype, verify=True)
    report = result.verify_report
    assert report and all(row.ok for row in report)
    same_backend = [row for row in report if row.reference.split(":")[0] == row.candidate.split(":")[0]]
    assert same_backend and all(row.max_abs_diff == 0.0 for row in same_backend)  # equal weights, equal outputs
    if fmt != "tf":  # transformers 5 reads no tf_model.h5
        assert any(row.candidate == "transformers:DST" for row in report)


def test_verify_catches_a_wrong_tensor(hf_lm, tmp_path, monkeypatch):
    real = converter._file_tensors

    def off_by_a_bit(source, fmt):
        return {name: array * np.float32(1 + 10 * PARITY_RTOL) if name.endswith("ln_f.weight") else array
                for name, array in real(source, fmt).items()}

    monkeypatch.setattr(converter, "_file_tensors", off_by_a_bit)
    with pytest.raises(VerificationError, match="differs from") as info:
        convert(hf_lm[0], tmp_path / "dst", verify=True)
    assert any(not row.ok for row in info.value.report)
    assert os.listdir(tmp_path) == []
