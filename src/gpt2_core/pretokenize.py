"""Where GPT-2 cuts text before BPE: the pre-tokenization pattern, the unit cut, and their fast forms.

Two rules decide every cut, each defined once here as a `regex` pattern:

- `GPT2_PATTERN` cuts a text into pieces (BPE never merges across pieces). `split_pieces` applies it (stdlib `re`
  with ASCII classes on ASCII text: the same cuts, about twice as fast), and `piece_starts` finds the same cuts
  with array operations on code points, for the bulk path (tests compare it with the pattern on arbitrary
  Unicode and on every short string of class representatives, and its class table on every code point).
- `UNIT_CUT` cuts before every " " followed by a non-whitespace character. Such a space always starts a piece
  (" word", " 42", " (": the pattern takes it with the character after it), so no piece crosses the cut: the
  pieces of a text are the pieces of its first unit, then those of " " + each later unit. Units are what the
  caches hold. `split_units` (str methods only: C speed) and `unit_cuts` (numpy) are its fast forms, tested
  against it.
"""

from __future__ import annotations

import re

import regex

# OpenAI's GPT-2 pre-tokenization pattern (tiktoken's r50k_base `pat_str`, same matches as the original
# `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same pattern for stdlib `re` with ASCII classes: on pure-ASCII text it cuts exactly like GPT2_PATTERN
# (\s here is [ \t\n\r\f\v], Unicode White_Space restricted to ASCII) and runs about twice as fast as `regex`.
_ASCII_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""
PIECES = regex.compile(GPT2_PATTERN)
_ASCII_PIECES = re.compile(_ASCII_PATTERN, re.ASCII)
UNIT_CUT = regex.compile(r" (?=\S)")

# Unicode White_Space, which is what `\s` means to `regex` and to tiktoken (Python's str.isspace adds \x1c-\x1f).
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
              "\u2028\u2029\u202f\u205f\u3000")
_WS_NOT_SPACE_ASCII = "\t\n\x0b\x0c\r"
_WS_NON_ASCII = WHITESPACE[6:]
PLACEHOLDER = "\x01"  # in `split_units`' output: a space that is no cut


def split_pieces(text: str) -> list[str]:
    """`text` cut by GPT2_PATTERN."""
    return (_ASCII_PIECES if text.isascii() else PIECES).findall(text)


def split_units(text: str) -> list[str]:
    """`UNIT_CUT.split(text)`, except that the spaces left inside units read PLACEHOLDER (callers put them back).

    str.split(" ") cuts at every space, so the spaces that are no cut (all but the last of a run, a space before
    other whitespace or at the end) first become PLACEHOLDER. "Followed by whitespace" is marked on the reversed
    text, where it reads "preceded by" and str.replace, scanning left to right, carries the mark along a run of
    spaces. Only str methods run here: C speed (~1.5x `UNIT_CUT.split` on English), no regex.
    """
    r = text[::-1].replace("  ", " " + PLACEHOLDER)
    for ws in _WS_NOT_SPACE_ASCII:
        if ws in r:
            r = r.replace(ws + " ", ws + PLACEHOLDER)
    if not r.isascii():
        for ws in _WS_NON_ASCII:
            if ws in r:
                r = r.replace(ws + " ", ws + PLACEHOLDER)
    # no two spaces are adjacent now, so one pass marks the rest of every run
    r = r.replace(PLACEHOLDER + " ", PLACEHOLDER + PLACEHOLDER)
    units = r[::-1].split(" ")
    if text.endswith(" "):  # a final space is followed by nothing: no cut
        units.pop()
        units[-1] += PLACEHOLDER
    return units


# ------------------------------------------------------------------------------------- numpy forms (bulk path)
# Character classes of GPT2_PATTERN: a piece is a run of one of the first three (after an optional " "), or
# whitespace. WHITESPACE_CLASS is every \s but " ".
LETTER, NUMBER, OTHER, SPACE, WHITESPACE_CLASS, _UNCLASSIFIED = 0, 1, 2, 3, 4, 255
_CLASS_RUNS = regex.compile(r"(\p{L}+)|(\p{N}+)|(\s+)")
_CLASSIFY = regex.compile(r"(\p{L})|(\p{N})|(\s)|.", regex.DOTALL)
_CLASS_OF_GROUP = {1: LETTER, 2: NUMBER, 3: WHITESPACE_CLASS, None: OTHER}  # match.lastindex -> class


class CodePointClasses:
    """The class of each code point, by a lookup table made from `regex`'s own \\p{L}, \\p{N} and \\s (so the
    classes are exactly the pattern's): the Basic Multilingual Plane at once, the other planes as their
    characters are first seen."""

    def __init__(self, np):
        self.np = np
        self.table = np.full(0x110000, _UNCLASSIFIED, dtype=np.uint8)
        self.table[:0x10000] = OTHER
        plane = np.arange(0x10000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
        for match in _CLASS_RUNS.finditer(plane):
            self.table[match.start():match.end()] = _CLASS_OF_GROUP[match.lastindex]
        self.table[ord(" ")] = SPACE

    def __call__(self, cp):
        """The classes of the code points `cp` (a uint8, uint16 or uint32 array)."""
        cls = self.table[cp]
        if cp.dtype == self.np.uint32:
            unclassified = cls == _UNCLASSIFIED
            if unclassified.any():
                new = self.np.unique(cp[unclassified])
                self.table[new] = [_CLASS_OF_GROUP[match.lastindex]
                                   for match in map(_CLASSIFY.match, map(chr, new.tolist()))]
                cls = self.table[cp]
        return cls


def unit_cuts(np, cp, classes: CodePointClasses):
    """Where UNIT_CUT cuts the text of code points `cp`, past its first character (only the characters after
    a space are classified: a warm text spends no more)."""
    spaces = np.flatnonzero(cp[1:-1] == ord(" ")) + 1
    return spaces[classes(cp[spaces + 1]) < SPACE]


def piece_starts(np, cp, cls):
    """Where GPT2_PATTERN's matches start in the text of code points `cp` (classes `cls`).

    A piece is a run of letters, of numbers, of other characters, or of whitespace, except that: a run of
    whitespace followed by text leaves its last character to the next piece (`\\s+(?!\\S)`); that character, if
    it is " ", joins the run after it (` ?\\p{L}+` ...), else it is a piece of its own; and a piece that starts
    with ' followed by s, d, m, t, ll, ve or re is that contraction alone.
    """
    n = len(cp)
    group = np.minimum(cls, SPACE)  # letters, numbers, others, whitespace
    start = np.empty(n, dtype=bool)
    start[:1] = True
    np.not_equal(group[1:], group[:-1], out=start[1:])
    is_space = group == SPACE
    before_text = is_space[:-1] & ~is_space[1:]  # whitespace, then a non-whitespace character
    start[:-1] |= before_text
    start[1:] &= ~(before_text & (cls[:-1] == SPACE))
    quotes = np.flatnonzero(start[:-1] & (cp[:-1] == ord("'")))
    if len(quotes):
        first, second = cp[quotes + 1], cp[np.minimum(quotes + 2, n - 1)] * (quotes + 2 < n)
        size = np.where(np.isin(first, [ord(c) for c in "sdmt"]), 2, 0)
        size[((first == ord("l")) & (second == ord("l"))) | ((first == ord("v")) & (second == ord("e")))
             | ((first == ord("r")) & (second == ord("e")))] = 3
        quotes, size = quotes[size > 0], size[size > 0]
        start[quotes + 1] = False
        ends = quotes + size
        start[ends[ends < n]] = True
    return np.flatnonzero(start)
