"""One choice's text as its tokens arrive: incremental decoding, stop strings, and what is safe to send yet.

Byte-level BPE can split a character's UTF-8 bytes over several tokens; until its last byte arrives the decoded
text ends in U+FFFD, so that tail is held back. Stop strings are matched on the decoded text (so across token
boundaries); the text from the first match on is never sent, and any tail that could still become a stop string
is held back until the next tokens settle it. `released` only grows, so streamed deltas concatenate to the final
text exactly.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class ChoiceText:
    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.settled_ids = 0       # ids[:settled_ids] decode to `settled` (ends on a whole character)
        self.settled = ""
        self.text = ""             # the decoded text of all ids (an unfinished character as U+FFFD)
        self.released = 0          # characters of `text` handed out
        self.stopped = False       # a stop string matched: nothing more is released

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def offset(self) -> int:
        """Where the next token's text starts in the completion (OpenAI's text_offset)."""
        return len(self.text)

    def add(self, token_id: int) -> str:
        """Take one token; return the text that became safe to send ('' while held back or after a stop)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        # decoding only the unsettled tail keeps each step O(new tokens), not O(completion length)
        self.text = self.settled + self._decode(self.ids[self.settled_ids:])
        if not self.text.endswith(REPLACEMENT):
            self.settled, self.settled_ids = self.text, len(self.ids)
        return self._release(self.text.rstrip(REPLACEMENT))

    def finish(self) -> str:
        """The generation ended: release whatever was held back (an unfinished character stays U+FFFD, as
        `tokenizer.decode` shows it), except a stop string's start, which only a whole stop string cuts."""
        return "" if self.stopped else self._release(self.text, final=True)

    def _release(self, text: str, final: bool = False) -> str:
        start = self.released
        cut = min((i for i in (text.find(s, start) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, end = True, cut
        elif final:
            end = len(text)
        else:
            end = len(text) - self._partial_stop(text, start)
        if end <= start:
            return ""
        self.released = end
        return text[start:end]

    def _partial_stop(self, text: str, start: int) -> int:
        """Length of the longest tail of text[start:] that a stop string begins with."""
        longest = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text) - start), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    @property
    def final_text(self) -> str:
        return self.text[:self.released]
