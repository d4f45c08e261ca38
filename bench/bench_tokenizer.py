"""GPT2Tokenizer vs tiktoken and transformers' fast tokenizer, single thread.

Each round times ours and the reference alternately in one process; the median of each and the ratio
(reference time / our time: above 1, ours is faster) are printed. Rows:
  warm      ours with filled caches vs tiktoken `encode_ordinary`, one call on the whole corpus
  cold      a fresh process each (empty caches; tiktoken's Encoding also built fresh), encode time only
  hf-fast   transformers' GPT2TokenizerFast (built from our saved files), one `tok(text)` call on 1 MB
  load      import + from_pretrained("gpt2") in a fresh process, vs tiktoken's Encoding from the rank file
  batch     `encode_batch` of the corpus lines: every core (process pool) vs our single-thread loop

    python bench/bench_tokenizer.py [--rounds 5] [--only warm,cold,...] [--unicode]

`--unicode` counts the code points where `regex` (our pattern engine) and tiktoken disagree: all are code points
unassigned in Unicode 14, i.e. newer characters the two libraries' Unicode tables classify differently.
"""

from __future__ import annotations

import os

# one thread for the Rust libraries, set before they are imported
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPORA = {"English": SHARED / "corpus" / "man_en.txt", "multilingual": SHARED / "corpus" / "multi_A_3M.txt"}
RANKS = SHARED / "vocab" / "gpt2.tiktoken"


def reference_encoding():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from gpt2_core.bpe import GPT2_PATTERN

    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(RANKS)),
                             special_tokens={"<|endoftext|>": 50256})


def alternate(ours, theirs, rounds):
    """Median seconds of each callable, timed alternately (ours first in even rounds)."""
    times = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            fn = (ours, theirs)[which]
            start = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def row(label, ours, theirs, reference, size_mb=None):
    speed = f"  ({size_mb / ours:5.1f} vs {size_mb / theirs:5.1f} MB/s)" if size_mb else ""
    print(f"{label:<28} ours {ours * 1e3:8.1f} ms   {reference} {theirs * 1e3:8.1f} ms   "
          f"ratio {theirs / ours:5.2f}x{speed}", flush=True)


def run_python(code: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


COLD_OURS = """
    import json, time
    from gpt2_core import GPT2Tokenizer
    text = open({path!r}, encoding="utf-8").read()
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    start = time.perf_counter(); tok.encode(text); print(json.dumps(time.perf_counter() - start))
"""
COLD_TIKTOKEN = """
    import json, sys, time
    sys.path.insert(0, {bench!r})
    from bench_tokenizer import reference_encoding
    text = open({path!r}, encoding="utf-8").read()
    enc = reference_encoding()
    start = time.perf_counter(); enc.encode_ordinary(text); print(json.dumps(time.perf_counter() - start))
"""
LOAD_OURS = """
    import json, time
    start = time.perf_counter()
    from gpt2_core import GPT2Tokenizer
    middle = time.perf_counter()
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    end = time.perf_counter()
    print(json.dumps([end - start, end - middle]))
"""
LOAD_TIKTOKEN = """
    import json, sys, time
    start = time.perf_counter()
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    sys.path.insert(0, {bench!r})
    from bench_tokenizer import reference_encoding
    enc = reference_encoding()
    print(json.dumps(time.perf_counter() - start))
"""


def bench_warm(rounds):
    from gpt2_core import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained("gpt2")
    enc = reference_encoding()
    for name, path in CORPORA.items():
        text = path.read_text(encoding="utf-8")
        assert tok.encode(text) == enc.encode_ordinary(text)  # also fills our caches
        ours, theirs = alternate(lambda: tok.encode(text), lambda: enc.encode_ordinary(text), rounds)
        row(f"warm {name}", ours, theirs, "tiktoken", len(text.encode()) / 1e6)


def bench_cold(rounds):
    bench_dir = str(Path(__file__).parent)
    for name, path in CORPORA.items():
        ours, theirs = [], []  # encode seconds measured inside each fresh process
        alternate(lambda: ours.append(run_python(COLD_OURS.format(path=str(path)))),
                  lambda: theirs.append(run_python(COLD_TIKTOKEN.format(path=str(path), bench=bench_dir))), rounds)
        size = path.stat().st_size / 1e6
        row(f"cold {name} (encode only)", statistics.median(ours), statistics.median(theirs), "tiktoken", size)


def bench_transformers(rounds):
    import transformers

    from gpt2_core import GPT2Tokenizer

    transformers.logging.set_verbosity_error()
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    with tempfile.TemporaryDirectory() as directory:
        tok.save_pretrained(directory)
        hf = transformers.AutoTokenizer.from_pretrained(directory)
    for name, path in CORPORA.items():
        text = path.read_text(encoding="utf-8")[:1_000_000]
        assert tok(text)["input_ids"] == hf(text)["input_ids"]
        ours, theirs = alternate(lambda: tok(text), lambda: hf(text), max(3, rounds // 2))
        row(f"hf-fast {name} 1M chars", ours, theirs, "hf-fast", len(text.encode()) / 1e6)


def bench_load(rounds):
    bench_dir = str(Path(__file__).parent)
    ours_runs, theirs_runs = [], []
    alternate(lambda: ours_runs.append(run_python(LOAD_OURS)),
              lambda: theirs_runs.append(run_python(LOAD_TIKTOKEN.format(bench=bench_dir))), rounds)
    total = statistics.median(r[0] for r in ours_runs)
    load = statistics.median(r[1] for r in ours_runs)
    row("load (import+from_pretrained)", total, statistics.median(theirs_runs), "tiktoken")
    print(f"{'from_pretrained alone':<28} ours {load * 1e3:8.1f} ms (requirement < 150 ms incl. import)")


def bench_batch(rounds):
    from gpt2_core import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained("gpt2")
    lines = CORPORA["multilingual"].read_text(encoding="utf-8").split("\n")
    serial = [tok.encode(line) for line in lines]
    assert tok.encode_batch(lines) == serial
    ours, theirs = alternate(lambda: tok.encode_batch(lines), lambda: [tok.encode(x) for x in lines], rounds)
    tok.close()
    row(f"batch {len(lines)} lines, {os.cpu_count()} cores", ours, theirs, "1 thread")


def count_unicode_divergence():
    """Code points where our ids differ from tiktoken's in the contexts of the Unicode test."""
    import unicodedata

    from gpt2_core.bpe import ByteLevelBPE

    bpe, enc = ByteLevelBPE.builtin(), reference_encoding()
    differ = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        text = "a{0}'s {0}{0}x {0}1 1{0}".format(chr(cp))
        if bpe.encode(text) != enc.encode_ordinary(text):
            differ.append(cp)
    assigned = [cp for cp in differ if unicodedata.category(chr(cp)) != "Cn"]
    import regex

    print(f"{len(differ)} code points differ from tiktoken {__import__('tiktoken').__version__} "
          f"(regex {regex.__version__}); assigned in Unicode {unicodedata.unidata_version}: {len(assigned)}")
    ranges, start = [], None
    for a, b in zip(differ, differ[1:] + [None]):
        start = a if start is None else start
        if b != a + 1:
            ranges.append(f"U+{start:04X}-U+{a:04X}" if a != start else f"U+{a:04X}")
            start = None
    print("ranges:", ", ".join(ranges))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="warm,cold,hf,load,batch")
    parser.add_argument("--unicode", action="store_true", help="count code points where we differ from tiktoken")
    args = parser.parse_args()
    if args.unicode:
        count_unicode_divergence()
        return
    import logging

    import tiktoken
    import transformers

    logging.getLogger("gpt2_core.tokenizer").setLevel(logging.ERROR)  # "longer than model_max_length" notes
    print(f"single thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false); tiktoken {tiktoken.__version__}, "
          f"transformers {transformers.__version__}; median of {args.rounds} alternating rounds; "
          "ratio = reference time / ours")
    steps = {"warm": bench_warm, "cold": bench_cold, "hf": bench_transformers, "load": bench_load,
             "batch": bench_batch}
    for name in args.only.split(","):
        steps[name](args.rounds)


if __name__ == "__main__":
    main()
