"""What a training run is, apart from the framework: its settings, the learning-rate schedule, which parameters
get weight decay, the JSON-lines log and loss curve, the checkpoint folder (HF layout + training state) and the
stop signal. `gpt2_pt.training` and `gpt2_tf.training` run the loop; everything both would write twice is here.

    >>> from gpt2_core.training import TrainConfig, learning_rate
    >>> cfg = TrainConfig(steps=1000, warmup_steps=100, learning_rate=6e-4, min_lr=6e-5)
    >>> round(learning_rate(cfg, 50), 6), round(learning_rate(cfg, 1000), 6)
    (0.000303, 6e-05)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .io_utils import atomic_write_text, read_json_object

logger = logging.getLogger(__name__)

STATE_NAME = "training_state.json"
LOG_NAME = "train_log.jsonl"
CURVE_NAME = "loss_curve.png"
STATE_VERSION = 1
# float32 weights always; bfloat16 is autocast (no loss scaling needed, unlike float16)
DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    """Every setting of a run (the CLI's flags, by the same names). Saved in the training state, so a resume
    can check that it continues the same run."""

    out_dir: str = "out"
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    val_fraction: float = 0.01
    model: str | None = None            # fine-tune this checkpoint; None: pretrain from `config` + overrides
    config: str = "gpt2"                # a preset whose shape to pretrain
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_positions: int | None = None
    dropout: float | None = None        # None: 0.0 when pretraining (nanoGPT), the checkpoint's when fine-tuning
    block_size: int = 256
    batch_size: int = 8                 # rows per micro-step on each process
    grad_accum: int = 1
    steps: int = 1000
    learning_rate: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 100
    decay_steps: int | None = None      # the step where the cosine reaches min_lr (None: `steps`); min_lr after
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0              # 0: off
    seed: int = 1337
    dtype: str = "auto"                 # auto: bfloat16 autocast where the hardware has it, else float32
    eval_every: int = 200               # 0: only at the end
    eval_batches: int = 20
    save_every: int = 0                 # 0: only at the end (and on Ctrl-C / SIGTERM)
    log_every: int = 1
    backend: str = "pt"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """ValueError naming the first setting that cannot describe a run."""
        positive = ("block_size", "batch_size", "grad_accum", "steps", "eval_batches", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{_flag(name)} should be a positive integer. Received: {value!r}")
        if self.decay_steps is not None and (not isinstance(self.decay_steps, int) or self.decay_steps < 1):
            raise ValueError(f"--decay-steps should be a positive integer. Received: {self.decay_steps!r}")
        for name in ("warmup_steps", "eval_every", "save_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"--{_flag(name)} should be an integer >= 0. Received: {value!r}")
        for name in ("learning_rate", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"--{_flag(name)} should be a finite number >= 0. Received: {value!r}")
        if self.min_lr > self.learning_rate:
            raise ValueError(f"--min-lr should not exceed --learning-rate. Received: --min-lr={self.min_lr} "
                             f"--learning-rate={self.learning_rate}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"--{name} should be in [0, 1). Received: {getattr(self, name)!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction should be in [0, 1). Received: {self.val_fraction!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout should be in [0, 1). Received: {self.dropout!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype should be one of {', '.join(DTYPES)}. Received: {self.dtype!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _flag(name: str) -> str:
    return name.replace("_", "-")


# Settings a resumed run must share with the run it continues: they decide which blocks each step reads and
# what the optimizer does at each step (the whole lr schedule included), so changing them would not continue the
# same run. `steps` is not among them: it only says where the run stops, and the schedule does not move with it,
# because `decay_steps` (resolved to the first run's `steps`) is kept. So `--resume --steps 2000` on a 1000-step
# run trains 1000 more steps at min_lr: the same weights as a 2000-step run with --decay-steps 1000 (test).
RESUME_FIXED = ("block_size", "grad_accum", "seed", "learning_rate", "min_lr", "warmup_steps", "decay_steps",
                "weight_decay", "beta1", "beta2", "grad_clip")
# Settings a resumed run may change, each said once on stderr when it does (the rest are where files go, how
# often to log, evaluate and save, and the data files, whose blocks are still drawn by seed and step).
RESUME_ANNOUNCED = ("steps", "dtype", "dropout", "data", "val_data", "val_fraction")


def check_resumable(saved: TrainConfig, now: TrainConfig, world_size: int, saved_world_size: int,
                    saved_step: int = 0) -> tuple[TrainConfig, str | None]:
    """(the config to resume with, a note for the user or None): `now`, with `decay_steps` taken from the
    checkpoint's run when not given; the note names the settings that changed and may change, and the schedule
    that stays. ValueError naming every schedule-deciding setting that differs, or a --steps the checkpoint has
    passed."""
    saved = dataclasses.replace(saved, decay_steps=saved.decay_steps or saved.steps)
    if now.decay_steps is None:
        now = dataclasses.replace(now, decay_steps=saved.decay_steps)
    changed = [f"--{_flag(n)} {getattr(saved, n)!r} -> {getattr(now, n)!r}" for n in RESUME_FIXED
               if getattr(saved, n) != getattr(now, n)]
    if saved.batch_size * saved_world_size != now.batch_size * world_size:
        changed.append(f"global batch {saved.batch_size}x{saved_world_size} processes -> "
                       f"{now.batch_size}x{world_size}")
    if changed:
        raise ValueError("--resume continues the same run (its data order and lr schedule), but these settings "
                         "changed: " + "; ".join(changed))
    if now.steps < saved_step:
        raise ValueError(f"--steps should be at least the checkpoint's step ({saved_step}) to resume it. "
                         f"Received: --steps {now.steps}")
    announced = [f"--{_flag(n)} {getattr(saved, n)!r} -> {getattr(now, n)!r}" for n in RESUME_ANNOUNCED
                 if getattr(saved, n) != getattr(now, n)]
    if not announced:
        return now, None
    after = f"; steps {now.decay_steps}-{now.steps} run at --min-lr {now.min_lr}" if now.steps > now.decay_steps \
        else ""
    return now, (f"--resume from step {saved_step} with changed settings: {'; '.join(announced)} (the lr schedule "
                 f"is the saved run's: warmup {now.warmup_steps}, cosine to --min-lr at step {now.decay_steps}"
                 f"{after})")


@dataclass
class TrainData:
    """What a loop reads: the train blocks, the validation blocks (or None) and the tokenizer saved with every
    checkpoint."""

    train: Any
    val: Any
    tokenizer: Any


def load_train_data(cfg: TrainConfig, tokenizer, *, progress: bool = False) -> TrainData:
    """Tokenize (or find cached) `cfg.data` and `cfg.val_data`, split off `val_fraction` when there is no
    `val_data`, and check each split holds at least one block. DataError (one line) for unusable data."""
    from . import data

    train_tokens = data.load_tokens(data.prepare_tokens(cfg.data, tokenizer, progress=progress))
    if cfg.val_data:
        val_tokens = data.load_tokens(data.prepare_tokens(cfg.val_data, tokenizer, what="--val-data",
                                                          progress=progress))
        train_split, val_split = data.Split(train_tokens, 0, len(train_tokens)), \
            data.Split(val_tokens, 0, len(val_tokens))
    else:
        train_split, val_split = data.split_tokens(train_tokens, cfg.val_fraction)
    train = data.TokenBlocks(train_split, cfg.block_size, name="train")
    val = None if val_split is None else data.TokenBlocks(val_split, cfg.block_size, name="validation")
    return TrainData(train, val, tokenizer)


# ------------------------------------------------------------------------------------------------- model
def pretraining_config(cfg: TrainConfig):
    """The preset `cfg.config` with the shape flags applied, and no dropout unless asked (nanoGPT)."""
    from .config import GPT2Config

    config = GPT2Config.from_pretrained(cfg.config)
    shape = {k: getattr(cfg, k) for k in ("n_layer", "n_embd", "n_head", "n_positions") if getattr(cfg, k)}
    return dataclasses.replace(config, **shape, **_dropouts(cfg.dropout or 0.0))


def dropout_overrides(cfg: TrainConfig) -> dict[str, float]:
    """The config fields a fine-tune overrides: --dropout for all three dropouts, else none (the checkpoint's)."""
    return {} if cfg.dropout is None else _dropouts(cfg.dropout)


def _dropouts(p: float) -> dict[str, float]:
    return dict(resid_pdrop=p, embd_pdrop=p, attn_pdrop=p)


# ------------------------------------------------------------------------------------------------ schedule
def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup to `learning_rate` over `warmup_steps`, then cosine decay to `min_lr` at `decay_steps`
    (default: `steps`), then `min_lr` (nanoGPT's schedule and its lr_decay_iters; step counts from 0)."""
    end = cfg.decay_steps or cfg.steps
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    if step >= end:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, end - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def decays(name: str) -> bool:
    """Whether parameter `name` (HF names: transformer.h.0.attn.c_attn.weight ...) gets weight decay: the
    matrices of the blocks and heads do; biases, LayerNorms (ln_1, ln_2, ln_f) and the embeddings (wte, wpe,
    and the lm_head tied to wte) do not."""
    parts = name.split(".")
    if parts[-1] == "bias":
        return False
    return not any(part.startswith("ln_") or part in ("wte", "wpe") for part in parts)


def micro_step_index(cfg: TrainConfig, step: int, micro: int) -> int:
    """The data position of micro-step `micro` of optimizer step `step`: what TokenBlocks.batch is given."""
    return step * cfg.grad_accum + micro


def rank_rows(batch_size: int, rank: int) -> slice:
    """The rows of a micro-step's global batch that process `rank` reads."""
    return slice(rank * batch_size, (rank + 1) * batch_size)


def step_seed(cfg: TrainConfig, step: int, rank: int) -> int:
    """The framework RNG seed of one step on one rank (dropout): a function of the step, so a resumed run draws
    what an uninterrupted one does, with no RNG state to carry."""
    return (cfg.seed * 1_000_003 + step * 8191 + rank) % (2 ** 63)


# --------------------------------------------------------------------------------------------------- log
class TrainLog:
    """The JSON-lines log of a run (one object per line: {"step", "train_loss", "lr", ...} or {"step",
    "val_loss"}) beside its checkpoint. On resume, lines after the resumed step are dropped."""

    def __init__(self, out_dir: str, *, resume_step: int | None = None, enabled: bool = True):
        self.path = os.path.join(out_dir, LOG_NAME)
        self.enabled = enabled
        self._file = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        kept = []
        if resume_step is not None and os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= resume_step]
        atomic_write_text(self.path, "".join(kept))
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curve(log_path: str, png_path: str, *, title: str = "gpt2-train") -> str | None:
    """Draw train (and val) loss against step from the JSON-lines log into `png_path` (atomically); returns the
    path, or None when matplotlib is not installed (pip install gpt2[train]) or the log is empty."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no loss curve (pip install 'gpt2[train]')")
        return None
    records = read_log(log_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from .io_utils import atomic_path

    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png_path


# ------------------------------------------------------------------------------------------- checkpoints
def write_checkpoint(out_dir: str, write_files: Callable[[str], None], state: dict[str, Any]) -> None:
    """Replace the checkpoint in `out_dir` as a whole: `write_files(folder)` writes the model files (HF layout)
    and the backend's optimizer state into a fresh folder beside `out_dir`, the training state is added, the
    files of `out_dir` that are not part of the checkpoint (the log, the loss curve, your own) move across,
    and two renames swap the folders. A reader never sees a half-written checkpoint; a crash between the two
    renames leaves `<out_dir>.previous`, which `read_state` puts back."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    previous = out_dir + ".previous"
    try:
        write_files(staging)
        atomic_write_text(os.path.join(staging, STATE_NAME),
                          json.dumps({"version": STATE_VERSION, **state}, indent=1) + "\n")
        if os.path.isdir(out_dir):
            written = set(os.listdir(staging))
            for entry in os.listdir(out_dir):
                if entry not in written:
                    os.rename(os.path.join(out_dir, entry), os.path.join(staging, entry))
            if os.path.exists(previous):
                shutil.rmtree(previous)
            os.rename(out_dir, previous)
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def read_state(out_dir: str) -> dict[str, Any]:
    """The training state of the checkpoint in `out_dir` (ValueError naming the folder when there is none)."""
    out_dir = os.path.abspath(out_dir)
    previous = out_dir + ".previous"
    if not os.path.isdir(out_dir) and os.path.isdir(previous):
        os.rename(previous, out_dir)  # a swap cut short between its two renames
    path = os.path.join(out_dir, STATE_NAME)
    if not os.path.isfile(path):
        raise ValueError(f"--resume needs a checkpoint written by gpt2-train: {path} not found. "
                         f"Received: --out {out_dir}")
    state = read_json_object(path)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: training state version {state.get('version')!r}, expected {STATE_VERSION}")
    return state


def make_state(cfg: TrainConfig, *, step: int, tokens: int, world_size: int, elapsed: float,
               val_loss: float | None, backend_files: dict[str, str]) -> dict[str, Any]:
    """The training state saved beside the weights: the step to continue from (the data position: blocks are a
    function of seed and step), tokens seen, the run's settings, and the backend's own files (optimizer)."""
    return {"step": step, "tokens": tokens, "world_size": world_size, "elapsed_seconds": round(elapsed, 3),
            "val_loss": val_loss, "rng": {"scheme": "seeded per step", "seed": cfg.seed},
            "backend": cfg.backend, "files": backend_files, "config": cfg.to_json()}


# ------------------------------------------------------------------------------------------- stop signal
class StopSignal:
    """Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the current step (it then writes a checkpoint);
    a second Ctrl-C stops at once. Installed only in the main thread, restored on exit."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        logger.warning("%s received: finishing this step and writing a checkpoint (Ctrl-C again to abort)",
                       self.requested)

    def __enter__(self) -> "StopSignal":
        with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Throughput:
    """Tokens per second over the last `window` steps (the first step, with its warm-up, is left out)."""

    def __init__(self, window: int = 20):
        self.window = window
        self._marks: list[tuple[float, int]] = []

    def update(self, tokens: int) -> float:
        self._marks.append((time.perf_counter(), tokens))
        self._marks = self._marks[-(self.window + 1):]
        if len(self._marks) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / max(t1 - t0, 1e-9)


def prepare_run(cfg: TrainConfig, world, load_data, *, resume: bool):
    """(cfg, data, state) for a run: the main rank loads (and may tokenize) the data first, the others after it
    (they find the cache); with `resume`, the saved state, refused when the settings or the backend changed.
    The cfg returned has `decay_steps` resolved (saved with the checkpoint, so a resume keeps the schedule)."""
    if world.main:
        data = load_data()
        world.barrier()
    else:
        world.barrier()
        data = load_data()
    state = read_state(cfg.out_dir) if resume else None
    if state is None:
        return dataclasses.replace(cfg, decay_steps=cfg.decay_steps or cfg.steps), data, state
    if state.get("backend") != cfg.backend:
        raise ValueError(f"--resume continues a run with its own backend's optimizer state: this checkpoint "
                         f"was written by --backend {state.get('backend')}. Received: --backend {cfg.backend}")
    cfg, note = check_resumable(TrainConfig.from_json(state["config"]), cfg, world.size, state["world_size"],
                                state["step"])
    if note and world.main:
        logger.warning(note)
    return cfg, data, state


def launcher_rank() -> int:
    """This process's rank as its launcher set it: torchrun's RANK, or TF_CONFIG's task index (tf.distribute's
    workers); 0 for a single process. Only rank 0 prints the summary and shows progress."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return int(task.get("index", 0))


# -------------------------------------------------------------------------------------------------- loop
def run_steps(cfg: TrainConfig, world, data, state: dict[str, Any] | None, *, progress: bool,
              train_one: Callable[[int, float], float], evaluate: Callable[[], float],
              save: Callable[[dict[str, Any]], None], backend_files: dict[str, str]) -> dict[str, Any]:
    """The training loop both backends run, from the first (or resumed) step to the end or a stop signal.

    A backend gives three functions: `train_one(step, lr)` runs one optimizer step (its micro-batches, the
    gradient average across `world`, clipping, the update) and returns the mean loss; `evaluate()` returns the
    validation loss (called on the main rank only); `save(state)` writes the checkpoint with the training state
    (main rank only). Everything else — the schedule, logging, the progress bar, when to evaluate and save, and
    stopping on Ctrl-C/SIGTERM on every rank at once — lives here, once.
    `world` has .main, .size, .barrier() and .any(flag). Returns step, tokens, train_loss, val_loss,
    elapsed_seconds, stopped_by."""
    from tqdm.auto import tqdm

    start = state["step"] if state else 0
    tokens = state["tokens"] if state else 0
    elapsed0 = state["elapsed_seconds"] if state else 0.0
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * world.size
    log = TrainLog(cfg.out_dir, resume_step=start if state else None, enabled=world.main)
    meter = Throughput()
    bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", disable=not (progress and world.main),
               dynamic_ncols=True)
    t0 = time.perf_counter()
    summary = {"step": start, "tokens": tokens, "train_loss": None, "val_loss": state.get("val_loss") if state
               else None, "stopped_by": None}

    def checkpoint(step):
        if world.main:
            save(make_state(cfg, step=step, tokens=tokens, world_size=world.size,
                            elapsed=elapsed0 + time.perf_counter() - t0, val_loss=summary["val_loss"],
                            backend_files=backend_files))
        world.barrier()

    step = start
    meter.update(tokens)
    with StopSignal() as stop:
        while step < cfg.steps:
            lr = learning_rate(cfg, step)
            loss = train_one(step, lr)
            step += 1
            tokens += tokens_per_step
            rate = meter.update(tokens)
            summary.update(step=step, tokens=tokens, train_loss=loss)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.write(step=step, train_loss=round(loss, 6), lr=lr, tokens=tokens, tokens_per_s=round(rate, 1),
                          elapsed_s=round(elapsed0 + time.perf_counter() - t0, 3))
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}", refresh=False)
            bar.update(1)
            if data.val is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
                if world.main:
                    summary["val_loss"] = evaluate()
                    log.write(step=step, val_loss=round(summary["val_loss"], 6))
                world.barrier()
            if world.any(stop.requested is not None):
                summary["stopped_by"] = stop.requested or "another rank"
                break
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                checkpoint(step)
        bar.close()
        checkpoint(step)
    log.close()
    if world.main:
        plot_loss_curve(log.path, os.path.join(cfg.out_dir, CURVE_NAME))
    summary["elapsed_seconds"] = elapsed0 + time.perf_counter() - t0
    return summary
