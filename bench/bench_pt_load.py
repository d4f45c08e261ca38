"""PyTorch from_pretrained vs transformers' from_pretrained: time and peak memory, gpt2-small random weights.

One model.safetensors (fp32, ~500 MB) is written by transformers once; then each round loads it in a fresh
subprocess with ours and with transformers, alternately. Each child reports the load time, and the growth of its
peak RSS (VmHWM minus the RSS before loading) after the load and after one forward pass, which touches every
weight (a memory-mapped load costs memory only as pages are read). Prints medians and the ratios.

    python bench/bench_pt_load.py [--rounds 5] [--threads 2]
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
import torch
torch.set_num_threads(int(sys.argv[3]))

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

if sys.argv[1] == "ours":
    from gpt2_pt import GPT2LMHeadModel
else:
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import GPT2LMHeadModel
before = rss("VmRSS")
start = time.perf_counter()
model = GPT2LMHeadModel.from_pretrained(sys.argv[2])
load_s = time.perf_counter() - start
peak_load = rss("VmHWM") - before
with torch.inference_mode():
    model(torch.tensor([[464, 2068]]))
print(json.dumps({"load_s": load_s, "peak_load": peak_load, "peak_forward": rss("VmHWM") - before}))
"""


def run(which, directory, threads):
    out = subprocess.run([sys.executable, "-c", CHILD, which, directory, str(threads)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(directory)
        size = os.path.getsize(os.path.join(directory, "model.safetensors"))
        print(f"gpt2-small model.safetensors {size / 1e6:.0f} MB (fp32), {args.threads} threads, transformers "
              f"{transformers.__version__}, torch {torch.__version__}; one fresh process per load")
        results = {"ours": [], "transformers": []}
        run("ours", directory, args.threads)  # warm the page cache for both
        for _ in range(args.rounds):
            for which in results:
                results[which].append(run(which, directory, args.threads))

    def median(which, key):
        return statistics.median(r[key] for r in results[which])

    for key, label in (("load_s", "load time"), ("peak_load", "peak RSS growth, load"),
                       ("peak_forward", "peak RSS growth, load + forward")):
        ours, ref = median("ours", key), median("transformers", key)
        if key == "load_s":
            print(f"{label:32s}: ours {ours:7.3f} s     transformers {ref:7.3f} s     ratio {ours / ref:.3f}")
        else:
            print(f"{label:32s}: ours {ours / size:7.3f} x file  transformers {ref / size:7.3f} x file  "
                  f"ratio {ours / ref:.3f}")


if __name__ == "__main__":
    main()
