"""GPT-2's trunk in Keras 3 on TensorFlow: the leaf layers, Attention, MLP, Block and TFGPT2Model. Beside it, each
importable from here as before: the KV cache (cache.py), TFGPT2Model's input checks (input_checks.py) and the heads
(heads.py).

Module attribute names equal the transformers names and every weight has its PyTorch shape (Conv1D (in, out),
Linear (out, in)), so the canonical weight names and shapes equal those of transformers' GPT-2 classes and loading
a checkpoint is a copy plus a check (see loading.py). This file mirrors gpt2_pt/modeling.py block by block; what
differs is the framework: Keras layers create their weights in __init__ (a model is built as soon as it exists),
the forward runs eagerly, under tf.function and under tf.function(jit_compile=True), and the heads train with
`model.compile(optimizer)` + `model.fit` on their own loss.

    >>> import tensorflow as tf
    >>> from gpt2_tf import GPT2Config, TFGPT2LMHeadModel
    >>> model = TFGPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2))
    >>> out = model(tf.constant([[464, 2068]]))
    >>> out.logits.shape, len(out.past_key_values)
    (TensorShape([1, 2, 50257]), 2)
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from gpt2_core.config import GPT2Config
from gpt2_core.outputs import BaseModelOutputWithPast, ModelOutput

from .cache import KVCache
from .input_checks import check_inputs, known
from .tf_internals import in_xla_compilation, optimization_barrier

# transformers' ACT2FN, name for name. The four tanh approximations of GELU are one function (they differ only in
# how the constant sqrt(2/pi) is spelled), so they share one formula.
ACT2FN = {
    "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_accurate": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: tf.nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "mish": lambda x: x * tf.tanh(tf.nn.softplus(x)),
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "linear": lambda x: x,
}


# ----------------------------------------------------------------------------------------------- the model
# Keras has no layers with torch's weight layouts and names, so the four leaf layers are ours. Each creates its
# weights in __init__ with transformers' initialisation: N(0, initializer_range), zero biases, unit LayerNorm.

def _normal(std: float):
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)


class Conv1D(keras.layers.Layer):
    """A linear layer whose weight is stored (in, out), as GPT-2 checkpoints store it: y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int, std: float, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(n_in, n_out), initializer=_normal(std), name="weight")
        self.bias = self.add_weight(shape=(n_out,), initializer="zeros", name="bias")
        self.built = True

    def call(self, x):
        # One 2-D GEMM: TF runs (B, T, C) @ (C, N) as a batched matmul over a broadcast kernel, which is slower;
        # bias_add (not +) lets TF's CPU graph rewrite fuse it into the GEMM.
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, (-1, shape[-1])), self.weight)
        y = tf.nn.bias_add(_unfused_under_threaded_xla(y), self.bias)
        return tf.reshape(y, tf.concat([shape[:-1], [self.weight.shape[1]]], axis=0))


def _unfused_under_threaded_xla(y):
    """`y`, kept from fusing with what follows when XLA compiles a one-row product for more than one thread. XLA
    CPU fuses a one-row product and its bias add into one kernel of its own, which runs on one thread; the bare
    product goes to Eigen, which uses them all. Decoding gpt2-small at batch 1 with 2 threads: 35 tok/s unfused
    against 30.6 fused (bench/bench_tf_generate.py --threads 2). With one thread the fused kernel is the faster
    (~15% on the products alone), so it stays; products of more rows go to Eigen either way."""
    if y.shape[0] != 1 or not in_xla_compilation() or intra_op_threads() == 1:
        return y
    return optimization_barrier(y)


def intra_op_threads() -> int:
    """The threads TensorFlow's kernels use: as configured, or by default one per CPU this process may run on."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class Linear(keras.layers.Layer):
    """torch's nn.Linear: weight (out, in), y = x @ W.T (+ b). `weight` given: share it (a tied LM head)."""

    def __init__(self, n_in: int, n_out: int, std: float, *, use_bias: bool = True, weight=None, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight if weight is not None else self.add_weight(
            shape=(n_out, n_in), initializer=_normal(std), name="weight")
        self.bias = self.add_weight(shape=(n_out,), initializer="zeros", name="bias") if use_bias else None
        self.built = True

    def call(self, x):
        # One 2-D GEMM, as in Conv1D: under XLA the batched (B, T, C) @ W.T made a decoding step ~10% slower
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, (-1, shape[-1])), self.weight, transpose_b=True)
        y = y if self.bias is None else y + self.bias
        return tf.reshape(y, tf.concat([shape[:-1], [self.weight.shape[0]]], axis=0))


class Embedding(keras.layers.Layer):
    def __init__(self, num_embeddings: int, dim: int, std: float, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(num_embeddings, dim), initializer=_normal(std), name="weight")
        self.built = True

    def call(self, ids):
        return tf.gather(self.weight, ids)


class LayerNorm(keras.layers.Layer):
    def __init__(self, dim: int, eps: float, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps
        self.weight = self.add_weight(shape=(dim,), initializer="ones", name="weight")
        self.bias = self.add_weight(shape=(dim,), initializer="zeros", name="bias")
        self.built = True

    def call(self, x):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self.eps) * self.weight + self.bias


class Attention(keras.layers.Layer):
    def __init__(self, config: GPT2Config, layer_idx: int, **kwargs):
        super().__init__(**kwargs)
        self.n_head, self.head_dim, self.layer_idx = config.n_head, config.head_dim, layer_idx
        std = config.initializer_range
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd, std, name="c_attn")
        # the residual projections start smaller: std / sqrt(2 * n_layer) (GPT-2 paper, transformers)
        self.c_proj = Conv1D(config.n_embd, config.n_embd, std / math.sqrt(2 * config.n_layer), name="c_proj")
        self.attn_dropout = keras.layers.Dropout(config.attn_pdrop)
        self.resid_dropout = keras.layers.Dropout(config.resid_pdrop)
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1
        self.upcast = config.reorder_and_upcast_attn
        self.built = True

    # `allowed`, not `mask`: Keras 3 reserves a call argument named `mask` for its own masking protocol.
    def call(self, x, allowed, layer_past=None, cache=None, output_attentions=False, training=False):
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        qkv = tf.reshape(self.c_attn(x), (B, T, 3, self.n_head, self.head_dim))
        q, k, v = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))  # each (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nh, max_length, hd): the caller masks the unfilled
        elif layer_past is not None:
            k = tf.concat((layer_past[0], k), axis=2)  # (B, nh, past + T, hd)
            v = tf.concat((layer_past[1], v), axis=2)
        present = (k, v)

        y, weights = self._explicit_attention(q, k, v, allowed, training)
        y = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (B, T, C))  # (B, T, nh * hd): heads side by side again
        return self.resid_dropout(self.c_proj(y), training=training), present, (weights if output_attentions
                                                                                  else None)

    def _explicit_attention(self, q, k, v, mask, training):
        # No fused attention kernel to call in TF: this is gpt2_pt's explicit path, always.
        T, S = tf.shape(q)[-2], tf.shape(k)[-2]
        if mask is None:
            mask = causal_mask(T, S)
        if self.upcast:
            q, k = tf.cast(q, tf.float32), tf.cast(k, tf.float32)
        scores = tf.matmul(q, k, transpose_b=True) * self.scale  # (B, nh, T, S)
        # The dtype's minimum, not -inf: a query that may see no key (a left-pad position) then gets finite
        # weights, which are zeroed below as SDPA zeroes them, and no NaN reaches the gradients.
        weights = tf.nn.softmax(tf.where(mask, scores, scores.dtype.min), axis=-1)
        if mask.shape.rank == 4:  # padding: some queries may see no key (the causal mask alone never does that)
            weights = tf.where(mask, weights, 0.0)
        weights = self.attn_dropout(tf.cast(weights, v.dtype), training=training)
        return tf.matmul(weights, v), weights


class MLP(keras.layers.Layer):
    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(**kwargs)
        std = config.initializer_range
        self.c_fc = Conv1D(config.n_embd, config.inner_dim, std, name="c_fc")
        self.c_proj = Conv1D(config.inner_dim, config.n_embd, std / math.sqrt(2 * config.n_layer), name="c_proj")
        self.act = ACT2FN[config.activation_function]
        self.dropout = keras.layers.Dropout(config.resid_pdrop)
        self.built = True

    def call(self, x, training=False):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))), training=training)


class Block(keras.layers.Layer):
    def __init__(self, config: GPT2Config, layer_idx: int, **kwargs):
        super().__init__(**kwargs)
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon, name="ln_1")
        self.attn = Attention(config, layer_idx, name="attn")
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon, name="ln_2")
        self.mlp = MLP(config, name="mlp")
        self.built = True

    def call(self, x, allowed, layer_past=None, cache=None, output_attentions=False, training=False):
        a, present, weights = self.attn(self.ln_1(x), allowed, layer_past, cache=cache,
                                        output_attentions=output_attentions, training=training)
        x = x + a
        x = x + self.mlp(self.ln_2(x), training=training)
        return x, present, weights


def causal_mask(T, S, past=None) -> tf.Tensor:
    """(T, S) booleans: query i (at position past + i, past = S - T unless given) may see keys 0 .. past + i."""
    past = S - T if past is None else past
    # past + range(T), not range(past, past + T): T new queries however `past` is known, a static shape under XLA
    return (past + tf.range(T))[:, None] >= tf.range(S)[None, :]


def attention_mask_for(attention_mask, T, S, past=None) -> tf.Tensor | None:
    """The boolean mask of the keys each query may see: (T, S), (B, 1, T, S), or None for one new token with no
    padding and no preallocated cache, which needs none. (gpt2_pt also skips it for an unpadded prompt, which
    SDPA masks itself.) `past` given (a KVCache): S is the buffer length and the keys from past + T on are
    masked; `attention_mask` may then be shorter than S (batch, past + T)."""
    if attention_mask is None:
        return None if past is None and isinstance(T, int) and T == 1 else causal_mask(T, S, past)
    attention_mask = tf.cast(attention_mask, tf.bool)
    if past is not None and attention_mask.shape[-1] != S:  # (B, past + T): pad to the buffer, statically S wide
        attention_mask = tf.pad(attention_mask, [[0, 0], [0, S - tf.shape(attention_mask)[-1]]])
        attention_mask = tf.reshape(attention_mask, (-1, S))
    return tf.logical_and(causal_mask(T, S, past), attention_mask[:, None, None, :])  # (B, 1, T, S)


def unpack_inputs(call):
    """Let `call` take the whole batch as a dict in its first argument, as Keras' fit/evaluate/predict pass it."""

    @functools.wraps(call)  # Keras reads the wrapped signature (its `training` argument, argument names)
    def wrapper(self, input_ids=None, *args, **kwargs):
        if isinstance(input_ids, Mapping):
            both = sorted(k for k in input_ids if kwargs.get(k) is not None)
            if args or both:
                raise ValueError("Pass the inputs either in the dict or as arguments. Received both for: "
                                 f"{both or 'positional arguments'}")
            kwargs = {**kwargs, **input_ids}
            input_ids = kwargs.pop("input_ids", None)
        return call(self, input_ids, *args, **kwargs)

    return wrapper


class TFGPT2PreTrainedModel(keras.Model):
    """What every class shares: the config, files (from_pretrained / save_pretrained), and Keras training on the
    model's own loss: `model.compile(optimizer=...)` with no loss, then `model.fit` on dicts holding `labels`."""

    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, GPT2Config):
            raise ValueError(f"`config` should be a gpt2_core GPT2Config. Received: {type(config).__name__}")
        if config.add_cross_attention:
            raise ValueError("add_cross_attention=True is not supported. Received: add_cross_attention=True")
        self.config = config

    def __call__(self, *args, **kwargs):
        # model([[464, 2068]]) and model(ids, past) work, as in transformers. Keras takes only tensors positionally,
        # so the first input becomes one (a list, an array, or a dict of them as fit passes) and the others go in
        # by name.
        if not args:
            return super().__call__(**kwargs)
        names = list(inspect.signature(self.call).parameters)[1:len(args)] if len(args) > 1 else []
        for name, value in zip(names, args[1:]):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got multiple values for argument {name!r}")
            kwargs[name] = value
        return super().__call__(_as_tensors(args[0]), **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keras.saving.register_keras_serializable(package="gpt2_tf")(cls)  # so load_model finds the class by name

    def get_config(self) -> dict:
        """What `model.save("model.keras")` records next to the weights; keras.models.load_model rebuilds from it."""
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        return cls(GPT2Config.from_dict(config.pop("config")), **config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Build this class from a directory or hub name; see gpt2_tf.loading.from_pretrained."""
        from .loading import from_pretrained

        return from_pretrained(pretrained_model_name_or_path, model_class=cls, **kwargs)

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Write config.json and tf_model.h5 that transformers-TF loads; see gpt2_tf.loading.save_pretrained."""
        from .loading import save_pretrained

        save_pretrained(self, save_directory, **kwargs)

    def num_parameters(self) -> int:
        return sum(int(tf.size(w)) for w in self.weights)  # Keras lists a shared (tied) weight once

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, ModelOutput):
            if self.loss is None:  # compiled without a loss: train on the model's own (both, for DoubleHeads)
                own = [loss for loss in (y_pred.loss, getattr(y_pred, "mc_loss", None)) if loss is not None]
                if not own:
                    raise ValueError("compile() was given no loss, and the batch has no labels for the model's own "
                                     f"loss. Received: a batch without labels for {type(self).__name__}")
                return tf.add_n(own + list(self.losses))
            y_pred = y_pred.to_tuple()[0 if y_pred.loss is None else 1]  # a compiled loss sees the logits
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def predict_step(self, data):
        out = self(data[0] if isinstance(data, tuple) else data, training=False)
        return {name: out[name] for name in out.keys() if name != "past_key_values"}


def _as_tensors(value):
    """A list or numpy array as a tensor, also as the values of a dict; anything else as it is."""
    if isinstance(value, Mapping):
        return {k: _as_tensors(v) for k, v in value.items()}
    return tf.convert_to_tensor(value) if isinstance(value, (list, np.ndarray)) else value


class TFGPT2Model(TFGPT2PreTrainedModel):
    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        std = config.initializer_range
        self.wte = Embedding(config.vocab_size, config.n_embd, std, name="wte")
        self.wpe = Embedding(config.n_positions, config.n_embd, std, name="wpe")
        self.drop = keras.layers.Dropout(config.embd_pdrop)
        self.h = [Block(config, i, name=f"h_{i}") for i in range(config.n_layer)]
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon, name="ln_f")
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        # Leading dimensions (the choices of TFGPT2DoubleHeadsModel) fold into the batch: (B, T).
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`. Received: "
                             f"{'both' if input_ids is not None else 'neither'}")
        input_ids, token_type_ids, position_ids, attention_mask = (
            None if t is None else tf.convert_to_tensor(t)
            for t in (input_ids, token_type_ids, position_ids, attention_mask))
        inputs_embeds = None if inputs_embeds is None else tf.convert_to_tensor(inputs_embeds, self.compute_dtype)
        lead_shape = tf.shape(input_ids if input_ids is not None else inputs_embeds[..., 0])[:-1]
        input_ids, token_type_ids, position_ids, attention_mask = (
            None if t is None else _fold(t) for t in (input_ids, token_type_ids, position_ids, attention_mask))
        if inputs_embeds is not None and inputs_embeds.shape.rank is not None and inputs_embeds.shape.rank > 3:
            inputs_embeds = tf.reshape(inputs_embeds, tf.concat([[-1], tf.shape(inputs_embeds)[-2:]], axis=0))
        cache = past_key_values if isinstance(past_key_values, KVCache) else None
        layer_pasts = past_key_values if cache is None and past_key_values is not None else (None,) * len(self.h)
        B, T, P, checks = check_inputs(self.config, input_ids, inputs_embeds, past_key_values, attention_mask,
                                        token_type_ids, position_ids)
        if checks:  # graph mode: the lookups wait for the checks, so a bad id fails with our message, not gather's
            with tf.control_dependencies(checks):
                input_ids, token_type_ids, position_ids = (
                    None if t is None else tf.identity(t) for t in (input_ids, token_type_ids, position_ids))
                P, T = (v if known(v) else tf.identity(v) for v in (P, T))

        if position_ids is None:
            if attention_mask is None:
                position_ids = (P + tf.range(T))[None]  # (1, T)
            else:  # count only the tokens the mask keeps, so left-padded rows start at position 0
                counted = tf.maximum(tf.cumsum(tf.cast(attention_mask, tf.int32), axis=-1) - 1, 0)
                position_ids = tf.slice(counted, [0, P], [-1, T])  # (B, T)
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x, training=training)  # (B, T, C)
        if cache is None:
            mask = attention_mask_for(attention_mask, T, P + T)
        else:
            mask = attention_mask_for(attention_mask, T, cache.max_length, P)

        presents, all_hidden, all_weights = [], [], []
        for block, layer_past in zip(self.h, layer_pasts):
            if output_hidden_states:
                all_hidden.append(x)
            x, present, weights = block(x, mask, layer_past, cache=cache, output_attentions=output_attentions,
                                        training=training)
            presents.append(present)
            all_weights.append(weights)
        x = tf.reshape(self.ln_f(x), tf.concat([lead_shape, tf.shape(x)[1:]], axis=0))  # (*lead, T, C)
        if output_hidden_states:
            all_hidden.append(x)  # as in transformers, only this last one gets the leading dimensions back

        if cache is not None:
            cache.length.assign_add(T)
            past = cache
        else:
            past = tuple(presents) if use_cache else None
        out = BaseModelOutputWithPast(
            last_hidden_state=x, past_key_values=past,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_weights) if output_attentions else None)
        return out if return_dict is not False else out.to_tuple()


def _fold(t):
    """(*lead, T) -> (prod(lead), T); a 2-D tensor stays as it is (and keeps its static shape)."""
    return t if t.shape.rank == 2 else tf.reshape(t, (-1, tf.shape(t)[-1]))


HEADS = ("TFGPT2LMHeadModel", "TFGPT2DoubleHeadsModel", "TFGPT2ForSequenceClassification",
         "TFGPT2ForTokenClassification", "TFGPT2ForQuestionAnswering")


def __getattr__(name):
    """The heads moved to heads.py; `from gpt2_tf.modeling import TFGPT2LMHeadModel` keeps working (imported on
    first use, as heads.py imports this module)."""
    if name in HEADS:
        from . import heads

        return getattr(heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
