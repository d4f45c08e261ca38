"""What the tokenizer tests share: tiktoken as the reference, the corpus, text strategies and random texts.

The reference is tiktoken built offline from ../shared/vocab/gpt2.tiktoken with the r50k pattern.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import strategies as st

from gpt2_core import GPT2Tokenizer
from gpt2_core.bpe import BUILTIN_DIR, ByteLevelBPE
from gpt2_core.byte_level import byte_level_to_bytes
from gpt2_core.pretokenize import GPT2_PATTERN

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"
EOS = 50256


@pytest.fixture(scope="module")
def reference():
    """tiktoken's GPT-2 encoding, built from the shared rank file (tiktoken cannot download here)."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    path = SHARED / "vocab" / "gpt2.tiktoken"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(path)),
                             special_tokens={"<|endoftext|>": EOS})


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


def corpus(name: str) -> str:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path.read_text(encoding="utf-8")


def fresh_bpe() -> ByteLevelBPE:
    """The shipped vocabulary with empty caches of its own (not the shared builtin)."""
    return ByteLevelBPE.from_merges_text((Path(BUILTIN_DIR) / "merges.txt").read_text(encoding="utf-8"))


def merge_words(bpe, words: list[str]) -> list[tuple[int, ...]]:
    """`LockstepMerger.merge_bytes` on byte-level words, as one tuple of ids per word."""
    np = pytest.importorskip("numpy")
    from gpt2_core.bpe_lockstep import LockstepMerger

    raw = np.frombuffer(b"".join(map(byte_level_to_bytes, words)), dtype=np.uint8)
    lens = np.array([len(byte_level_to_bytes(w)) for w in words], dtype=np.int64)
    starts, counts, flat = LockstepMerger(bpe).merge_bytes(raw, np.cumsum(lens) - lens, lens)
    return [tuple(flat[s:s + c].tolist()) for s, c in zip(starts, counts)]


# A text strategy that hits GPT-2's pattern where it is subtle: whitespace runs before words and at the end,
# contractions, digits, punctuation runs, emoji and every Unicode category (surrogates excluded).
FRAGMENT_LIST = [" ", "  ", "   ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u3000", "\xa0", "\u2028",
                 "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", "123", " 4567", "½", "²",
                 "😀", "🤗🤗", "👨‍👩‍👧", "é", "é", "中文", "ß", "ǅ", "\x00", "\x1c", "\x01", "...",
                 "<|endoftext|>", "<|endoftext", "ĠĊ"]
# Code points unassigned in this Python's Unicode tables ("Cn") are left out: the ones assigned since (Unicode 15-17)
# are the measured, documented divergence between `regex` and tiktoken (bench_tokenizer.py --unicode).
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=12),
                          st.sampled_from(FRAGMENT_LIST)), max_size=24).map("".join)


def random_text(seed: int, size: int) -> str:
    """Fragments that stress the pattern, random words in several scripts and random code points."""
    rng = random.Random(seed)
    fragments = [f for f in FRAGMENT_LIST if f != "\x01"]  # a placeholder character sends text to the piece path
    fragments += [" ", "  ", "\n", "\n    ", "\t", ",", ".", "(", ")", "'s", "'ll", " 2024", "—", "…"]
    alphabets = ["abcdefghijklmnopqrstuvwxyz", "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω",
                 "的一是不了人我在有他这为之大来以个中上们", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "अआइईउऊएऐओऔकखगघचछजझ"]
    out: list[str] = []
    while size > 0:
        roll = rng.random()
        if roll < 0.6:
            letters = rng.choice(alphabets)
            out.append(" " + "".join(rng.choice(letters) for _ in range(rng.randint(1, 14))))
        elif roll < 0.9:
            out.append(rng.choice(fragments))
        else:
            out.append("".join(chr(rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x3000, 0x9FFF),
                                               rng.randint(0x1F300, 0x1FAFF)])) for _ in range(rng.randint(1, 4))))
        size -= len(out[-1])
    return "".join(out)
