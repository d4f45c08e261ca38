"""gpt2-train's TensorFlow loop, read top to bottom (nanoGPT's train.py is the model): processes, model, optimizer,
then steps of grad-accumulated AdamW with the core's schedule, evaluation and checkpoints. Everything that is
not a framework call (data, schedule, which parameters decay, log, checkpoint layout, stop signal) is
gpt2_core.training / gpt2_core.data, which gpt2_pt.training shares.

Distributed: tf.distribute. TF_CONFIG naming two or more workers starts MultiWorkerMirroredStrategy (one process
per worker, on one host or many); one process with several GPUs uses MirroredStrategy. Each replica reads its own
rows of every step's global batch (`--batch-size` rows per replica); only worker 0 writes files.

    >>> from gpt2_core.training import TrainConfig
    >>> from gpt2_tf.training import train
    >>> summary = train(TrainConfig(data=["corpus.txt"], steps=100, backend="tf"), load_data)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from gpt2_core import training as core
from gpt2_core.hardware import has_bfloat16

from .loading import state_variables
from .heads import TFGPT2LMHeadModel, cross_entropy

logger = logging.getLogger(__name__)

OPTIMIZER_NAME = "optimizer.npz"
# torch.optim.AdamW's default epsilon, and the 1e-6 torch.nn.utils.clip_grad_norm_ adds to the norm
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6


# --------------------------------------------------------------------------------------------- processes
@dataclass
class World:
    """This process's place in the run: its worker index, the replicas of all workers, and the strategy."""

    rank: int = 0
    size: int = 1
    strategy: tf.distribute.Strategy | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            self.any(False)  # a collective every worker must reach

    def any(self, flag: bool) -> bool:
        """True on every worker when `flag` is true on one (a stop signal reaching one process stops all)."""
        if self.size == 1:
            return flag
        value = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(1.0 if flag else 0.0))
        return bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) > 0)


def setup_world() -> World:
    """The strategy TF_CONFIG and the devices describe: MultiWorkerMirroredStrategy for two or more workers,
    MirroredStrategy for several GPUs in this process, else TensorFlow's default (one device)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        strategy, rank = tf.distribute.MultiWorkerMirroredStrategy(), core.launcher_rank()
    elif len(tf.config.list_physical_devices("GPU")) > 1:
        strategy, rank = tf.distribute.MirroredStrategy(), 0
    else:
        strategy, rank = tf.distribute.get_strategy(), 0
    return World(rank, strategy.num_replicas_in_sync, strategy)


# ------------------------------------------------------------------------------------------------- model
def build_model(cfg: core.TrainConfig, resume_from: str | None, policy: str) -> TFGPT2LMHeadModel:
    """The model to train: the checkpoint being resumed, the one being fine-tuned, or a new one with GPT-2's
    initialisation (seeded, so every worker starts from the same weights). Call under the strategy's scope."""
    with dtype_policy_scope(policy):
        if resume_from is not None:
            return TFGPT2LMHeadModel.from_pretrained(resume_from, dtype=policy)
        if cfg.model is not None:
            return TFGPT2LMHeadModel.from_pretrained(cfg.model, dtype=policy, **core.dropout_overrides(cfg))
        keras.utils.set_random_seed(cfg.seed)
        return TFGPT2LMHeadModel(core.pretraining_config(cfg), dtype=policy)


@contextlib.contextmanager
def dtype_policy_scope(policy: str):
    """Keras's global dtype policy set to `policy` while the model is built: a layer built without a dtype takes
    the global policy, not its parent's, so `dtype=` on the model alone would leave every sublayer in float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class AdamW:
    """torch.optim.AdamW's update, written out: keras.optimizers.AdamW adds epsilon to sqrt(v) before v's bias
    correction (torch: sqrt(v / (1 - beta2^t)) + eps) and folds both corrections into the step size, so the two
    drift apart wherever sqrt(v) is near eps. Same rounding order as torch's single-tensor CPU path (gpt2_pt runs
    torch's fused kernel, the same formula vectorised: the parity tests bound the difference): decay
    p *= 1 - lr*wd, m.lerp_(g, 1 - beta1), v = beta2*v + (1 - beta2)*g^2, p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
    Create under the strategy's scope; `apply` runs in cross-replica context on the reduced gradients."""

    def __init__(self, named: dict[str, tf.Variable], cfg: core.TrainConfig):
        self.names = list(named)
        self.variables = list(named.values())
        self.decay = [cfg.weight_decay if core.decays(name) else 0.0 for name in self.names]
        self.beta1, self.beta2 = cfg.beta1, cfg.beta2
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.lr = tf.Variable(cfg.learning_rate, dtype=tf.float64, trainable=False)

    def apply(self, grads) -> None:
        t = tf.cast(self.step.assign_add(1), tf.float64)
        lr = self.lr.read_value()  # float64, as torch computes its scalars in Python floats
        step_size = tf.cast(lr / (1.0 - self.beta1 ** t), tf.float32)
        bc2_sqrt = tf.cast(tf.sqrt(1.0 - self.beta2 ** t), tf.float32)
        for p, g, m, v, wd in zip(self.variables, grads, self.m, self.v, self.decay):
            if wd:
                p.assign(p * tf.cast(1.0 - lr * wd, tf.float32))
            m.assign(m + (1.0 - self.beta1) * (g - m))
            v.assign(v * self.beta2 + (1.0 - self.beta2) * g * g)
            p.assign_sub(step_size * (m / (tf.sqrt(v) / bc2_sqrt + ADAM_EPS)))

    def state_dict(self) -> dict[str, np.ndarray]:
        """m and v under the weights' canonical names (the HF ones), and the step count."""
        out = {"step": np.asarray(self.step.numpy())}
        for name, m, v in zip(self.names, self.m, self.v):
            out[f"m/{name}"], out[f"v/{name}"] = m.numpy(), v.numpy()
        return out

    def load_state_dict(self, state) -> None:
        missing = [f"{k}/{n}" for n in self.names for k in "mv" if f"{k}/{n}" not in state]
        if missing:
            raise ValueError(f"the optimizer state lacks {len(missing)} tensors of this model. Received: state "
                             f"without {missing[:3]}")
        self.step.assign(int(state["step"]))
        for name, m, v in zip(self.names, self.m, self.v):
            m.assign(state[f"m/{name}"])
            v.assign(state[f"v/{name}"])


def make_optimizer(model: TFGPT2LMHeadModel, cfg: core.TrainConfig) -> AdamW:
    """AdamW with decay by the core's rule: decay for the matrices, none for biases, LayerNorms and embeddings
    (a tied weight is listed once, under wte)."""
    named, seen = {}, set()
    for name, variable in state_variables(model).items():
        if variable.trainable and id(variable) not in seen:
            seen.add(id(variable))
            named[name] = variable
    return AdamW(named, cfg)


def dtype_policy(cfg: core.TrainConfig) -> str:
    """mixed_bfloat16 (bf16 compute, float32 weights) when asked, or for `auto` where the hardware computes in
    bf16 (GPUs from Ampere on, CPUs with AVX512-BF16 / AMX); float32 otherwise. Optimizer state stays float32."""
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.dtype == "auto" and gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        use_bf16 = tuple(capability) >= (8, 0)
    else:
        use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and has_bfloat16())
    return "mixed_bfloat16" if use_bf16 else "float32"


def seed_dropout(model: TFGPT2LMHeadModel, seed: int) -> None:
    """Set every Dropout layer's RNG state from `seed` (a function of the step: a resumed run draws what an
    uninterrupted one does). Nothing to do without dropout."""
    for k, layer in enumerate(_dropout_layers(model)):
        layer.seed_generator.state.assign(np.asarray([seed, k], dtype=np.int64))


def _dropout_layers(layer):
    """The Dropout layers (rate > 0) under `layer`, in attribute order (Keras has no public recursive listing)."""
    for name, value in vars(layer).items():
        values = value if isinstance(value, list) else [value]
        for sub in values:
            if name.startswith("_") or not isinstance(sub, keras.layers.Layer):
                continue
            if isinstance(sub, keras.layers.Dropout):
                if sub.rate:
                    yield sub
            else:
                yield from _dropout_layers(sub)


# -------------------------------------------------------------------------------------------------- steps
def make_train_step(model, optimizer: AdamW, cfg: core.TrainConfig, world: World, *, jit_compile: bool = True):
    """The compiled optimizer step: each replica runs `grad_accum` micro-batches (forward + backward, XLA-compiled)
    and sums their gradients, the replicas average them, then clip by global norm (torch's formula) and AdamW.
    Takes the distributed (grad_accum, B, T + 1) blocks; returns the mean loss over every replica's rows."""
    variables = optimizer.variables
    strategy = world.strategy

    @tf.function(jit_compile=jit_compile)
    def micro_step(batch):
        x, y = batch[:, :-1], batch[:, 1:]  # (B, T) inputs and their next tokens
        with tf.GradientTape() as tape:
            loss = cross_entropy(model(x, training=True).logits, y)
            scaled = loss / cfg.grad_accum
        # dense: the embeddings' gradients come as IndexedSlices, which neither add nor all-reduce as one tensor
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(scaled, variables)]

    def replica_step(blocks):
        total, grads = micro_step(blocks[0])
        for micro in range(1, cfg.grad_accum):
            loss, more = micro_step(blocks[micro])
            total += loss
            grads = [g + h for g, h in zip(grads, more)]
        context = tf.distribute.get_replica_context()
        # the replicas average their gradients, as DDP does in backward
        grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        return context.all_reduce(tf.distribute.ReduceOp.MEAN, total / cfg.grad_accum), grads

    @tf.function
    def step(blocks):
        loss, grads = strategy.run(replica_step, args=(blocks,))
        loss = strategy.experimental_local_results(loss)[0]
        grads = [strategy.experimental_local_results(g)[0] for g in grads]
        if cfg.grad_clip > 0:
            norm = tf.linalg.global_norm(grads)
            grads = [g * tf.minimum(cfg.grad_clip / (norm + CLIP_EPS), 1.0) for g in grads]
        optimizer.apply(grads)
        return loss

    return step


def train_step(compiled, blocks, cfg: core.TrainConfig, step: int, world: World) -> float:
    """One optimizer step over `grad_accum` micro-batches; returns the mean loss (all replicas' rows)."""
    def replica_rows(ctx):
        return tf.constant(np.stack([
            blocks.batch(cfg.seed, core.micro_step_index(cfg, step, micro), cfg.batch_size * world.size,
                         take=core.rank_rows(cfg.batch_size, ctx.replica_id_in_sync_group))
            for micro in range(cfg.grad_accum)]))

    return float(compiled(world.strategy.experimental_distribute_values_from_function(replica_rows)))


def make_evaluate(model, *, jit_compile: bool = True):
    @tf.function(jit_compile=jit_compile)
    def summed_loss(batch):
        logits = tf.cast(model(batch[:, :-1], training=False).logits, tf.float32)
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(batch[:, 1:], tf.int32), logits=logits))

    return summed_loss


def evaluate(summed_loss, blocks, cfg: core.TrainConfig) -> float:
    """Mean loss over the first `eval_batches` x `batch_size` consecutive validation blocks (the same blocks
    at every evaluation, so the curve compares like with like)."""
    rows = list(blocks.sequential(limit=cfg.eval_batches * cfg.batch_size))
    total, count = 0.0, 0
    for k in range(0, len(rows), cfg.batch_size):
        batch = np.stack(rows[k:k + cfg.batch_size])
        total += float(summed_loss(tf.constant(batch)))
        count += batch[:, 1:].size
    return total / count


def save_checkpoint(model, optimizer, tokenizer, cfg: core.TrainConfig, state: dict) -> None:
    """Write the HF-layout checkpoint (weights, configs, tokenizer) + optimizer + training state to out_dir:
    model.safetensors (which transformers, gpt2_pt and gpt2_tf load) beside tf_model.h5."""
    def write_files(folder):
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        np.savez(os.path.join(folder, OPTIMIZER_NAME), **optimizer.state_dict())

    core.write_checkpoint(cfg.out_dir, write_files, state)


# ---------------------------------------------------------------------------------------------------- run
def train(cfg: core.TrainConfig, load_data, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or, with `resume`, continue) the training `cfg` describes. `load_data()` returns a
    core.TrainData; worker 0 calls it first (it may tokenize), the others after (they find the cache).
    Returns a summary dict: step, tokens, train_loss, val_loss, elapsed_seconds, stopped_by."""
    world = setup_world()
    return _train(cfg, load_data, world, resume=resume, progress=progress)


def _train(cfg, load_data, world: World, *, resume: bool, progress: bool) -> dict:
    cfg, data, state = core.prepare_run(cfg, world, load_data, resume=resume)
    with world.strategy.scope():
        model = build_model(cfg, cfg.out_dir if state else None, dtype_policy(cfg))
        if cfg.block_size > model.config.n_positions:
            raise ValueError(f"--block-size should be at most the model's n_positions ({model.config.n_positions}). "
                             f"Received: --block-size {cfg.block_size}")
        optimizer = make_optimizer(model, cfg)
    if state is not None:
        with np.load(os.path.join(cfg.out_dir, OPTIMIZER_NAME)) as saved:
            optimizer.load_state_dict(saved)
    compiled = make_train_step(model, optimizer, cfg, world)
    summed_loss = make_evaluate(model)

    def train_one(step, lr):
        optimizer.lr.assign(lr)
        seed_dropout(model, core.step_seed(cfg, step, world.rank))  # dropout: a function of the step
        return train_step(compiled, data.train, cfg, step, world)

    return core.run_steps(
        cfg, world, data, state, progress=progress, train_one=train_one,
        evaluate=lambda: evaluate(summed_loss, data.val, cfg),
        save=lambda st: save_checkpoint(model, optimizer, data.tokenizer, cfg, st),
        backend_files={"optimizer": OPTIMIZER_NAME})
