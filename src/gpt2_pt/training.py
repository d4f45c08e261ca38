"""gpt2-train's PyTorch loop, read top to bottom (nanoGPT's train.py is the model): processes, model, optimizer,
then steps of grad-accumulated AdamW with the core's schedule, evaluation and checkpoints. Everything that is
not a framework call (data, schedule, which parameters decay, log, checkpoint layout, stop signal) is
gpt2_core.training / gpt2_core.data, which gpt2_tf.training shares.

Distributed: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) starts DDP, gloo on CPU and
NCCL on CUDA. Each rank reads its own rows of every step's global batch; only rank 0 writes files.

    >>> from gpt2_core.training import TrainConfig
    >>> from gpt2_pt.training import train
    >>> summary = train(TrainConfig(data=["corpus.txt"], steps=100), load_data)     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gpt2_core import training as core
from gpt2_core.hardware import has_bfloat16

from .heads import GPT2LMHeadModel

logger = logging.getLogger(__name__)

OPTIMIZER_NAME = "optimizer.pt"


# --------------------------------------------------------------------------------------------- processes
@dataclass
class World:
    """This process's place in the run: rank, size, and its device (one GPU per rank on CUDA)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on one (a stop signal reaching one process stops all)."""
        if self.size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.item() / self.size


def setup_world() -> World:
    """Join the process group torchrun describes (a single process when WORLD_SIZE is unset or 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return World(rank, size, device)


def teardown_world(world: World) -> None:
    if world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------------- model
def build_model(cfg: core.TrainConfig, resume_from: str | None) -> GPT2LMHeadModel:
    """The model to train: the checkpoint being resumed, the one being fine-tuned, or a new one with GPT-2's
    initialisation (seeded, so every rank starts from the same weights)."""
    if resume_from is not None:
        return GPT2LMHeadModel.from_pretrained(resume_from, dtype=torch.float32)
    if cfg.model is not None:
        return GPT2LMHeadModel.from_pretrained(cfg.model, dtype=torch.float32, **core.dropout_overrides(cfg))
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(core.pretraining_config(cfg))


def make_optimizer(model: torch.nn.Module, cfg: core.TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups by the core's rule: decay for the matrices, none for biases, LayerNorms and
    embeddings (named_parameters lists a tied weight once, under wte)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if core.decays(name) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all tensors, on CUDA and CPU alike. On CPU torch's default is a loop of ~12 ops per
    # tensor: 130 ms against 30 ms of a ~2 s step of bench_train's small shape (transformers' Trainer fuses too)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=True)


def autocast_for(cfg: core.TrainConfig, device: torch.device):
    """bf16 autocast when asked, or for `auto` where the hardware computes in bf16 (CUDA with bf16, CPUs with
    AVX512-BF16 / AMX); float32 otherwise. Weights and optimizer state stay float32."""
    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and (
        torch.cuda.is_bf16_supported() if device.type == "cuda" else has_bfloat16()))
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# -------------------------------------------------------------------------------------------------- steps
def train_step(model, optimizer, blocks, cfg: core.TrainConfig, step: int, world: World, autocast) -> float:
    """One optimizer step over `grad_accum` micro-batches; returns the mean loss (this rank's rows)."""
    total = 0.0
    for micro in range(cfg.grad_accum):
        rows = blocks.batch(cfg.seed, core.micro_step_index(cfg, step, micro), cfg.batch_size * world.size,
                            take=core.rank_rows(cfg.batch_size, world.rank))
        batch = torch.from_numpy(rows).to(world.device, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]  # (B, T) inputs and their next tokens
        last = micro == cfg.grad_accum - 1
        # DDP averages gradients across ranks in backward; only the last micro-step needs it
        sync = contextlib.nullcontext() if last or world.size == 1 else model.no_sync()
        with sync:
            with autocast:
                logits = model(x).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            (loss / cfg.grad_accum).backward()
        total += loss.item()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / cfg.grad_accum


@torch.no_grad()
def evaluate(model, blocks, cfg: core.TrainConfig, world: World, autocast) -> float:
    """Mean loss over the first `eval_batches` x `batch_size` consecutive validation blocks (the same blocks
    at every evaluation, so the curve compares like with like)."""
    model.eval()
    rows = list(blocks.sequential(limit=cfg.eval_batches * cfg.batch_size))
    total, count = 0.0, 0
    for k in range(0, len(rows), cfg.batch_size):
        batch = torch.from_numpy(np.stack(rows[k:k + cfg.batch_size])).to(world.device)
        with autocast:
            logits = model(batch[:, :-1]).logits
        total += F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    model.train()
    return total / count


def save_checkpoint(model, optimizer, tokenizer, cfg: core.TrainConfig, state: dict) -> None:
    """Write the HF-layout checkpoint (weights, configs, tokenizer) + optimizer + training state to out_dir."""
    def write_files(folder):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        torch.save(optimizer.state_dict(), os.path.join(folder, OPTIMIZER_NAME))

    core.write_checkpoint(cfg.out_dir, write_files, state)


# ---------------------------------------------------------------------------------------------------- run
def train(cfg: core.TrainConfig, load_data, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or, with `resume`, continue) the training `cfg` describes. `load_data()` returns a
    core.TrainData; rank 0 calls it first (it may tokenize), the others after (they find the cache).
    Returns a summary dict: step, tokens, train_loss, val_loss, elapsed_seconds, stopped_by."""
    world = setup_world()
    try:
        return _train(cfg, load_data, world, resume=resume, progress=progress)
    finally:
        teardown_world(world)


def _train(cfg, load_data, world: World, *, resume: bool, progress: bool) -> dict:
    cfg, data, state = core.prepare_run(cfg, world, load_data, resume=resume)
    model = build_model(cfg, cfg.out_dir if state else None)
    if cfg.block_size > model.config.n_positions:
        raise ValueError(f"--block-size should be at most the model's n_positions ({model.config.n_positions}). "
                         f"Received: --block-size {cfg.block_size}")
    model.to(world.device).train()
    optimizer = make_optimizer(model, cfg)
    if state is not None:
        path = os.path.join(cfg.out_dir, OPTIMIZER_NAME)
        optimizer.load_state_dict(torch.load(path, map_location=world.device, weights_only=True))
    net = model if world.size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    autocast = autocast_for(cfg, world.device)

    def train_one(step, lr):
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(core.step_seed(cfg, step, world.rank))  # dropout: a function of the step
        return world.mean(train_step(net, optimizer, data.train, cfg, step, world, autocast))

    return core.run_steps(
        cfg, world, data, state, progress=progress, train_one=train_one,
        evaluate=lambda: evaluate(model, data.val, cfg, world, autocast),
        save=lambda st: save_checkpoint(model, optimizer, data.tokenizer, cfg, st),
        backend_files={"optimizer": OPTIMIZER_NAME})
