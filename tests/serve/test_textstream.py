"""ChoiceText: what a stream may send, token by token, checked against the whole text decoded at once (the real
GPT-2 tokenizer): never half a character, never a stop string or anything after it, and the deltas add up."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.tokenizer import GPT2Tokenizer
from gpt2_serve.textstream import ChoiceText

TOKENIZER = GPT2Tokenizer.from_pretrained("gpt2")


def stream(text, stops):
    choice = ChoiceText(TOKENIZER, stops)
    deltas = []
    for token in TOKENIZER.encode(text):
        deltas.append(choice.add(token))
        if choice.stopped:
            break
    deltas.append(choice.finish())
    return deltas, choice


def expected(text, stops):
    """The reference: decode every token prefix whole; at the first prefix holding a stop string, cut at the
    earliest one (generation stops there, so a stop that would complete later never happens)."""
    ids = TOKENIZER.encode(text)
    for n in range(1, len(ids) + 1):
        prefix = TOKENIZER.decode(ids[:n]).rstrip("\ufffd")
        cuts = [prefix.find(s) for s in stops if s in prefix]
        if cuts:
            return prefix[:min(cuts)]
    return text


def test_multibyte_characters_are_never_split():
    text = "héllo 🙂 wörld 日本語 — ok 🎉🎉"
    ids = TOKENIZER.encode(text)
    assert any("\ufffd" in TOKENIZER.decode([i]) for i in ids)  # the text really splits characters over tokens
    deltas, _ = stream(text, [])
    assert "".join(deltas) == text and all("\ufffd" not in d for d in deltas)


@pytest.mark.parametrize("stop", ["o 🙂 w", "🙂", "world", "ld 日", "!"])
def test_stop_strings(stop):
    text = "héllo 🙂 wörld 日本語 and the world!"
    deltas, choice = stream(text, [stop])
    assert "".join(deltas) == expected(text, [stop])
    assert choice.stopped == (stop in text)


def test_a_possible_stop_start_is_held_back_until_settled():
    choice = ChoiceText(TOKENIZER, ["Hello world"])
    sent = "".join(choice.add(t) for t in TOKENIZER.encode("Say Hello"))
    assert sent == "Say "  # "Hello" could still become the stop string
    sent += "".join(choice.add(t) for t in TOKENIZER.encode(" there"))
    assert sent == "Say Hello there"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab é🙂\n", min_size=1, max_size=30), st.lists(st.text(alphabet="ab é🙂", min_size=1,
                                                                             max_size=4), max_size=3))
def test_deltas_equal_the_cut_text(text, stops):
    deltas, _ = stream(text, stops)
    if TOKENIZER.decode(TOKENIZER.encode(text)) != text:
        return
    assert "".join(deltas) == expected(text, stops)
    assert all("\ufffd" not in d for d in deltas[:-1])
