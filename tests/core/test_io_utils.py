"""io_utils: the JSON reader config.json and generation_config.json share, and atomic writes."""

import os

import pytest

from gpt2_core.io_utils import atomic_write_text, read_json_object


def test_read_json_object(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, '{"n_layer": 2, "name": "tiny"}')
    assert read_json_object(path) == {"n_layer": 2, "name": "tiny"}
    assert os.listdir(tmp_path) == ["config.json"]  # no temp file left beside it


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not valid JSON"), ("[1, 2]", "should hold a JSON object, found list"),
    (b"\xff\xfe{}", "is not valid JSON")])
def test_read_json_object_names_the_file(tmp_path, text, problem):
    path = tmp_path / "generation_config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=problem) as info:
        read_json_object(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_json_object(tmp_path / "absent.json")
