"""Batch encoding on worker processes (gpt2_core.tokenizer_parallel): only when asked for, never a fork beside
other threads, and always the ids of the serial loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_cases import CORPUS, corpus, tok  # noqa: F401 (fixture)

from gpt2_core import GPT2Tokenizer, tokenizer_parallel
from gpt2_core.tokenizer_parallel import _chunks


def batch() -> list[str]:
    return corpus("multi_A_3M.txt").split("\n")[:3000] + ["<|endoftext|> x", "", " ", "é" * 9000]


@pytest.mark.parametrize("threads", [1, 2])
def test_workers_give_the_serial_ids(tok, monkeypatch, threads):
    """Forked workers (this process runs one thread) and fork-server workers (it runs several: they receive a
    pickled tokenizer and start with empty caches) both give the serial ids."""
    monkeypatch.setattr(tokenizer_parallel, "_thread_count", lambda: threads)
    texts = batch()
    serial = tok.encode_batch(texts)
    assert serial == [tok.encode(t) for t in texts] and tok._workers is None  # no workers unless asked for
    parallel_tok = GPT2Tokenizer.from_pretrained("gpt2")
    try:
        assert parallel_tok.encode_batch(texts, num_workers=1) == serial
        assert parallel_tok._workers.start_method == ("fork" if threads == 1 else "forkserver")
        parallel_tok.add_tokens(["zzqq"])  # new workers for the new vocabulary
        assert parallel_tok.encode_batch(["azzqqb", "c"], num_workers=1) == [[64, 50257, 65], [66]]
        assert parallel_tok.encode_batch(["azzqqb", "c"], num_workers=2) == [[64, 50257, 65], [66]]
    finally:
        parallel_tok.close()
    assert parallel_tok._workers is None


def test_bad_batches_are_reported(tok):
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"num_workers=.*{bad!r}"):
            tok.encode_batch(["a", "b"], num_workers=bad)
    with pytest.raises(ValueError, match="should be a string.*int"):
        tok.encode_batch(["a", 3], num_workers=1)
    with pytest.raises(ValueError, match="should be a string.*int"):
        tok.encode_batch(["a", 3])
    with pytest.raises(ValueError, match="list of strings.*'abc'"):
        tok.encode_batch("abc")
    assert tok._workers is None


THREADED = """
    import json, os, sys
    import torch
    torch.set_num_threads(2)
    x = torch.randn(512, 512)
    (x @ x).sum()  # torch's intra-op threads run now
    threads = len(os.listdir("/proc/self/task"))
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))  # every os.fork() of this process, multiprocessing's too
    from gpt2_core import GPT2Tokenizer
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    texts = open(sys.argv[1], encoding="utf-8").read()[:1_100_000].split("\\n")  # 1.1 MB in short lines
    serial = tok.encode_batch(texts)
    same_call = tok(texts)["input_ids"] == serial
    forks_serial = len(forks)
    parallel = tok.encode_batch(texts[:10_000], num_workers=2)
    print(json.dumps({"threads": threads, "forks_serial": forks_serial, "forks": len(forks), "same_call": same_call,
                      "same": parallel == serial[:10_000], "method": tok._workers.start_method}))
    tok.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_no_fork_beside_torch_threads():
    """In a process where torch runs threads, a large batch encodes without forking, and asking for workers
    starts them from a fork server (no fork of this process) with the same ids."""
    pytest.importorskip("torch")
    path = CORPUS / "multi_A_3M.txt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(THREADED), str(path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["threads"] > 1, result  # otherwise this test tests nothing
    assert result == {**result, "forks_serial": 0, "forks": 0, "same_call": True, "same": True,
                      "method": "forkserver"}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=60), st.integers(1, 40))
def test_chunks_keep_every_text_in_order(texts, count):
    chunks = _chunks(texts, count)
    assert [t for chunk in chunks for t in chunk] == texts and all(chunks)
