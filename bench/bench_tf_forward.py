"""Forward pass of the gpt2-small shape, batch 1 x 128 tokens, fp32, one thread: gpt2_tf vs transformers-TF 4.57.

Both run the same random weights (a tf_model.h5 that our save_pretrained writes in /tmp, loaded by each side), in
three modes: tf.function, tf.function(jit_compile=True) (XLA) and eager. transformers 4.57 is the last release
with TF models and needs tf-keras, so it runs in its own venv (/tmp/tf457, see bench/tf_reference.py) as a worker
subprocess; gpt2_pt (PyTorch, same file, same thread count) runs in another, for the distance between our two backends.
All are timed alternately, round by round, never at the same time.

    python bench/bench_tf_forward.py [--rounds 5] [--iters 5] [--threads 1] [--seq 128] [--modes function,xla,eager]
                                     [--clock wall|cpu]

The reference venv: see bench/tf_reference.py (SETUP).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tf_reference import CLOCKS, REFERENCE_PYTHON, absent_message, set_threads  # noqa: E402  (bench/)

WEIGHTS_DIR = "/tmp/gpt2_tf_bench_weights"
MODES = ("function", "xla", "eager")


def make_runner(model, mode, input_ids):
    """A no-argument callable running one forward and returning the logits as numpy (forces the computation)."""
    import tensorflow as tf

    def forward(ids):
        return model(ids, training=False).logits

    if mode == "function":
        forward = tf.function(forward)
    elif mode == "xla":
        forward = tf.function(forward, jit_compile=True)
    return lambda: forward(input_ids).numpy()


def time_runner(run, iters, clock="wall"):
    """Median seconds of one call. clock="cpu" counts the process's CPU time, which a busy shared machine
    disturbs less than wall time (with one TF thread the two agree on a quiet machine)."""
    now = CLOCKS[clock]
    times = []
    for _ in range(iters):
        start = now()
        run()
        times.append(now() - start)
    return statistics.median(times)


def input_ids_for(seq):
    import numpy as np

    return np.random.default_rng(0).integers(0, 50257, size=(1, seq)).astype("int32")


def ensure_weights():
    """gpt2-small shaped random weights, written once by our save_pretrained (transformers-TF's h5 layout)."""
    if os.path.isfile(os.path.join(WEIGHTS_DIR, "tf_model.h5")):
        return
    from gpt2_core import GPT2Config
    from gpt2_tf import TFGPT2LMHeadModel

    TFGPT2LMHeadModel(GPT2Config()).save_pretrained(WEIGHTS_DIR)


def worker(args):
    """A timed side in its own process: `ref` runs transformers-TF 4.57 under /tmp/tf457's python, `pt` runs
    gpt2_pt (one torch thread). Reads 'MODE ITERS CLOCK' lines, answers the median seconds of one forward."""
    if args.worker == "pt":
        import torch

        import gpt2_pt

        torch.set_num_threads(args.threads)
        model = gpt2_pt.GPT2LMHeadModel.from_pretrained(WEIGHTS_DIR)  # reads the same tf_model.h5
        ids = torch.from_numpy(input_ids_for(args.seq)).long()

        def run():
            with torch.inference_mode():
                return model(ids).logits.numpy()

        runners = {}
    else:
        set_threads(args.threads)
        import tensorflow as tf
        from transformers import TFGPT2LMHeadModel

        model = TFGPT2LMHeadModel.from_pretrained(WEIGHTS_DIR, use_safetensors=False)
        ids = tf.constant(input_ids_for(args.seq))
        runners = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        mode, iters, clock = line.split()
        if runners is None or mode not in (runners or {}):
            if args.worker == "pt":
                runners = {mode: run}
            else:
                runners = runners or {}
                runners[mode] = make_runner(model, mode, ids)
            runners[mode]()  # trace / compile / warm up outside the timing
            runners[mode]()
        seconds = time_runner(runners[mode], int(iters), clock)
        logits = runners[mode]()
        print(json.dumps({"seconds": seconds, "logit0": float(logits[0, -1, 0])}), flush=True)


class Worker:
    def __init__(self, python, kind, args):
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker", kind, "--threads", str(args.threads), "--seq",
             str(args.seq)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": ""} if kind == "ref" else None)
        json.loads(self.process.stdout.readline())  # loaded
        self.args = args

    def time(self, mode):
        self.process.stdin.write(f"{mode} {self.args.iters} {self.args.clock}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--no-pt", dest="with_pt", action="store_false",
                        help="skip the gpt2_pt (PyTorch) row")
    parser.add_argument("--worker", choices=("ref", "pt"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    set_threads(args.threads)
    import tensorflow as tf
    from gpt2_tf import TFGPT2LMHeadModel

    modes = [m for m in args.modes.split(",") if m]
    ensure_weights()
    model = TFGPT2LMHeadModel.from_pretrained(WEIGHTS_DIR)
    ids = tf.constant(input_ids_for(args.seq))
    ours = {m: make_runner(model, m, ids) for m in modes}
    for run in ours.values():
        run()  # trace / compile outside the timing

    reference = None
    if os.path.exists(REFERENCE_PYTHON):
        reference = Worker(REFERENCE_PYTHON, "ref", args)
    else:
        print(absent_message())
    pt = Worker(sys.executable, "pt", args) if args.with_pt else None

    ours_logit = float(ours[modes[0]]()[0, -1, 0])
    results = {m: {"ours": [], "ref": []} for m in modes}
    pt_times = []
    for _ in range(args.rounds):
        for mode in modes:
            results[mode]["ours"].append(time_runner(ours[mode], args.iters, args.clock))
            if reference is not None:
                answer = reference.time(mode)
                results[mode]["ref"].append(answer["seconds"])
                if abs(answer["logit0"] - ours_logit) > 1e-3 * max(1.0, abs(ours_logit)):
                    raise SystemExit(f"the reference computes other logits ({answer['logit0']} vs {ours_logit}):"
                                     " not the same weights?")
        if pt is not None:
            pt_times.append(pt.time("eager")["seconds"])
    for worker_ in (reference, pt):
        if worker_ is not None:
            worker_.close()

    print(f"gpt2-small forward, 1x{args.seq}, fp32, {args.threads} thread(s); median of {args.rounds} rounds x "
          f"{args.iters} iters, {args.clock} clock (ms)")
    print(f"{'mode':10s} {'gpt2_tf':>9s} {'tf-4.57':>9s} {'ratio':>7s}")
    for mode in modes:
        ours_ms = 1000 * statistics.median(results[mode]["ours"])
        if results[mode]["ref"]:
            ref_ms = 1000 * statistics.median(results[mode]["ref"])
            print(f"{mode:10s} {ours_ms:9.1f} {ref_ms:9.1f} {ours_ms / ref_ms:7.2f}x")
        else:
            print(f"{mode:10s} {ours_ms:9.1f} {'-':>9s} {'-':>7s}")
    if pt_times:
        pt_ms = 1000 * statistics.median(pt_times)
        ours_ms = 1000 * statistics.median(results[modes[0]]["ours"])
        print(f"gpt2_pt (torch, same weights, {args.threads} thread(s)): {pt_ms:.1f} ms; gpt2_tf {modes[0]} / gpt2_pt"
              f" = {ours_ms / pt_ms:.2f}x")


if __name__ == "__main__":
    main()
