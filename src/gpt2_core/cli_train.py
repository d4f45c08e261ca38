"""gpt2-train: pretrain GPT-2 from a config, or fine-tune a checkpoint, on text files. The backend (and torchrun,
for --nproc) is imported only at run time.

    $ gpt2-train --data 'corpus/*.txt' --config gpt2 --n-layer 4 --n-embd 128 --n-head 4 --steps 2000 --out run1
    $ gpt2-train --model gpt2 --data notes.txt --steps 200 --learning-rate 1e-4 --out gpt2-notes
    $ gpt2-train --resume --out run1 --data 'corpus/*.txt' ...        # the same flags: continues where it stopped
    $ gpt2-train --resume --out run1 --data 'corpus/*.txt' --steps 4000 ...  # 2000 more steps, at --min-lr
    $ gpt2-train --nproc 2 --data ... --out run2                      # DDP, torchrun's launcher
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import socket
import subprocess
import sys

from .cli_common import OneLineParser, load_tokenizer, positive_int, run_main
from .training import DTYPES, TrainConfig, launcher_rank

PROG = "gpt2-train"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = OneLineParser(prog=PROG, description="Pretrain or fine-tune GPT-2 on text files.")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="fine-tune this checkpoint (a directory or hub name)")
    g.add_argument("--config", default=d.config, help="pretrain a new model with this preset's shape "
                   "(gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2)")
    for name in ("n_layer", "n_embd", "n_head", "n_positions"):
        g.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=None,
                       help=f"override the preset's {name}")
    g.add_argument("--dropout", type=float, default=None, help="default: 0 when pretraining, the checkpoint's "
                   "when fine-tuning")
    g.add_argument("--backend", choices=("pt", "tf"), default=d.backend)
    g = p.add_argument_group("data")
    g.add_argument("--data", nargs="+", required=True, help="text files or globs (each file one document)")
    g.add_argument("--val-data", nargs="+", default=[], help="held-out text files (default: --val-fraction)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="the share of --data's tokens (its end) held out for validation when there is no --val-data")
    g.add_argument("--block-size", type=positive_int, default=d.block_size)
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="rows per process per micro-step")
    g.add_argument("--grad-accum", type=positive_int, default=d.grad_accum)
    g.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps")
    g.add_argument("--learning-rate", "--lr", type=float, default=d.learning_rate)
    g.add_argument("--min-lr", type=float, default=d.min_lr)
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--decay-steps", type=positive_int, default=None,
                   help="the step where the cosine decay reaches --min-lr (default: --steps); --min-lr after it. "
                   "A --resume keeps the saved run's, so more --steps there train on at --min-lr")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--beta2", type=float, default=d.beta2)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="0: off")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--dtype", choices=DTYPES, default=d.dtype,
                   help="auto: bfloat16 autocast where the hardware has it, else float32")
    g = p.add_argument_group("output")
    g.add_argument("--out", dest="out_dir", default=d.out_dir, help="the checkpoint folder (HF layout)")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="validation loss every N steps (0: at the end)")
    g.add_argument("--eval-batches", type=positive_int, default=d.eval_batches)
    g.add_argument("--save-every", type=int, default=d.save_every, help="a checkpoint every N steps (0: at the end)")
    g.add_argument("--log-every", type=positive_int, default=d.log_every)
    g.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("processes")
    g.add_argument("--nproc", type=positive_int, default=1,
                   help="processes on this machine (DDP through torchrun's launcher; PyTorch)")
    return p


def config_from_args(args) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda a: _run(a, argv), args)


def _run(args, argv) -> int:
    cfg = config_from_args(args)
    if args.resume and args.model:
        raise ValueError("--resume continues the checkpoint in --out: drop --model")
    tokenizer = _tokenizer(cfg, args.resume)
    rank = launcher_rank()
    if args.nproc > 1:
        if cfg.backend != "pt":
            raise ValueError(f"--nproc launches PyTorch DDP; TensorFlow distributes with tf.distribute. "
                             f"Received: --backend {cfg.backend}")
        _load_data(cfg, tokenizer, progress=not args.no_progress)()  # tokenize once, check the data first
        return _launch(args.nproc, argv)
    train = _backend_train(cfg.backend)
    summary = train(cfg, _load_data(cfg, tokenizer, progress=not args.no_progress and rank == 0),
                    resume=args.resume, progress=not args.no_progress)
    if rank == 0:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary.items()}))
    if summary.get("stopped_by") and rank == 0:
        print(f"{PROG}: stopped by {summary['stopped_by']} at step {summary['step']}; checkpoint in "
              f"{cfg.out_dir} (continue with --resume)", file=sys.stderr)
    return 0


def _backend_train(backend: str):
    """The chosen backend's `train` (imported here, at run time)."""
    module = "gpt2_pt.training" if backend == "pt" else "gpt2_tf.training"
    try:
        return importlib.import_module(module).train
    except ModuleNotFoundError as e:
        if e.name in ("torch", "tensorflow", "keras"):
            raise ImportError(f"--backend {backend} needs {e.name}, which is not installed") from e
        if e.name == module:
            raise ImportError(f"--backend {backend}: this installation has no training loop for it ({module})") \
                from e
        raise


def _tokenizer(cfg: TrainConfig, resume: bool):
    source = cfg.out_dir if resume else cfg.model
    if source is None:
        from .tokenizer import GPT2Tokenizer

        return GPT2Tokenizer.from_pretrained("gpt2")
    return load_tokenizer(source)


def _load_data(cfg, tokenizer, *, progress):
    from .training import load_train_data

    return lambda: load_train_data(cfg, tokenizer, progress=progress)


def _launch(nproc: int, argv: list[str]) -> int:
    """Run this command again under torchrun's launcher with `nproc` processes on 127.0.0.1."""
    rest = []
    skip = False
    for k, arg in enumerate(argv):  # drop --nproc N / --nproc=N
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--nnodes", "1",
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "gpt2_core.cli_train", *rest]
    process = subprocess.Popen(command)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:  # the workers got Ctrl-C too: they write a checkpoint and exit
            continue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
