"""PyTorch forward vs transformers' forward: gpt2-small shape, random weights, fp32, 2 threads.

Both models hold the same weights; each round times one forward of each, alternately, in one process. Prints the
median time of each, the ratio ours / transformers (below 1: ours is faster), the median of the per-round ratios
(pairs run next to each other, so a load spike hits both) and the largest logit difference.

Each round also times the forward's weight products alone: the 49 matrix products of the same shapes, with the
model's own weights, in the model's order, and nothing else. Both forwards run exactly these products (the same
MKL kernels), so their time is shared; the rest of each forward is its own overhead, printed as "other".

    python bench/bench_pt_forward.py [--rounds 15] [--threads 2] [--shapes 1x128,8x128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from pt_products import weight_products  # bench/


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default="1x128,8x128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    import gpt2_pt

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    ours = gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config()).eval()
    ours.load_state_dict(reference.state_dict())
    print(f"gpt2-small random weights, fp32, {torch.get_num_threads()} threads, transformers "
          f"{transformers.__version__} ({reference.config._attn_implementation}), torch {torch.__version__}")

    for shape in args.shapes.split(","):
        batch, length = (int(n) for n in shape.split("x"))
        ids = torch.randint(0, 50257, (batch, length), generator=torch.Generator().manual_seed(batch))
        runs = {"ours": lambda: ours(ids).logits, "transformers": lambda: reference(ids).logits,
                "products": weight_products(ours, batch * length)}
        times = {name: [] for name in runs}
        with torch.inference_mode():
            diff = (runs["ours"]() - runs["transformers"]()).abs().max().item()  # also the warm-up
            runs["products"]()
            for _ in range(args.rounds):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
        ours_ms, ref_ms, products_ms = (1e3 * statistics.median(times[n]) for n in runs)
        paired = statistics.median(o / r for o, r in zip(times["ours"], times["transformers"]))
        print(f"forward {shape:>6}: ours {ours_ms:8.1f} ms   transformers {ref_ms:8.1f} ms   "
              f"ratio {ours_ms / ref_ms:.3f} (per-round median {paired:.3f})   max |logit diff| {diff:.2e}")
        print(f"        products alone {products_ms:8.1f} ms ({products_ms / ref_ms:.3f}x transformers); other: "
              f"ours {ours_ms - products_ms:6.1f} ms, transformers {ref_ms - products_ms:6.1f} ms")


if __name__ == "__main__":
    main()
