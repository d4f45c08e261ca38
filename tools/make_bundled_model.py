"""The last step of `make model`: turn a finished gpt2-train run into the bundled model folder.

    $ python tools/make_bundled_model.py --run build/bundled-run --data build/kdoc \\
          --out src/gpt2_core/bundled_model --command "gpt2-train ..."

Writes the weights in float16 (model.safetensors), config.json, generation_config.json, vocab.json + merges.txt
(+ tokenizer_config.json, special_tokens_map.json), the run's loss curve and log, and README.md: the model card,
with gpt2-eval's perplexity on the held-out test documents next to their unigram perplexity.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

KEEP_TOKENIZER = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="the extracted corpus (tools/extract_kernel_docs.py --out)")
    p.add_argument("--out", required=True)
    p.add_argument("--command", required=True, help="the gpt2-train command, for the card")
    args = p.parse_args(argv)

    import torch

    from gpt2_core import data as tokens_io
    from gpt2_core.bundled import BUNDLED_NAME
    from gpt2_core.evaluation import unigram_perplexity
    from gpt2_core.tokenizer import GPT2Tokenizer
    from gpt2_core.training import plot_loss_curve, read_log, read_state
    from gpt2_pt import GPT2LMHeadModel

    state = read_state(args.run)
    phases = [state]  # this run, and the runs it fine-tuned, first to last
    while phases[0]["config"].get("model") and os.path.isfile(os.path.join(phases[0]["config"]["model"],
                                                                           "training_state.json")):
        phases.insert(0, read_state(phases[0]["config"]["model"]))
    total_steps = sum(p["step"] for p in phases)
    total_tokens = sum(p["tokens"] for p in phases)
    total_minutes = sum(p["elapsed_seconds"] for p in phases) / 60
    staging = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model = GPT2LMHeadModel.from_pretrained(args.run).to(torch.float16)
    model.save_pretrained(staging)
    for name in KEEP_TOKENIZER:
        shutil.copy(os.path.join(args.run, name), os.path.join(staging, name))
    # one log and one curve over all phases, steps counted on from phase to phase
    merged, offset = [], 0
    for phase in phases:
        for record in read_log(os.path.join(phase["config"]["out_dir"], "train_log.jsonl")):
            merged.append({**record, "step": record["step"] + offset})
        offset += phase["step"]
    with open(os.path.join(staging, "train_log.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in merged)
    plot_loss_curve(os.path.join(staging, "train_log.jsonl"), os.path.join(staging, "loss_curve.png"),
                    title=f"{BUNDLED_NAME}: " + " then ".join(f"{p['step']} steps x {p['config']['block_size']} "
                                                             "tokens" for p in phases))

    # held-out text: the test documents, joined as one text (blank line between documents)
    test_docs = sorted(glob.glob(os.path.join(args.data, "test", "*.txt")))
    test_path = os.path.join(args.data, "test.txt")
    with open(test_path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(open(d, encoding="utf-8").read() for d in test_docs))
    result = subprocess.run([sys.executable, "-m", "gpt2_core.cli_eval", "--model", staging, "--data", test_path,
                             "--max-length", "256", "--stride", "128", "--json"], check=True, capture_output=True,
                            text=True)
    ev = json.loads(result.stdout)
    tok = GPT2Tokenizer.from_pretrained(staging)
    train_tokens = tokens_io.load_tokens(tokens_io.prepare_tokens([os.path.join(args.data, "train", "*.txt")], tok))
    test_ids = np.asarray(tok.encode(open(test_path, encoding="utf-8").read()))
    unigram = unigram_perplexity(train_tokens, test_ids, len(tok))
    sample = subprocess.run([sys.executable, "-m", "gpt2_core.cli", "--model", staging, "--prompt",
                             "The kernel", "--length", "40", "--seed", "0"], check=True, capture_output=True,
                            text=True).stdout.split("===\n", 1)[-1].strip()
    sample = "\n> ".join(sample.splitlines())  # a quoted block, line by line

    manifest = json.load(open(os.path.join(args.data, "manifest.json"), encoding="utf-8"))
    log = merged
    train_losses = [r["train_loss"] for r in log if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in log if "val_loss" in r]
    cfg = model.config
    size_mb = os.path.getsize(os.path.join(staging, "model.safetensors")) / 1e6
    card = f"""# {BUNDLED_NAME}

A small GPT-2 that ships inside the `gpt2` package so that `gpt2-generate`, `gpt2-eval` and `gpt2-serve` work
offline with no `--model`. It is a toy: it writes text that looks like Linux kernel documentation, nothing more.
`--model gpt2` (OpenAI's GPT-2) is a different, much larger model.

| | |
| --- | --- |
| shape | GPT-2 (standard `GPT2LMHeadModel` config): n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, n_head {cfg.n_head}, n_positions {cfg.n_positions}, vocabulary {cfg.vocab_size} (GPT-2's tokenizer) |
| parameters | {model.num_parameters():,} (wte alone: {cfg.vocab_size * cfg.n_embd:,}) |
| weights | float16 safetensors, {size_mb:.1f} MB |
| training data | Debian package `{manifest['package']}` {manifest['version']}: the kernel's English documentation (`Documentation/**/*.rst`, translations left out), licence {manifest['licence']}; {manifest['documents']['train']} train documents ({manifest['bytes']['train'] / 1e6:.1f} MB, {len(train_tokens):,} tokens), {manifest['documents']['val']} validation, {manifest['documents']['test']} test (held out by a hash of each file's path) |
| extraction | `apt-get download linux-doc-6.12`, `dpkg-deb -x`, gunzip each `.rst.gz`, drop SPDX lines: `tools/extract_kernel_docs.py` |
| steps | {total_steps} optimizer steps in {len(phases)} phase(s) ({' then '.join(f"{p['step']} on {p['config']['block_size']}-token blocks" for p in phases)}), {total_tokens:,} tokens seen ({total_tokens / len(train_tokens):.3f} epochs) |
| wall time | {total_minutes:.1f} minutes on a shared 2-core CPU machine (float32, 1 thread, alongside ~8 other jobs) |
| final loss | train {train_losses[-1]:.3f}, validation {val[-1][1]:.3f} nats/token (step {val[-1][0]}) |
| held-out test | `gpt2-eval` (window 256, stride 128): perplexity **{ev['perplexity']:.1f}** ({ev['nll']:.3f} nats/token, {ev['bits_per_byte']:.3f} bits per byte, {ev['tokens']:,} tokens); unigram perplexity of the same text (train-token frequencies, add-one): **{unigram:.1f}**; ratio {ev['perplexity'] / unigram:.2f} |

Reproduce from nothing (downloads the Debian package, extracts, trains, writes this folder):

```sh
make model
```

which runs

```sh
{args.command}
```

![train and validation loss](loss_curve.png)

A sample (`gpt2-generate --prompt "The kernel" --length 40 --seed 0`; top-p 0.9; greedy decoding of a model
this small soon repeats newlines):

> {sample}

The training log is `train_log.jsonl` beside this card (all phases, steps counted on).
"""
    with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(staging, args.out)
    print(json.dumps({"perplexity": ev["perplexity"], "unigram_perplexity": unigram, "size_mb": size_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
