"""safetensors in gpt2_core.checkpoint vs the safetensors library's numpy functions, on a gpt2-small-sized state:
time and peak memory of reading and of writing.

Every read or write runs in a fresh subprocess, ours and the library's alternately, on 148 tensors of gpt2-small's
shapes (124M parameters, ~500 MB in float32). Peak memory is the growth of peak RSS (VmHWM, reset once the input is
ready, minus the RSS then), in MB.

- read: `checkpoint.read_safetensors` (memory-mapped) vs `safetensors.numpy.load_file`, then a sum over every
  tensor, which touches every page.
- write: `checkpoint.write_safetensors` vs `safetensors.numpy.save_file`, from arrays in memory or memory-mapped
  from a file (what gpt2-convert does), kept as they are or cast to float16 / bfloat16 on the way (the library
  writes what it is given, so every tensor is cast first; ours casts one tensor at a time).

    python bench/bench_safetensors.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import numpy as np
from gpt2_core import checkpoint, dtypes

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS, so the peak below is the measured step's own
    return rss("VmRSS")

which, job, source, dtype, src, dst = sys.argv[1:7]
dtype = None if dtype == "none" else dtype
if job == "read":
    before = reset_peak()
    start = time.perf_counter()
    if which == "ours":
        state = checkpoint.read_safetensors(src)
    else:
        from safetensors.numpy import load_file
        state = load_file(src)
    read_s = time.perf_counter() - start
    peak_read = rss("VmHWM") - before
    total = sum(float(np.sum(v, dtype=np.float64)) for v in state.values())
    print(json.dumps({"time_s": read_s, "peak": peak_read, "peak_touched": rss("VmHWM") - before}))
    sys.exit()
if source == "file":
    state = checkpoint.read_safetensors(src)  # memory-mapped, nothing read yet
else:
    state = {k: np.array(v) for k, v in checkpoint.read_safetensors(src).items()}  # in memory
before = reset_peak()
start = time.perf_counter()
if which == "ours":
    checkpoint.write_safetensors(state, dst, dtype=dtype)
else:
    from safetensors.numpy import save_file
    if dtype is not None:
        state = {k: dtypes.cast(v, dtype, k) for k, v in state.items()}
        state = {k: (np.asarray(v).view(np.uint16) if dtypes.is_bfloat16(v) else v) for k, v in state.items()}
    save_file(state, dst, metadata={"format": "pt"})
print(json.dumps({"time_s": time.perf_counter() - start, "peak": rss("VmHWM") - before}))
"""


def gpt2_small_state(path):
    import numpy as np

    from gpt2_core import checkpoint, layouts
    from gpt2_core.config import GPT2Config

    rng = np.random.default_rng(0)
    shapes = layouts.expected_shapes(GPT2Config(), "base")
    checkpoint.write_safetensors({k: rng.standard_normal(s, dtype=np.float32) * 0.02 for k, s in shapes.items()},
                                 path)


def run(*args):
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import safetensors

    cases = [("read", "file", "none"), ("write", "memory", "none"), ("write", "file", "none"),
             ("write", "memory", "float16"), ("write", "memory", "bfloat16")]
    with tempfile.TemporaryDirectory() as directory:
        src = os.path.join(directory, "src.safetensors")
        gpt2_small_state(src)
        print(f"gpt2-small-shaped state: {os.path.getsize(src) / 1e6:.0f} MB in float32; safetensors "
              f"{safetensors.__version__}; one fresh process per read or write; medians of {args.rounds}")
        for job, source, dtype in cases:
            results = {"ours": [], "library": []}
            for _ in range(args.rounds):
                for which in results:
                    dst = os.path.join(directory, f"{which}.safetensors")
                    results[which].append(run(which, job, source, dtype, src, dst))
                if job == "write" and dtype == "none":
                    with open(os.path.join(directory, "ours.safetensors"), "rb") as a, \
                            open(os.path.join(directory, "library.safetensors"), "rb") as b:
                        assert a.read() == b.read(), "both writers should write the same bytes"

            def median(which, key):
                return statistics.median(r[key] for r in results[which])

            label = f"{job} {source:6s} cast={dtype:8s}" if job == "write" else "read (then touch every tensor)"
            ours_s, library_s = median("ours", "time_s"), median("library", "time_s")
            line = (f"{label:32s} time ours {ours_s:6.3f} s  library {library_s:6.3f} s  ratio {ours_s / library_s:5.2f}"
                    f" | peak RSS growth ours {median('ours', 'peak') / 1e6:5.0f} MB  library "
                    f"{median('library', 'peak') / 1e6:5.0f} MB")
            if job == "read":
                line += (f" | after touching ours {median('ours', 'peak_touched') / 1e6:5.0f} MB  library "
                         f"{median('library', 'peak_touched') / 1e6:5.0f} MB")
            print(line)


if __name__ == "__main__":
    main()
