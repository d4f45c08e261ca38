"""Streamers: `generate(..., streamer=s)` calls `s.put(ids)` with the prompt, then with each new token, then `s.end()`.

    >>> streamer = TextStreamer(tokenizer, skip_prompt=True)
    >>> model.generate(ids, max_new_tokens=40, streamer=streamer)   # text appears as it forms
"""

from __future__ import annotations

import sys

REPLACEMENT = "\ufffd"


class BaseStreamer:
    def put(self, value) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Write decoded text to `file` (stdout) as tokens arrive, for one sequence (batch 1, greedy or sampling).

    Byte-level BPE decodes a prefix of the tokens to a prefix of the text, except that a character whose UTF-8
    bytes span several tokens shows as U+FFFD until its last byte arrives: that tail is held back, so a multi-byte
    character is never split. `decode_kwargs` go to `tokenizer.decode` (e.g. skip_special_tokens=True).
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, *, file=None, **decode_kwargs):
        self.tokenizer, self.skip_prompt, self.decode_kwargs = tokenizer, skip_prompt, decode_kwargs
        self.file = file
        self.tokens: list[int] = []
        self.printed = 0           # characters of the decoded text already written
        self.next_is_prompt = True

    def put(self, value) -> None:
        ids = value.tolist() if hasattr(value, "tolist") else value  # torch, numpy or a list
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            if len(ids) > 1:
                raise ValueError(f"TextStreamer streams one sequence; received a batch of {len(ids)}")
            ids = ids[0]
        if self.skip_prompt and self.next_is_prompt:
            self.next_is_prompt = False
            return
        self.next_is_prompt = False
        self.tokens.extend(int(t) for t in ids)
        text = self.tokenizer.decode(self.tokens, **self.decode_kwargs)
        ready = len(text.rstrip(REPLACEMENT))  # an unfinished character decodes to U+FFFD: wait for its bytes
        if ready > self.printed:
            self.on_finalized_text(text[self.printed:ready])
            self.printed = ready

    def end(self) -> None:
        if self.tokens:
            text = self.tokenizer.decode(self.tokens, **self.decode_kwargs)
            rest = text[self.printed:]
        else:
            rest = ""
        self.tokens, self.printed, self.next_is_prompt = [], 0, True
        self.on_finalized_text(rest, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Where text goes; override to send it elsewhere. A newline closes the stream."""
        out = self.file if self.file is not None else sys.stdout
        out.write(text + ("\n" if stream_end else ""))
        out.flush()
