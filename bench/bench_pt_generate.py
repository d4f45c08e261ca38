"""PyTorch generate vs transformers' generate vs llama.cpp: gpt2-small shape, random weights, fp32, 2 threads.

All run the same weights on the same prompts, greedy, measured alternately in one run (ours, transformers, ours
int8, then llama.cpp f32 and q8_0 on the same checkpoint converted to GGUF, per round). Prints the CPU model and
flags, the product kernels calibrated for this host (gpt2_pt.kernels, calibrated afresh for the run), tokens/s of
each from the median wall time, the ratio, the median of the per-round ratios (pairs run next to each other, so a
load spike hits both) and the ratio of CPU times (process_time: what the work cost, less sensitive to other
processes than wall time); then the ratios to llama.cpp the targets are set in, our peak RSS decoding alone, the
batch-1 read ceiling (the weight products alone, no model around them) and int8's effect on the logits.
llama.cpp's column needs its build (bench/llama_cpp.py build); without it the script says so and goes on.

    python bench/bench_pt_generate.py [--rounds 5] [--new-tokens 64] [--threads 2] [--batches 1,8] [--no-llama]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import llama_cpp  # bench/
import numpy as np
import torch
from pt_products import decoding_products, weight_products  # bench/


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--no-llama", action="store_true", help="skip llama.cpp's column")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]

    import transformers

    from gpt2_pt import kernels
    from gpt2_pt.modeling import GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    checkpoint = tempfile.TemporaryDirectory()
    reference.save_pretrained(checkpoint.name)
    ours = GPT2LMHeadModel.from_pretrained(checkpoint.name).eval()
    print(f"CPU: {kernels.cpu_description()}")
    print(f"gpt2-small random weights, fp32, {torch.get_num_threads()} threads, prompt {args.prompt_tokens} "
          f"+ {args.new_tokens} new tokens, greedy; transformers {transformers.__version__}, torch {torch.__version__}")
    os.environ["GPT2_KERNEL_CACHE"] = os.path.join(checkpoint.name, "kernels.json")  # calibrated for this run
    for batch in batches:
        start = time.perf_counter()
        plan = kernels.plan_for(ours, batch)
        timings = json.loads(kernels.cache_path().read_text())[kernels.cache_key(ours, batch)]["ms"]
        print(f"kernels for {batch} row(s): {plan.name}, calibrated in {time.perf_counter() - start:.2f} s "
              f"(ms per pass: {', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")
    llama = _llama_models(checkpoint.name, args)

    common = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    def ref_run(ids):
        with torch.no_grad():
            return reference.generate(ids, attention_mask=torch.ones_like(ids), **common)

    def our_run(ids, quantize=None):
        return ours.generate(ids, quantize=quantize, **common)

    reference_rate, our_rate, llama_f32_rate = {}, {}, {}
    for batch in batches:
        ids = torch.randint(0, 50257, (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(batch))
        same = torch.equal(our_run(ids), ref_run(ids))  # also the warm-up
        our_run(ids, "int8")  # builds the int8 weights once (cached on the model)
        runs = {"ours": lambda: our_run(ids), "transformers": lambda: ref_run(ids),
                "ours int8": lambda: our_run(ids, "int8")}
        wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
        llama_rate = {name: [] for name in llama}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            for name, model in llama.items():  # its own timing of the decode (model loading excluded)
                llama_rate[name].append(_llama_rate(model, batch, args))
        rate = {k: batch * args.new_tokens / statistics.median(v) for k, v in wall.items()}
        reference_rate[batch] = rate["transformers"]
        our_rate[batch] = rate["ours"] / batch  # steps per second
        if llama_rate.get("f32"):
            llama_f32_rate[batch] = statistics.median(llama_rate["f32"]) / batch
        for name in ("ours", "ours int8"):
            paired = statistics.median(r / o for o, r in zip(wall[name], wall["transformers"]))
            cpu_ratio = statistics.median(cpu["transformers"]) / statistics.median(cpu[name])
            print(f"batch {batch}: {name:9s} {rate[name]:7.1f} tok/s | transformers fp32 {rate['transformers']:7.1f} "
                  f"tok/s | ratio {rate[name] / rate['transformers']:.2f}x (paired rounds {paired:.2f}x, "
                  f"cpu time {cpu_ratio:.2f}x)" + (f" | same tokens: {same}" if name == "ours" else ""))
        for (name, theirs), target in zip(llama_rate.items(), _TARGETS[batch > 1]):
            mine = rate["ours" if name == "f32" else "ours int8"]
            paired = statistics.median(batch * args.new_tokens / o / t
                                       for o, t in zip(wall["ours" if name == "f32" else "ours int8"], theirs))
            print(f"batch {batch}: llama.cpp {name:4s} {statistics.median(theirs):7.1f} tok/s"
                  f"{' (' + str(batch) + ' parallel sequences)' if batch > 1 else ''} | ours "
                  f"{'fp32' if name == 'f32' else 'int8'} / llama.cpp {mine / statistics.median(theirs):.2f}x "
                  f"(paired rounds {paired:.2f}x; target {target})")

    _peak_rss(checkpoint.name, batches, args)
    _read_ceiling(ours, reference_rate.get(1), our_rate.get(1), llama_f32_rate.get(1))
    _int8_logits(ours, args.prompt_tokens)
    checkpoint.cleanup()


# The targets against llama.cpp: (f32, q8_0) at batch 1, then at batch 8.
_TARGETS = ((">= 0.9x", ">= 0.8x"), (">= 1.0x", "> 1.0x"))


def _llama_models(checkpoint, args) -> dict:
    """{"f32": gguf, "q8_0": gguf} of the benchmark checkpoint, or {} (said why) without llama.cpp's build."""
    if args.no_llama:
        return {}
    if not llama_cpp.built():
        print(f"llama.cpp: not built, no llama.cpp column; {llama_cpp.BUILD_HINT}")
        return {}
    print(f"llama.cpp: {llama_cpp.version()} (vendor/llama.cpp of the sdist), converting the checkpoint")
    return {outtype: llama_cpp.convert(checkpoint, outtype) for outtype in ("f32", "q8_0")}


def _llama_rate(model, batch, args) -> float:
    if batch == 1:
        return llama_cpp.decode_rate(model, threads=args.threads, new_tokens=args.new_tokens,
                                     prompt_tokens=args.prompt_tokens)
    return llama_cpp.batched_rate(model, threads=args.threads, prompt_tokens=args.prompt_tokens,
                                  new_tokens=args.new_tokens, streams=batch)


def _peak_rss(checkpoint, batches, args):
    """Our peak resident memory decoding alone (a fresh process: load, then fp32 generate at each batch), beside
    the checkpoint's size: what a second copy of the weights would add shows here."""
    code = (
        "import resource, sys, torch\n"
        "from gpt2_pt import GPT2LMHeadModel\n"
        f"torch.set_num_threads({args.threads})\n"
        "model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()\n"
        "loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"for batch in {batches}:\n"
        f"    model.generate(torch.full((batch, {args.prompt_tokens}), 464), max_new_tokens=8,"
        " min_new_tokens=8, pad_token_id=0)\n"
        "print(loaded, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    run = subprocess.run([sys.executable, "-c", code, checkpoint], capture_output=True, text=True,
                         env=dict(os.environ))
    if run.returncode:
        print(f"peak RSS: the child failed: {run.stderr[-500:]}")
        return
    loaded, peak = (int(v) / 1024 for v in run.stdout.split())
    size = pathlib.Path(checkpoint, "model.safetensors").stat().st_size / 2 ** 20
    print(f"peak RSS (ours alone, fp32 decoding at batch {args.batches}): {peak:.0f} MiB after load {loaded:.0f} MiB; "
          f"checkpoint {size:.0f} MiB")


def _read_ceiling(ours, reference_rate, our_rate, llama_rate):
    """The batch-1 bound: per token, one product with each weight matrix of the model (what any fp32 decoder must
    read), and nothing else, timed through torch's own GEMMs and through the kernel decoding runs (the calibrated
    one, in its thread arrangement). The latter's tokens/s is the most our decoding step can reach with that kernel;
    the bytes/s of each, llama.cpp's included (the same bytes per token), say how close each is to the machine."""
    from gpt2_pt import kernels
    from gpt2_pt.modeling import Conv1D

    weights = [m.weight for m in ours.modules() if isinstance(m, Conv1D)] + [ours.lm_head.weight]
    size = 4 * sum(w.numel() for w in weights)

    def median_time(products):
        products()
        times = []
        for _ in range(15):
            start = time.perf_counter()
            products()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.inference_mode():
        torch_s = median_time(weight_products(ours, 1, bias=False))
        with kernels.decoding(ours, 1) as plan:
            chosen_s = median_time(decoding_products(ours, 1))
    for name, seconds in (("torch's GEMMs", torch_s), (f"the decoding kernel, {plan and plan.name}", chosen_s)):
        print(f"batch-1 read ceiling: the {len(weights)} weight products alone through {name} take "
              f"{seconds * 1e3:.1f} ms ({size / seconds / 1e9:.1f} GB/s) = {1 / seconds:.1f} tok/s at most"
              + (f", {1 / seconds / reference_rate:.2f}x transformers fp32" if reference_rate else ""))
    if our_rate:
        print(f"batch-1 step: ours fp32 {1e3 / our_rate:.1f} ms a token ({size * our_rate / 1e9:.1f} GB/s of weights), "
              f"{chosen_s * our_rate:.0%} of it in the products"
              + (f"; llama.cpp f32 {1e3 / llama_rate:.1f} ms ({size * llama_rate / 1e9:.1f} GB/s)" if llama_rate else ""))


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
