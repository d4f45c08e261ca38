"""TextStreamer: text as it forms, never half a character."""

import io

import numpy as np

from gpt2_core.streamers import TextStreamer


class ByteTokenizer:
    """One token per byte, decoded like byte-level BPE (errors='replace')."""

    def decode(self, ids, **kwargs):
        return bytes(ids).decode("utf-8", errors="replace")


def _stream(text, skip_prompt, prompt=b"P: "):
    out, pieces = io.StringIO(), []
    streamer = TextStreamer(ByteTokenizer(), skip_prompt=skip_prompt, file=out)
    original = streamer.on_finalized_text

    def record(t, stream_end=False):
        pieces.append(t)
        original(t, stream_end)

    streamer.on_finalized_text = record
    streamer.put(np.array([list(prompt)]))
    for byte in text.encode("utf-8"):
        streamer.put(np.array([byte]))
    streamer.end()
    return out.getvalue(), pieces


def test_multibyte_characters_are_never_split():
    text = "héllo 世界 🙂!"
    value, pieces = _stream(text, skip_prompt=True)
    assert value == text + "\n"
    assert all("\ufffd" not in p for p in pieces)
    assert "世" in pieces and "🙂" in pieces  # each appears whole, as soon as its last byte arrives


def test_prompt_is_printed_unless_skipped():
    value, _ = _stream("ok", skip_prompt=False)
    assert value == "P: ok\n"


def test_batch_of_two_is_refused():
    import pytest

    streamer = TextStreamer(ByteTokenizer(), file=io.StringIO())
    with pytest.raises(ValueError, match="one sequence"):
        streamer.put(np.array([[1, 2], [3, 4]]))
