"""TensorFlow generate vs transformers-TF 4.57's XLA generate: gpt2-small shape, random weights, fp32, `--threads`
(default 1; TensorFlow's own default is one per core, 2 here, and `make bench` runs both).

Both load the same tf_model.h5 (written by our save_pretrained in a temporary directory) and decode the same
prompt greedily (16 tokens + 64 new, batch 1); each side's generate is timed alternately, round by round, never at
the same time. Prints tok/s of each, the ratio, whether the tokens agree, and each side's first-call time (trace
and compile). Our decoder also runs without XLA ("graph": tf.function) and eagerly, for the record.

Two ceilings, timed in the same rounds: batch-1 decoding reads every weight once per token, so (1) numpy reading
all weight arrays (`max` on `--threads` threads, a SIMD pass at about the speed of a hand-written AVX-512 read loop)
and (2) the model's 49 GEMVs alone under XLA (x @ W + b over the same weight variables, chained, nothing else: no
attention, LayerNorm, cache or loop) bound what an fp32 decoder reaches on this machine at that moment.
`--clock cpu` times process CPU seconds instead of wall seconds (both sides), which a busy shared machine disturbs
less.
transformers 4.57 is the last release with TF models and needs tf-keras, so it runs in its own venv (/tmp/tf457,
see bench/tf_reference.py) as a worker subprocess.

    python bench/bench_tf_generate.py [--rounds 3] [--new-tokens 64] [--prompt-tokens 16] [--threads 1]
                                      [--modes xla,graph,eager] [--ref-modes xla[,eager]] [--batch 1]
                                      [--clock wall|cpu]

The reference venv: see bench/tf_reference.py (SETUP).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tf_reference import CLOCKS, REFERENCE_PYTHON, absent_message, set_threads  # noqa: E402  (bench/)

MODES = ("xla", "graph", "eager")


def prompt(args):
    import numpy as np

    return np.random.default_rng(0).integers(0, 50257, size=(args.batch, args.prompt_tokens)).astype("int32")


def generate_kwargs(args):
    # min_new_tokens: every run makes exactly new_tokens tokens, whatever the random weights predict
    return dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)


def timed(run, clock="wall"):
    now = CLOCKS[clock]
    start = now()
    out = run()
    return now() - start, out


def worker(args):
    """transformers-TF 4.57 under /tmp/tf457's python: reads mode lines ("xla" or "eager"), answers the seconds of
    one generate call, the first call's seconds for that mode, and the tokens."""
    set_threads(args.threads)
    import tensorflow as tf
    from transformers import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained(args.worker_weights, use_safetensors=False)
    ids = tf.constant(prompt(args))
    kwargs = dict(generate_kwargs(args), attention_mask=tf.ones_like(ids))
    runners, first = {}, {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        mode, clock = line.split()
        if mode not in runners:
            generate = tf.function(model.generate, jit_compile=True) if mode == "xla" else model.generate
            runners[mode] = lambda generate=generate: generate(ids, **kwargs).numpy()
            first[mode], _ = timed(runners[mode], clock)
        seconds, out = timed(runners[mode], clock)
        print(json.dumps({"seconds": seconds, "first": first[mode], "tokens": out.tolist()}), flush=True)


class Worker:
    def __init__(self, weights, args):
        self.process = subprocess.Popen(
            [REFERENCE_PYTHON, os.path.abspath(__file__), "--worker-weights", weights, "--threads", str(args.threads),
             "--new-tokens", str(args.new_tokens), "--prompt-tokens", str(args.prompt_tokens),
             "--batch", str(args.batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": ""})
        json.loads(self.process.stdout.readline())  # loaded

    def run(self, mode, clock):
        self.process.stdin.write(f"{mode} {clock}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def xla_gemv_chain(model, batch):
    """A no-argument callable: one token's GEMVs of `model` (every Conv1D weight, then the LM head) under XLA, chained
    as the decoder chains them, with nothing else. With their bias adds, fused or not as the model's Conv1D does it:
    on one thread XLA's fused GEMV + bias kernel streams a (K, N) weight whole, ~15% faster than Eigen's bare x @ W;
    on more threads Eigen's product is the faster, because XLA's fused kernel runs on one thread."""
    import tensorflow as tf

    from gpt2_tf.modeling import _unfused_under_threaded_xla

    blocks, wte = model.transformer.h, model.transformer.wte.weight
    n_embd = wte.shape[1]

    @tf.function(jit_compile=True)
    def chain(x):  # x: (batch, n_embd)
        def conv1d(x, layer):
            return tf.nn.bias_add(_unfused_under_threaded_xla(tf.matmul(x, layer.weight)), layer.bias)

        for block in blocks:
            qkv = conv1d(x, block.attn.c_attn)
            x = x + conv1d(qkv[:, :n_embd] * qkv[:, n_embd:2 * n_embd] + qkv[:, 2 * n_embd:], block.attn.c_proj)
            x = x + conv1d(tf.nn.relu(conv1d(x, block.mlp.c_fc)), block.mlp.c_proj)
        return tf.argmax(tf.matmul(x, wte, transpose_b=True), axis=-1)

    x = tf.fill((batch, n_embd), 0.01)
    chain(x)  # compile
    return lambda: chain(x).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help="our execution modes to time")
    parser.add_argument("--ref-modes", default="xla", help="transformers-TF modes to time: xla, eager")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--worker-weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_weights:
        return worker(args)

    set_threads(args.threads)
    import keras
    import numpy as np
    import tensorflow as tf

    from gpt2_core import GPT2Config
    from gpt2_tf import TFGPT2LMHeadModel

    modes = [m for m in args.modes.split(",") if m]
    ref_modes = [m for m in args.ref_modes.split(",") if m]
    with tempfile.TemporaryDirectory() as weights:
        keras.utils.set_random_seed(0)
        TFGPT2LMHeadModel(GPT2Config()).save_pretrained(weights)
        model = TFGPT2LMHeadModel.from_pretrained(weights)
        ids = tf.constant(prompt(args))
        reference = None
        if os.path.exists(REFERENCE_PYTHON):
            reference = Worker(weights, args)
        else:
            print(absent_message())
            ref_modes = []

        def ours(mode):
            return lambda: model.generate(ids, execution=mode, **generate_kwargs(args)).numpy()

        # The ceilings: batch-1 decoding reads every weight once per token, so reading the weight arrays (numpy,
        # on as many threads as TF has, each a share of the arrays, no other arithmetic) bounds what any fp32
        # decoder reaches on this machine right now, and the same GEMVs alone under XLA bound any decoder that XLA
        # compiles.
        arrays = [w.numpy() for w in model.weights]
        shares = [arrays[i::args.threads] for i in range(args.threads)]
        readers = concurrent.futures.ThreadPoolExecutor(args.threads)  # numpy's max releases the GIL

        def read_weights():
            return max(readers.map(lambda share: max(float(a.max()) for a in share), shares))

        gemvs = xla_gemv_chain(model, args.batch)
        ceilings = {"weights read (numpy)": read_weights, "GEMVs alone (XLA)": gemvs}
        ceiling_times = {name: [] for name in ceilings}
        first, times, tokens = {}, {}, {}
        for mode in modes:
            first[mode], tokens[mode] = timed(ours(mode), args.clock)  # trace / compile outside the timing
            times[mode] = []
        ref_first, ref_times, ref_tokens = {}, {m: [] for m in ref_modes}, {}
        for _ in range(args.rounds):
            for name, run in ceilings.items():
                ceiling_times[name].append(min(timed(run, args.clock)[0] for _ in range(3)))
            for mode in modes:
                times[mode].append(timed(ours(mode), args.clock)[0])
            for mode in ref_modes:
                answer = reference.run(mode, args.clock)
                ref_times[mode].append(answer["seconds"])
                ref_first[mode], ref_tokens[mode] = answer["first"], np.array(answer["tokens"])
        if reference is not None:
            reference.close()

    new = args.batch * args.new_tokens
    rate = {m: new / statistics.median(t) for m, t in times.items()}
    ref_rate = {m: new / statistics.median(t) for m, t in ref_times.items()}
    print(f"gpt2-small random weights, fp32, {args.threads} thread(s), batch {args.batch}, prompt "
          f"{args.prompt_tokens} + {args.new_tokens} new tokens, greedy; median of {args.rounds} rounds, "
          f"{args.clock} clock; tensorflow {tf.__version__}")
    # the first call traces and compiles, then decodes: what it took beyond a timed call is the compile time
    print(f"{'':22s} {'tok/s':>7s} {'first call (s)':>15s} {'compile (s)':>12s}")
    for mode in modes:
        print(f"{'gpt2_tf ' + mode:22s} {rate[mode]:7.1f} {first[mode]:15.1f} "
              f"{first[mode] - statistics.median(times[mode]):12.1f}")
    for mode in ref_modes:
        print(f"{'transformers-TF ' + mode:22s} {ref_rate[mode]:7.1f} {ref_first[mode]:15.1f} "
              f"{ref_first[mode] - statistics.median(ref_times[mode]):12.1f}")
    nbytes = sum(a.nbytes for a in arrays)
    ceiling_rate = {}
    for name, seconds in ceiling_times.items():
        seconds = statistics.median(seconds)
        ceiling_rate[name] = args.batch / seconds
        print(f"{'ceiling: ' + name:31s} {ceiling_rate[name]:7.1f}  ({nbytes / 1e6:.0f} MB of weights per token "
              f"at {nbytes / seconds / 1e9:.1f} GB/s)")
    read = ceiling_rate["weights read (numpy)"]
    for name, rate_of in [*((f"gpt2_tf {m}", rate[m]) for m in modes),
                          *((f"transformers-TF {m}", ref_rate[m]) for m in ref_modes)]:
        print(f"{name} reaches {rate_of / read:.0%} of the weights-read ceiling")
    for mode in modes:
        for ref_mode in ref_modes:
            same = np.array_equal(tokens[mode], ref_tokens[ref_mode])
            per_round = [r / o for o, r in zip(times[mode], ref_times[ref_mode])]  # timed side by side
            print(f"ratio gpt2_tf {mode} / transformers-TF {ref_mode}: {rate[mode] / ref_rate[ref_mode]:.2f}x "
                  f"(per round: {', '.join(f'{r:.2f}' for r in per_round)}; same tokens: {same})")


if __name__ == "__main__":
    main()
