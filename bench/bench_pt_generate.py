"""PyTorch generate vs transformers' generate: gpt2-small shape, random weights, fp32, 2 threads.

Both run the same weights on the same prompts, greedy, measured alternately in one process; prints tokens/s of
each and the ratio. Also our opt-in int8 decoding (against transformers fp32) and its effect on the logits.

    python bench/bench_pt_generate.py [--rounds 3] [--new-tokens 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from gpt2_pt.modeling import GPT2LMHeadModel

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

    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.randint(0, 50257, (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(batch))
        same = torch.equal(our_run(ids), ref_run(ids))
        our_run(ids, "int8")  # builds the int8 weights once (cached on the model)
        times = {"ours": [], "transformers": [], "ours int8": []}
        for _ in range(args.rounds):
            for name, fn in (("ours", lambda: our_run(ids)), ("transformers", lambda: ref_run(ids)),
                             ("ours int8", lambda: our_run(ids, "int8"))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        rate = {k: batch * args.new_tokens / statistics.median(v) for k, v in times.items()}
        print(f"batch {batch}: ours {rate['ours']:.1f} tok/s | transformers {rate['transformers']:.1f} tok/s | "
              f"ratio {rate['ours'] / rate['transformers']:.2f}x | same tokens: {same}")
        print(f"batch {batch}: ours int8 {rate['ours int8']:.1f} tok/s | ratio vs transformers fp32 "
              f"{rate['ours int8'] / rate['transformers']:.2f}x")

    # int8's effect on the logits: the first next-token distribution over 8 random prompts
    from gpt2_pt.generation import _LeanDecoder

    ids = torch.randint(0, 50257, (8, args.prompt_tokens), generator=torch.Generator().manual_seed(99)).numpy()
    with torch.inference_mode():
        fp = _LeanDecoder(ours, 8, args.prompt_tokens + 1).prefill(ids, np.ones_like(ids))
        q = _LeanDecoder(ours, 8, args.prompt_tokens + 1, quantize="int8").prefill(ids, np.ones_like(ids))
    p, pq = torch.softmax(torch.from_numpy(fp), -1), torch.softmax(torch.from_numpy(q), -1)
    kl = (p * (p.log() - pq.log())).sum(-1)
    print(f"int8 logits: max |diff| {np.abs(fp - q).max():.4f} (logit std {fp.std():.3f}), "
          f"mean KL(fp32||int8) {kl.mean():.2e}, top-1 agreement {(fp.argmax(-1) == q.argmax(-1)).mean():.2f}")


if __name__ == "__main__":
    main()
