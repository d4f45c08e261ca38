"""GPT2Tokenizer vs tiktoken and transformers' fast tokenizer, single thread.

Each round times ours and the reference alternately in one process; the median of each and the ratio
(reference time / our time: above 1, ours is faster) are printed, for wall-clock time and for CPU time
(time.process_time: steadier on a machine shared with other jobs). Rows:
  warm      ours with filled caches vs tiktoken `encode_ordinary`, one call on the whole corpus
  cold      a fresh process each (empty caches; tiktoken's Encoding also built fresh), encode time only
  hf-fast   transformers' GPT2TokenizerFast (built from our saved files), one `tok(text)` call on 1 MB
  load      import + from_pretrained("gpt2") in a fresh process, vs tiktoken's Encoding from the rank file
  batch     `encode_batch(lines, num_workers=cores - 1)` (worker processes) vs `encode_batch(lines)` (serial)

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

    from gpt2_core.pretokenize import GPT2_PATTERN

    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(RANKS)),
                             special_tokens={"<|endoftext|>": 50256})


class Timing:
    """Median wall-clock and CPU seconds of several runs."""

    def __init__(self, runs):
        self.wall = statistics.median(w for w, _ in runs)
        self.cpu = statistics.median(c for _, c in runs)


def timed(fn):
    """(wall, cpu) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(ours, theirs, rounds):
    """Timings of each callable, run alternately (ours first in even rounds)."""
    runs = ([], [])
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            runs[which].append(timed((ours, theirs)[which]))
    return Timing(runs[0]), Timing(runs[1])


def row(label, ours, theirs, reference, size_mb=None):
    speed = f"  ({size_mb / ours.wall:5.1f} vs {size_mb / theirs.wall:5.1f} MB/s)" if size_mb else ""
    print(f"{label:<31} ours {ours.wall * 1e3:7.1f} ms  {reference} {theirs.wall * 1e3:7.1f} ms  "
          f"ratio {theirs.wall / ours.wall:5.2f}x  cpu ratio {theirs.cpu / ours.cpu:5.2f}x{speed}", flush=True)


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
    wall, cpu = time.perf_counter(), time.process_time()
    tok.encode(text)
    print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""
COLD_TIKTOKEN = """
    import json, sys, time
    sys.path.insert(0, {bench!r})
    from bench_tokenizer import reference_encoding
    text = open({path!r}, encoding="utf-8").read()
    enc = reference_encoding()
    wall, cpu = time.perf_counter(), time.process_time()
    enc.encode_ordinary(text)
    print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""
LOAD_OURS = """
    import json, time
    start, cpu = time.perf_counter(), time.process_time()
    from gpt2_core import GPT2Tokenizer
    middle = time.perf_counter()
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    end = time.perf_counter()
    print(json.dumps([end - start, time.process_time() - cpu, end - middle]))
"""
LOAD_TIKTOKEN = """
    import json, sys, time
    start, cpu = time.perf_counter(), time.process_time()
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    sys.path.insert(0, {bench!r})
    from bench_tokenizer import reference_encoding
    enc = reference_encoding()
    print(json.dumps([time.perf_counter() - start, time.process_time() - cpu]))
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
        ours, theirs = [], []  # encode (wall, cpu) seconds measured inside each fresh process
        alternate(lambda: ours.append(run_python(COLD_OURS.format(path=str(path)))),
                  lambda: theirs.append(run_python(COLD_TIKTOKEN.format(path=str(path), bench=bench_dir))), rounds)
        size = path.stat().st_size / 1e6
        row(f"cold {name} (encode)", Timing(ours), Timing(theirs), "tiktoken", size)


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
    load = statistics.median(r[2] for r in ours_runs)
    row("load (import+from_pretrained)", Timing([r[:2] for r in ours_runs]), Timing(theirs_runs), "tiktoken")
    print(f"{'from_pretrained alone':<31} ours {load * 1e3:7.1f} ms (requirement < 150 ms incl. import)")


def bench_batch(rounds):
    from gpt2_core import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained("gpt2")
    workers = max(1, (os.cpu_count() or 1) - 1)  # this process encodes too
    lines = CORPORA["multilingual"].read_text(encoding="utf-8").split("\n")
    serial = tok.encode_batch(lines)  # also warms the shared caches, which forked workers inherit
    assert tok.encode_batch(lines, num_workers=workers) == serial
    ours, theirs = alternate(lambda: tok.encode_batch(lines, num_workers=workers), lambda: tok.encode_batch(lines),
                             rounds)
    method = tok._workers.start_method
    tok.close()
    # CPU time counts this process only, not the workers: the wall-clock ratio is the speedup
    print(f"{f'batch {len(lines)} lines, {workers} workers':<31} ours {ours.wall * 1e3:7.1f} ms  "
          f"serial {theirs.wall * 1e3:7.1f} ms  speedup {theirs.wall / ours.wall:5.2f}x  "
          f"(this process's CPU: {ours.cpu * 1e3:.0f} ms vs {theirs.cpu * 1e3:.0f} ms; load average "
          f"{os.getloadavg()[0]:.1f}; workers started by {method})", flush=True)


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
