"""PyTorch generate vs transformers' generate: gpt2-small shape, random weights, fp32, 2 threads.

Both run the same weights on the same prompts, greedy, measured alternately in one process (ours, transformers,
ours int8, per round). Prints tokens/s of each from the median wall time, the ratio, the median of the per-round
ratios (pairs run next to each other, so a load spike hits both) and the ratio of CPU times (process_time: what
the work cost, less sensitive to other processes than wall time). Then the batch-1 read ceiling (the weight
products alone, no model around them) and int8's effect on the logits.

    python bench/bench_pt_generate.py [--rounds 5] [--new-tokens 64] [--threads 2] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from pt_products import weight_products  # bench/


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from gpt2_pt.modeling import GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    with tempfile.TemporaryDirectory() as directory:
        reference.save_pretrained(directory)
        ours = GPT2LMHeadModel.from_pretrained(directory).eval()
    print(f"gpt2-small random weights, fp32, {torch.get_num_threads()} threads, prompt {args.prompt_tokens} "
          f"+ {args.new_tokens} new tokens, greedy; transformers {transformers.__version__}, torch {torch.__version__}")

    common = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    def ref_run(ids):
        with torch.no_grad():
            return reference.generate(ids, attention_mask=torch.ones_like(ids), **common)

    def our_run(ids, quantize=None):
        return ours.generate(ids, quantize=quantize, **common)

    reference_rate = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.randint(0, 50257, (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(batch))
        same = torch.equal(our_run(ids), ref_run(ids))  # also the warm-up
        our_run(ids, "int8")  # builds the int8 weights once (cached on the model)
        runs = {"ours": lambda: our_run(ids), "transformers": lambda: ref_run(ids),
                "ours int8": lambda: our_run(ids, "int8")}
        wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        rate = {k: batch * args.new_tokens / statistics.median(v) for k, v in wall.items()}
        reference_rate[batch] = rate["transformers"]
        for name in ("ours", "ours int8"):
            paired = statistics.median(r / o for o, r in zip(wall[name], wall["transformers"]))
            cpu_ratio = statistics.median(cpu["transformers"]) / statistics.median(cpu[name])
            print(f"batch {batch}: {name:9s} {rate[name]:7.1f} tok/s | transformers fp32 {rate['transformers']:7.1f} "
                  f"tok/s | ratio {rate[name] / rate['transformers']:.2f}x (paired rounds {paired:.2f}x, "
                  f"cpu time {cpu_ratio:.2f}x)" + (f" | same tokens: {same}" if name == "ours" else ""))

    _read_ceiling(ours, reference_rate.get(1))
    _int8_logits(ours, args.prompt_tokens)


def _read_ceiling(ours, reference_rate):
    """The batch-1 bound: per token, one product with each weight matrix of the model (what any fp32 decoder must
    read), and nothing else. Its tokens/s is the most a decoding step can reach on this machine."""
    from gpt2_pt.modeling import Conv1D

    weights = [m.weight for m in ours.modules() if isinstance(m, Conv1D)] + [ours.lm_head.weight]
    size = 4 * sum(w.numel() for w in weights)
    products = weight_products(ours, 1, bias=False)

    with torch.inference_mode():
        products()
        times = []
        for _ in range(15):
            start = time.perf_counter()
            products()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(f"batch-1 read ceiling: the {len(weights)} weight products alone take {seconds * 1e3:.1f} ms "
          f"({size / seconds / 1e9:.1f} GB/s) = {1 / seconds:.1f} tok/s at most"
          + (f", {1 / seconds / reference_rate:.2f}x transformers fp32" if reference_rate else ""))


def _int8_logits(ours, prompt_tokens):
    """int8's effect on the first next-token distribution over 8 random prompts."""
    from gpt2_pt.generation import _ModelRunner, int8_copy

    ids = torch.randint(0, 50257, (8, prompt_tokens), generator=torch.Generator().manual_seed(99))
    with torch.inference_mode():
        fp = _ModelRunner(ours, 8, prompt_tokens + 1).prefill(ids.numpy(), np.ones_like(ids.numpy()))
        q = _ModelRunner(int8_copy(ours), 8, prompt_tokens + 1).prefill(ids.numpy(), np.ones_like(ids.numpy()))
    p, pq = torch.softmax(torch.from_numpy(fp).double(), -1), torch.softmax(torch.from_numpy(q).double(), -1)
    kl = (p * (p.log() - pq.log())).sum(-1)
    print(f"int8 logits: max |diff| {np.abs(fp - q).max():.4f} (logit std {fp.std():.3f}), "
          f"mean KL(fp32||int8) {kl.mean():.2e}, top-1 agreement {(fp.argmax(-1) == q.argmax(-1)).mean():.2f} "
          "(random weights give near-flat distributions: the top two logits are often near-ties)")


if __name__ == "__main__":
    main()
