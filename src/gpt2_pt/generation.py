"""`generate` for the PyTorch GPT-2: the decoding itself is gpt2_core.generation's; this file runs the model.

Two ways to run it, same tokens:
- `_LeanDecoder` (default): a decode-specialised forward written against the module's parameters, with a
  preallocated key/value cache written in place, the LM head on the last position only, and an opt-in int8 path.
  Per generated token it is one pass over the weights with nothing else in the way (GEMVs are the whole cost).
- `_ModelDecoder`: calls the model's own forward with its cache (used when the lean path does not cover a config).

    >>> ids = model.generate(torch.tensor([[464, 3290]]), max_new_tokens=8)              # greedy
    >>> ids = model.generate(prompt, do_sample=True, top_p=0.9, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from gpt2_core.generation import GenerationConfig, decode, prepare

QUANTIZE_MODES = (None, "int8")


def generate(model, input_ids, attention_mask=None, generation_config: GenerationConfig | None = None,
             streamer=None, *, generator: torch.Generator | None = None, quantize: str | None = None,
             **kwargs) -> torch.LongTensor:
    """Prompt followed by new tokens, shape (batch * num_return_sequences, length); see GenerationConfig.

    `kwargs` override fields of `generation_config` (else `model.generation_config`, else the model config's
    special tokens). `generator` makes sampling reproducible without touching the global seed (which works too).
    `quantize="int8"` decodes with int8 weights for the linear layers (faster, logits change slightly).
    """
    config = _base_config(model, generation_config).copy(**kwargs)  # unknown kwargs raise here
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` should be one of {QUANTIZE_MODES}. Received: quantize={quantize!r}")
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else torch.device("cpu")
    ids_np = _to_numpy(input_ids, "input_ids")
    mask_np = None if attention_mask is None else _to_numpy(attention_mask, "attention_mask")
    mc = model.config
    config, ids_np, mask_np, max_length, min_length = prepare(
        config, ids_np, mask_np, n_positions=mc.n_positions, vocab_size=mc.vocab_size)

    rows = ids_np.shape[0] * max(config.num_beams, config.num_return_sequences)
    if _LeanDecoder.supports(model):
        runner = _LeanDecoder(model, rows, max_length, generator=generator, quantize=quantize)
    elif quantize is not None:
        raise ValueError(f"quantize={quantize!r} needs the lean decoding path, which does not support this model "
                         f"({type(model).__name__} with its config)")
    else:
        runner = _ModelDecoder(model, rows, max_length, generator=generator)
    with torch.inference_mode():
        out = decode(runner, config, ids_np, mask_np, max_length=max_length, min_length=min_length,
                     streamer=None if streamer is None else _TorchStreamer(streamer))
    return torch.from_numpy(out).to(device)


def _base_config(model, generation_config):
    if generation_config is not None:
        if not isinstance(generation_config, GenerationConfig):
            raise ValueError("`generation_config` should be a gpt2_core GenerationConfig. "
                             f"Received: {type(generation_config).__name__}")
        return generation_config
    own = getattr(model, "generation_config", None)
    if isinstance(own, GenerationConfig):
        return own
    return GenerationConfig.from_model_config(model.config)


def _to_numpy(x, name):
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() and name == "input_ids":
            raise ValueError(f"`input_ids` should hold integers. Received dtype {x.dtype}")
        return x.detach().cpu().numpy()
    return np.asarray(x)


class _TorchStreamer:
    """Hands the streamer torch tensors, as transformers' generate does."""

    def __init__(self, streamer):
        self.streamer = streamer

    def put(self, value):
        self.streamer.put(torch.from_numpy(value))

    def end(self):
        self.streamer.end()


def _positions(mask: np.ndarray) -> torch.Tensor:
    # positions count the real tokens only, so a left-padded row sees the positions it would see alone
    return torch.from_numpy(np.maximum(np.cumsum(mask, axis=1) - 1, 0))


class _Sampler:
    def __init__(self, generator):
        self.generator = generator

    def uniform(self, shape):
        # drawn from torch's generator so that torch.manual_seed makes sampling reproducible
        return torch.rand(shape, generator=self.generator, dtype=torch.float64).numpy()


class _ModelDecoder(_Sampler):
    """Runs the model's own forward; its cache is the model's (KVCache, tuple or a transformers Cache)."""

    def __init__(self, model, rows, max_length, *, generator):
        super().__init__(generator)
        self.model, self.past = model, None
        self.device = next(model.parameters()).device
        cache_class = _kv_cache_class(model)
        if cache_class is not None:
            dtype = next(model.parameters()).dtype
            self.past = cache_class(model.config, rows, max_length, dtype=dtype, device=self.device)

    def _run(self, ids, mask, positions):
        out = self.model(input_ids=ids.to(self.device), attention_mask=torch.from_numpy(mask).to(self.device),
                         position_ids=positions.to(self.device), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[:, -1].float().cpu().numpy()

    def prefill(self, input_ids, attention_mask):
        return self._run(torch.from_numpy(input_ids), attention_mask, _positions(attention_mask))

    def step(self, tokens, attention_mask):
        return self._run(torch.from_numpy(tokens)[:, None], attention_mask, _positions(attention_mask)[:, -1:])

    def reorder(self, index):
        index = torch.from_numpy(index).to(self.device)
        past = self.past
        if hasattr(past, "reorder"):
            past.reorder(index)
        elif hasattr(past, "reorder_cache"):  # a transformers Cache (tests run the reference model this way)
            past.reorder_cache(index)
        else:
            self.past = tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in past)


def _kv_cache_class(model):
    if not type(model).__module__.startswith("gpt2_pt"):
        return None
    from . import modeling

    return getattr(modeling, "KVCache", None)


# ---------------------------------------------------------------------------------------------------------------
# The lean decoder


def _gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS = {
    "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "gelu_fast": _gelu_tanh, "gelu_accurate": _gelu_tanh,
    "gelu": F.gelu, "gelu_python": F.gelu, "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "swish": F.silu,
    "mish": F.mish, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda x: x,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


class _Linear:
    """y = x @ W + b for a Conv1D weight (in, out) or an nn.Linear weight (out, in), without copying it."""

    def __init__(self, module):
        self.weight, self.bias = module.weight, module.bias
        self.transposed = isinstance(module, torch.nn.Linear)

    def __call__(self, x):  # x: (rows, in)
        if self.transposed:
            return F.linear(x, self.weight, self.bias)
        if self.bias is None:
            return x @ self.weight
        return torch.addmm(self.bias, x, self.weight)

    def out_in(self):
        """The weight as (out, in), float32 (what quantisation wants)."""
        w = self.weight if self.transposed else self.weight.t()
        return w.detach().float().contiguous()


class _Int8Linear:
    """Dynamic int8 linear: weights int8 per output channel, activations quantised per call (fbgemm/onednn)."""

    def __init__(self, linear: _Linear):
        weight = linear.out_in()
        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates quantized tensors in favour of torchao
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def __call__(self, x):
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float(), self.packed, True)
        return y.to(x.dtype)


class _LeanDecoder(_Sampler):
    """GPT-2 forward for generation only: preallocated per-layer key/value buffers (rows, heads, max_length,
    head_dim) written in place, no dropout, no outputs but the last position's logits."""

    @staticmethod
    def supports(model) -> bool:
        body, head = getattr(model, "transformer", None), getattr(model, "lm_head", None)
        c = getattr(model, "config", None)
        if body is None or head is None or c is None:
            return False
        if getattr(c, "add_cross_attention", False) or getattr(c, "reorder_and_upcast_attn", False):
            return False
        if not all(hasattr(body, name) for name in ("wte", "wpe", "h", "ln_f")):
            return False
        block = body.h[0]
        return all(hasattr(block, n) for n in ("ln_1", "attn", "ln_2", "mlp")) and \
            hasattr(block.attn, "c_attn") and hasattr(block.mlp, "c_fc") and \
            (callable(getattr(block.mlp, "act", None)) or c.activation_function in _ACTIVATIONS)

    def __init__(self, model, rows, max_length, *, generator=None, quantize=None):
        super().__init__(generator)
        c = model.config
        body = model.transformer
        self.n_head, self.head_dim = c.n_head, c.n_embd // c.n_head
        self.eps = c.layer_norm_epsilon
        self.wte, self.wpe = body.wte.weight, body.wpe.weight
        self.device, self.dtype = self.wte.device, self.wte.dtype
        self.layers = []
        for index, block in enumerate(body.h):
            scale = 1.0 / math.sqrt(self.head_dim) if c.scale_attn_weights else 1.0
            if c.scale_attn_by_inverse_layer_idx:
                scale /= index + 1
            act = getattr(block.mlp, "act", None)
            self.layers.append(dict(
                ln_1=(block.ln_1.weight, block.ln_1.bias), ln_2=(block.ln_2.weight, block.ln_2.bias),
                c_attn=_Linear(block.attn.c_attn), attn_proj=_Linear(block.attn.c_proj),
                c_fc=_Linear(block.mlp.c_fc), mlp_proj=_Linear(block.mlp.c_proj), scale=scale,
                act=act if callable(act) else _ACTIVATIONS[c.activation_function]))
        self.ln_f = (body.ln_f.weight, body.ln_f.bias)
        self.lm_head = _Linear(model.lm_head)
        if quantize == "int8":
            self._quantize(model)
        shape = (rows, self.n_head, max_length, self.head_dim)
        self.keys = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.values = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.length = 0
        self.key_ok = None  # (rows, max_length) bool, only when some row is padded

    def _quantize(self, model):
        # int8 weights are cached on the model: quantising gpt2-small takes about a second.
        version = tuple(p._version for p in model.parameters())
        cached = getattr(model, "_gpt2_int8_linears", None)
        if cached is None or cached[0] != version:
            names = ("c_attn", "attn_proj", "c_fc", "mlp_proj")
            cached = (version, [{n: _Int8Linear(layer[n]) for n in names} for layer in self.layers],
                      _Int8Linear(self.lm_head))
            object.__setattr__(model, "_gpt2_int8_linears", cached)
        for layer, q in zip(self.layers, cached[1]):
            layer.update(q)
        self.lm_head = cached[2]

    def _forward(self, ids, positions, attn_mask, is_causal):
        """ids, positions: (rows, T) -> last-position logits (rows, vocab). Writes keys/values at [length, +T)."""
        rows, t = ids.shape
        start, end = self.length, self.length + t
        h = self.wte[ids] + self.wpe[positions]                       # (rows, T, E)
        for i, layer in enumerate(self.layers):
            a = F.layer_norm(h, h.shape[-1:], *layer["ln_1"], self.eps)
            qkv = layer["c_attn"](a.reshape(rows * t, -1))            # (rows*T, 3E)
            q, k, v = qkv.view(rows, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (rows, H, T, D)
            self.keys[i][:, :, start:end] = k
            self.values[i][:, :, start:end] = v
            a = F.scaled_dot_product_attention(
                q, self.keys[i][:, :, :end], self.values[i][:, :, :end], attn_mask=attn_mask,
                is_causal=is_causal, scale=layer["scale"])
            h = h + layer["attn_proj"](a.transpose(1, 2).reshape(rows * t, -1)).view(rows, t, -1)
            m = F.layer_norm(h, h.shape[-1:], *layer["ln_2"], self.eps)
            m = layer["mlp_proj"](layer["act"](layer["c_fc"](m.reshape(rows * t, -1))))
            h = h + m.view(rows, t, -1)
        self.length = end
        last = F.layer_norm(h[:, -1], h.shape[-1:], *self.ln_f, self.eps)  # only the last position needs logits
        return self.lm_head(last).float().cpu().numpy()

    def prefill(self, input_ids, attention_mask):
        ids = torch.from_numpy(input_ids).to(self.device)
        positions = _positions(attention_mask).to(self.device)
        t = ids.shape[1]
        if attention_mask.all():
            return self._forward(ids, positions, None, t > 1)
        self.key_ok = torch.zeros(self.keys[0].shape[0], self.keys[0].shape[2], dtype=torch.bool,
                                  device=self.device)
        self.key_ok[:, :t] = torch.from_numpy(attention_mask != 0).to(self.device)
        causal = torch.ones(t, t, dtype=torch.bool, device=self.device).tril()
        # a padding query sees itself only, so no softmax row is empty (an empty one would give NaN)
        mask = causal & (self.key_ok[:, None, :t] | torch.eye(t, dtype=torch.bool, device=self.device))
        return self._forward(ids, positions, mask[:, None], False)

    def step(self, tokens, attention_mask):
        ids = torch.from_numpy(tokens).to(self.device)[:, None]
        positions = torch.from_numpy(attention_mask.sum(axis=1, keepdims=True) - 1).to(self.device)
        mask = None
        if self.key_ok is not None:
            self.key_ok[:, self.length] = True
            mask = self.key_ok[:, None, None, :self.length + 1]
        return self._forward(ids, positions, mask, False)

    def reorder(self, index):
        index = torch.from_numpy(index).to(self.device)
        for buffers in (self.keys, self.values):
            for i, b in enumerate(buffers):
                b[:, :, :self.length] = b[:, :, :self.length].index_select(0, index)
        if self.key_ok is not None:
            self.key_ok = self.key_ok.index_select(0, index)
