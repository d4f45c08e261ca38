"""Training throughput: gpt2_pt's training step vs transformers' Trainer, and gpt2_tf's compiled step vs gpt2_pt's,
fp32, 2 threads, side by side.

Both train the same weights on the same random blocks of a real token file, with AdamW (decay 0.1, grad clip 1.0,
cosine schedule), the same batch and block size. Each round runs `--steps` optimizer steps of one, then of the
other; tokens/s counts the steps after the first of each round (the Trainer's set-up and the first step's
allocations are left out of both). Prints tokens/s, the ratio, model FLOPs utilisation (6N + attention FLOPs per
token over the machine's fp32 matmul peak measured here) and each side's peak memory (its own subprocess).
Then the tokenizing speed of `gpt2-train`'s data step (`gpt2_core.data.prepare_tokens`, MB/s of UTF-8 text).

    python bench/bench_train.py [--shapes small,gpt2] [--rounds 3] [--steps 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {  # name: (n_layer, n_embd, n_head, batch, block)
    "small": (4, 256, 4, 8, 128),
    "gpt2": (12, 768, 12, 4, 256),
}
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "man_en.txt"


def token_file(folder: str) -> np.ndarray:
    from gpt2_core import data
    from gpt2_core.tokenizer import GPT2Tokenizer

    text = CORPUS.read_text(encoding="utf-8") if CORPUS.exists() else \
        " ".join(f"word{i % 977} and more text {i}" for i in range(400_000))
    path = os.path.join(folder, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    return data.load_tokens(data.prepare_tokens([path], tok)), tok


def models(shape):
    import transformers

    from gpt2_pt import GPT2Config, GPT2LMHeadModel

    n_layer, n_embd, n_head, _, block = shape
    torch.manual_seed(0)
    kw = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=max(block, 256), resid_pdrop=0.0,
              embd_pdrop=0.0, attn_pdrop=0.0)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw))
    ours = GPT2LMHeadModel(GPT2Config(**kw))
    ours.load_state_dict(theirs.state_dict(), strict=False)
    return ours, theirs


def flops_per_token(shape) -> float:
    n_layer, n_embd, _, _, block = shape
    params = n_layer * 12 * n_embd ** 2 + 50257 * n_embd  # blocks + the (tied) vocabulary projection
    return 6 * params + 12 * n_layer * n_embd * block  # PaLM's count: 6N + attention scores and values


def matmul_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 ** 3 / best


def ours_round(model, blocks, shape, steps, seed):
    from gpt2_core import training as core
    from gpt2_pt import training

    _, _, _, batch, block = shape
    cfg = core.TrainConfig(block_size=block, batch_size=batch, steps=steps, warmup_steps=1, seed=seed)
    optimizer = training.make_optimizer(model, cfg)
    world = training.World()
    marks = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = core.learning_rate(cfg, step)
        training.train_step(model, optimizer, blocks, cfg, step, world, training.autocast_for(cfg, world.device))
        marks.append(time.perf_counter())
    return (steps - 1) * batch * block / (marks[-1] - marks[0])


def tf_model(ours):
    """gpt2_tf's model holding the PyTorch model's weights (by their canonical names)."""
    from gpt2_tf import TFGPT2LMHeadModel
    from gpt2_tf.loading import state_variables

    model = TFGPT2LMHeadModel(ours.config)
    params = dict(ours.named_parameters())
    for name, variable in state_variables(model).items():
        variable.assign(params.get(name, params["transformer.wte.weight"]).detach().numpy())
    return model


def tf_round(model, blocks, shape, steps, seed):
    """gpt2_tf.training's compiled step (XLA forward + backward, our AdamW) on the same blocks."""
    from gpt2_core import training as core
    from gpt2_tf import training

    _, _, _, batch, block = shape
    cfg = core.TrainConfig(block_size=block, batch_size=batch, steps=steps, warmup_steps=1, seed=seed)
    world = training.setup_world()
    optimizer = training.make_optimizer(model, cfg)
    compiled = training.make_train_step(model, optimizer, cfg, world)
    training.train_step(compiled, blocks, cfg, 0, world)  # the trace and XLA compile, not timed
    marks = []
    for step in range(steps):
        optimizer.lr.assign(core.learning_rate(cfg, step))
        training.train_step(compiled, blocks, cfg, step, world)
        marks.append(time.perf_counter())
    return (steps - 1) * batch * block / (marks[-1] - marks[0])


def trainer_round(model, blocks, shape, steps, seed):
    import transformers

    _, _, _, batch, block = shape
    rows = [blocks.batch(seed, step, batch) for step in range(steps)]
    dataset = [{"input_ids": torch.from_numpy(r[:-1]), "labels": torch.from_numpy(r[:-1])}
               for b in rows for r in b]
    marks = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=6e-4,
            weight_decay=0.1, warmup_steps=1, lr_scheduler_type="cosine", max_grad_norm=1.0, logging_strategy="no",
            save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=seed,
            disable_tqdm=True)
        transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[Clock()]).train()
    return (steps - 1) * batch * block / (marks[-1] - marks[0])


def peak_memory(side: str, shape_name: str, steps: int, threads: int) -> float:
    """Peak RSS (GB) of a fresh process that trains `steps` steps with one side only."""
    out = subprocess.run([sys.executable, __file__, "--memory-of", side, "--shapes", shape_name, "--steps",
                          str(steps), "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_gb"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", default="small,gpt2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tf", action="store_true", help="also time gpt2_tf's training step against gpt2_pt's")
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    from gpt2_core import data

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as folder:
        tokens, tok = token_file(folder)
        for name in args.shapes.split(","):
            shape = SHAPES[name]
            blocks = data.TokenBlocks(data.Split(tokens, 0, len(tokens)), shape[4])
            ours, theirs = models(shape)
            if args.memory_of:
                run = ours_round if args.memory_of == "ours" else trainer_round
                run(ours if args.memory_of == "ours" else theirs, blocks, shape, args.steps, 0)
                with open("/proc/self/status") as f:
                    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
                print(json.dumps({"peak_gb": hwm / 1e6}))
                return
            flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0]
            print(f"shape {name}: n_layer {shape[0]}, n_embd {shape[1]}, batch {shape[3]} x block {shape[4]}, fp32, "
                  f"{torch.get_num_threads()} threads, torch {torch.__version__}, transformers "
                  f"{transformers.__version__}; CPU {'avx512f' in flags and 'AVX-512' or 'AVX2'}")
            rates = {"ours": [], "trainer": []}
            for r in range(args.rounds):
                rates["trainer"].append(trainer_round(theirs, blocks, shape, args.steps, r))
                rates["ours"].append(ours_round(ours, blocks, shape, args.steps, r))
            if args.tf:
                import tensorflow as tf

                tf.config.threading.set_intra_op_parallelism_threads(args.threads)
                ours_tf, rates["tf"] = tf_model(ours), []
                for r in range(args.rounds):  # alternately, on the weights both sides have reached
                    rates["tf"].append(tf_round(ours_tf, blocks, shape, args.steps, r))
                    rates["pt"] = rates.get("pt", []) + [ours_round(ours, blocks, shape, args.steps, r)]
                tf_pt = statistics.median(a / b for a, b in zip(rates.pop("tf"), rates.pop("pt")))
                print(f"  gpt2_tf / gpt2_pt tokens/s (paired rounds): {tf_pt:.2f}x")
            o, t = statistics.median(rates["ours"]), statistics.median(rates["trainer"])
            paired = statistics.median(a / b for a, b in zip(rates["ours"], rates["trainer"]))
            peak = matmul_peak()
            mfu = {k: statistics.median(v) * flops_per_token(shape) / peak for k, v in rates.items()}
            mem = {side: peak_memory(side, name, 3, args.threads) for side in ("ours", "trainer")}
            print(f"  tokens/s: ours {o:,.0f}   Trainer {t:,.0f}   ratio {o / t:.2f}x (paired rounds: "
                  f"{paired:.2f}x)")
            print(f"  MFU (of a measured fp32 matmul peak of {peak / 1e9:.0f} GFLOP/s): ours {100 * mfu['ours']:.1f}%"
                  f"   Trainer {100 * mfu['trainer']:.1f}%")
            print(f"  peak RSS: ours {mem['ours']:.2f} GB   Trainer {mem['trainer']:.2f} GB")
        text_bytes = CORPUS.stat().st_size if CORPUS.exists() else None
        if text_bytes:
            from gpt2_core.data import encode_documents

            text = CORPUS.read_text(encoding="utf-8")
            times = {"prepare_tokens": [], "encode_batch": []}
            for _ in range(3):
                t = time.perf_counter()
                encode_documents([text], tok)
                times["prepare_tokens"].append(time.perf_counter() - t)
                t = time.perf_counter()
                tok.encode_batch([text])
                times["encode_batch"].append(time.perf_counter() - t)
            a, b = (text_bytes / 1e6 / min(v) for v in times.values())
            print(f"tokenizing {text_bytes / 1e6:.1f} MB for gpt2-train: {a:.2f} MB/s; the tokenizer's own "
                  f"encode_batch on the same text: {b:.2f} MB/s ({a / b:.2f}x)")


if __name__ == "__main__":
    main()
