"""gpt2-convert vs transformers on a gpt2-small-shaped model (random weights): time and peak anonymous memory.

The reference for "safetensors float32 -> safetensors float16" is what a transformers user does:
GPT2LMHeadModel.from_pretrained(src, dtype=float16).save_pretrained(dst). Ours and the reference run alternately
in this process; memory is the peak of RssAnon (heap, not the page cache of memory-mapped files) above the level
before each run, sampled every 2 ms. Conversions with no reference in this environment (OpenAI TF1 ->
safetensors, safetensors -> tf_model.h5) print our figures only.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "conversion"))


_libc = ctypes.CDLL("libc.so.6")


def rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def measure(fn) -> tuple[float, float]:
    """(seconds, peak MB of anonymous memory above the level before the call)."""
    gc.collect()
    _libc.malloc_trim(0)  # hand freed heap back to the OS, or the next run would reuse it unseen
    base = rss_anon_kb()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_kb())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return elapsed, (max(peak[0], rss_anon_kb()) - base) / 1024


def main():
    import torch
    import transformers

    from gpt2_convert import convert

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("gpt2_convert").setLevel(logging.ERROR)  # "no tokenizer files": the random model has none
    root = tempfile.mkdtemp(prefix="bench_convert.")
    try:
        torch.manual_seed(0)
        src = os.path.join(root, "src")
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(src)

        def ours():
            convert(src, os.path.join(root, "ours"), dtype="float16", force=True, progress=False)

        def reference():
            model = transformers.GPT2LMHeadModel.from_pretrained(src, dtype=torch.float16)
            model.save_pretrained(os.path.join(root, "ref"))
            del model

        print("safetensors float32 -> safetensors float16, gpt2-small shape (124M parameters, 498 MB)")
        times = {"ours": [], "transformers": []}
        memory = {"ours": [], "transformers": []}
        for _ in range(3):
            for name, fn in (("ours", ours), ("transformers", reference)):
                seconds, mb = measure(fn)
                times[name].append(seconds)
                memory[name].append(mb)
        t_ours, t_ref = min(times["ours"]), min(times["transformers"])
        m_ours, m_ref = max(memory["ours"]), max(memory["transformers"])
        print(f"  time      ours {t_ours:6.2f} s   transformers {t_ref:6.2f} s   ratio {t_ref / t_ours:5.2f}x")
        print(f"  peak anon ours {m_ours:6.0f} MB  transformers {m_ref:6.0f} MB  ratio {m_ref / max(m_ours, 1):5.2f}x")

        from convert_utils import openai_variables, save_tf1_checkpoint

        release = os.path.join(root, "openai")
        os.makedirs(release)
        variables = openai_variables(n_vocab=50257, n_ctx=1024, n_embd=768, n_layer=12)
        save_tf1_checkpoint(variables, os.path.join(release, "model.ckpt"))
        del variables
        with open(os.path.join(release, "hparams.json"), "w") as f:
            f.write('{"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12}')
        for label, args in (("OpenAI TF1 -> safetensors", (release, "from_openai", "safetensors")),
                            ("safetensors -> tf_model.h5", (src, "tf", "tf")),
                            ("safetensors -> pytorch_model.bin", (src, "bin", "pytorch"))):
            seconds, mb = measure(lambda: convert(args[0], os.path.join(root, args[1]), format=args[2],
                                                  force=True, progress=False))
            print(f"{label:34s} ours {seconds:6.2f} s, peak anon {mb:6.0f} MB (no reference here)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
