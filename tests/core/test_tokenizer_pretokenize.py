"""Where text is cut before BPE (gpt2_core.pretokenize): every fast form equals the rule it stands for.

`GPT2_PATTERN` and `UNIT_CUT` are the rules; `split_pieces` (stdlib `re` on ASCII), `piece_starts` (numpy),
`split_units` (str methods) and `unit_cuts` (numpy) are checked against them on arbitrary Unicode (hypothesis), on
every string of up to 4 characters over one representative of each class the pattern tells apart, and with each
code point between representatives of those classes.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_cases import TEXT

from gpt2_core.pretokenize import (PIECES, PLACEHOLDER, UNIT_CUT, CodePointClasses, piece_starts, split_pieces,
                                   split_units, unit_cuts)

np = pytest.importorskip("numpy")
ANY_TEXT = st.one_of(TEXT, st.text(st.characters(blacklist_categories=("Cs",))))
# One character of each class GPT2_PATTERN tells apart: the letters of the contractions ('s 'd 'm 't 'll 've 're;
# the others behave as 's'), a number, other, the apostrophe, " ", other whitespace (ASCII and not), and \x1c, which
# str.isspace() calls whitespace but the pattern does not.
CLASS_REPRESENTATIVES = "slver1.' \n\u3000\x1c"


@pytest.fixture(scope="module")
def classes():
    return CodePointClasses(np)


def code_points(text: str):
    return np.array(list(map(ord, text)), dtype=np.uint32)


def check_cuts(text: str, classes) -> None:
    """Every fast cut of `text` equals its rule."""
    cp = code_points(text)
    expected = [match.start() for match in PIECES.finditer(text)]
    assert piece_starts(np, cp, classes(cp)).tolist() == expected
    assert split_pieces(text) == PIECES.findall(text)
    assert unit_cuts(np, cp, classes).tolist() == [m.start() for m in UNIT_CUT.finditer(text) if m.start() > 0]
    if PLACEHOLDER not in text:
        assert [unit.replace(PLACEHOLDER, " ") for unit in split_units(text)] == UNIT_CUT.split(text)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_hypothesis_fast_cuts_equal_the_rules(classes, text):
    check_cuts(text, classes)


def test_every_short_string_of_classes(classes):
    """All 22,621 strings of 1 to 4 class representatives: every boundary between classes, in every context of
    up to 4 characters."""
    for size in range(1, 5):
        for chars in itertools.product(CLASS_REPRESENTATIVES, repeat=size):
            check_cuts("".join(chars), classes)


@pytest.mark.slow
def test_every_code_point_between_each_class(classes):
    """Each code point (surrogates excepted) between two letters, two numbers and two spaces, which tells the four
    classes apart (a letter joins letters, a number numbers, whitespace spaces, other none of them): the class
    table agrees with the pattern on all 1,112,064 of them."""
    code = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)]).astype(np.uint32)
    for neighbour in "a1 ":
        cp = np.empty(2 * len(code), dtype=np.uint32)
        cp[0::2], cp[1::2] = ord(neighbour), code
        text = cp.tobytes().decode("utf-32-le")
        lengths = np.fromiter(map(len, PIECES.findall(text)), dtype=np.int64)
        expected = np.cumsum(lengths) - lengths
        got = piece_starts(np, cp, classes(cp))
        if not np.array_equal(got, expected):
            first = int(np.flatnonzero(got[:len(expected)] != expected[:len(got)])[0])
            pytest.fail(f"after {neighbour!r}: the cuts differ near U+{int(cp[expected[first]]):04X}")


def test_units_cut_where_pieces_cannot_cross():
    text = "a  b\n   c\t d \xa0 e\u3000 f \n\n x  "
    units = split_units(text)
    assert " ".join(units).replace(PLACEHOLDER, " ") == text
    # every cut space is followed by a non-whitespace character
    pos = len(units[0])
    for unit in units[1:]:
        assert text[pos] == " " and not text[pos + 1].isspace()
        pos += 1 + len(unit)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_units_have_the_pieces_of_the_text(text):
    """The invariant the unit caches rest on: a text's pieces are its first unit's, then those of " " + unit."""
    units = UNIT_CUT.split(text)
    assert PIECES.findall(units[0]) + [p for u in units[1:] for p in PIECES.findall(" " + u)] == PIECES.findall(text)

