"""`generate` for the PyTorch GPT-2: the decoding itself is gpt2_core.generation's; this file runs the model.

One runner, `_ModelRunner`: the model's own forward over a KVCache preallocated for the whole generation (keys and
values written in place), with `logits_to_keep=1` so the LM head only sees the last position. Per generated
token that is one pass over the weights (the products are the whole cost): fp32 runs them through the kernel
gpt2_pt.kernels measured fastest on this host for the step's row count, with the thread pools arranged for it.
`quantize="int8"` runs the same forward on a copy of the model whose linear layers hold int8 weights. Opt-in,
batched decoding steps (2 rows or more: a batch, or beams) on CPU run on a copy whose linear weights are prepacked
for oneDNN (`pack_weights=True`, see PackedLinear): it costs the model's weight memory once more.

    >>> ids = model.generate(torch.tensor([[464, 3290]]), max_new_tokens=8)              # greedy
    >>> ids = model.generate(prompt, do_sample=True, top_p=0.9, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import copy
import warnings
import weakref
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpt2_core.generation import GenerationConfig, config_for, decode, positions_from_mask, prepare

from . import kernels, torch_internals
from .modeling import Conv1D, GPT2PreTrainedModel, KVCache

QUANTIZE_MODES = (None, "int8")


def generate(model, input_ids, attention_mask=None, generation_config: GenerationConfig | None = None,
             streamer=None, *, generator: torch.Generator | None = None, quantize: str | None = None,
             pack_weights: bool = False, tokenizer=None, **kwargs) -> torch.LongTensor:
    """Prompt followed by new tokens, shape (batch * num_return_sequences, length); see GenerationConfig.

    `kwargs` override fields of `generation_config` (else `model.generation_config`, else the model config's
    special tokens). `generator` makes sampling reproducible without touching the global seed (which works too).
    `tokenizer` reads the generated text for `stop_strings` (as in transformers).
    `quantize="int8"` decodes with int8 weights in the linear layers and the LM head: several times faster,
    logits move slightly (bench/bench_pt_generate.py measures how much).
    fp32 decoding runs its products through the kernel measured fastest on this host for the step's row count
    (gpt2_pt.kernels: calibrated once per host and model shape, cached), on the model's own weights.
    `pack_weights=True` (CPU, fp32, 2 rows or more) instead decodes on prepacked oneDNN copies of the linear
    weights (exact to fp32 rounding), which costs the model's weight memory once more: opt-in since the calibrated
    kernels match or beat it without a copy on the hosts measured (bench/bench_pt_generate.py). The first such call
    packs (~0.4 s for gpt2-small); the copy stays cached for the next calls until the parameters or the row count
    change. `pack_weights=False` frees that copy.
    """
    config = config_for(model, generation_config).copy(**kwargs)  # unknown kwargs raise here
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` should be one of {QUANTIZE_MODES}. Received: quantize={quantize!r}")
    if quantize is not None and not isinstance(model, GPT2PreTrainedModel):
        raise ValueError(f"quantize={quantize!r} needs a gpt2_pt model. Received: {type(model).__name__}")
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else torch.device("cpu")
    ids_np = _to_numpy(input_ids, "input_ids")
    mask_np = None if attention_mask is None else _to_numpy(attention_mask, "attention_mask")
    mc = model.config
    config, ids_np, mask_np, max_length, min_length = prepare(
        config, ids_np, mask_np, n_positions=mc.n_positions, vocab_size=mc.vocab_size, tokenizer=tokenizer)

    rows = ids_np.shape[0] * config.rows_per_prompt
    step_model = None
    if quantize == "int8":
        model = int8_copy(model)
    elif not pack_weights or not can_pack(model):
        drop_copy(model, "packed")
    elif rows > 1:
        step_model = packed_copy(model, rows)
    runner = _ModelRunner(model, rows, max_length, generator=generator, step_model=step_model)
    arranged = kernels.decoding(model, rows) if quantize is None and step_model is None else nullcontext()
    with torch.inference_mode(), arranged:
        out = decode(runner, config, ids_np, mask_np, max_length=max_length, min_length=min_length,
                     streamer=None if streamer is None else _TorchStreamer(streamer), tokenizer=tokenizer)
    return torch.from_numpy(out).to(device)


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


class _ModelRunner:
    """What `decode` drives: prefill, step, reorder (beam search) and uniform draws, over the model's own forward.

    Our models get a KVCache for all rows and the whole length; any other model with our forward arguments (the
    tests run transformers' GPT2LMHeadModel through here) keeps whatever cache its forward returns. Padded batches
    pass the mask and positions_from_mask's positions, as gpt2_tf's runner does; unpadded ones pass neither: the
    model derives positions from the cache length and builds no mask for a single new token (gpt2_tf passes both
    always, so that each compiled entry point has one signature). `step_model` (default: `model`) runs the
    one-token steps over the same cache.
    """

    def __init__(self, model, rows, max_length, *, generator=None, step_model=None):
        self.model, self.generator = model, generator
        self.step_model = model if step_model is None else step_model
        parameter = next(model.parameters())
        self.device = parameter.device
        self.past = None
        if isinstance(model, GPT2PreTrainedModel):
            self.past = KVCache(model.config, rows, max_length, dtype=parameter.dtype, device=self.device)
        self.padded = False

    def _run(self, ids, mask, positions, model=None):
        out = (model or self.model)(input_ids=torch.from_numpy(ids).to(self.device), past_key_values=self.past,
                         attention_mask=None if mask is None else torch.from_numpy(mask).to(self.device),
                         position_ids=None if positions is None else torch.from_numpy(positions).to(self.device),
                         use_cache=True, logits_to_keep=1)
        self.past = out.past_key_values
        return out.logits[:, -1].float().cpu().numpy()

    def prefill(self, input_ids, attention_mask):
        self.padded = not attention_mask.all()
        if not self.padded:
            return self._run(input_ids, None, None)
        return self._run(input_ids, attention_mask, positions_from_mask(attention_mask))

    def step(self, tokens, attention_mask):
        if not self.padded:
            return self._run(tokens[:, None], None, None, self.step_model)
        return self._run(tokens[:, None], attention_mask, positions_from_mask(attention_mask)[:, -1:],
                         self.step_model)

    def reorder(self, index):
        index = torch.from_numpy(index).to(self.device)
        past = self.past
        if hasattr(past, "reorder"):  # our KVCache
            past.reorder(index)
        elif hasattr(past, "reorder_cache"):  # a transformers Cache
            past.reorder_cache(index)
        else:
            self.past = tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in past)

    def uniform(self, shape):
        # drawn from torch's generator so that torch.manual_seed makes sampling reproducible
        return torch.rand(shape, generator=self.generator, dtype=torch.float64).numpy()


# ---------------------------------------------------------------------------------------------------------------
# int8


class Int8Linear(nn.Module):
    """y = x @ W.T + b with W int8 per output channel (symmetric) and x quantised per call: torch's dynamic
    quantized linear (fbgemm), several times faster than fp32 for the memory-bound decoding GEMVs. A torch without
    those operators (torch_internals.int8_linear() is None) multiplies by the dequantized int8 weights in fp32: the
    same weights, slower, and x stays unquantised."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):  # weight: (out, in)
        super().__init__()
        weight = weight.detach().float().contiguous()
        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        bias = None if bias is None else bias.detach().float()
        ops = torch_internals.int8_linear()
        if ops is None:
            self.linear, self.bias = None, bias
            self.weight = ((weight / scale[:, None].float()).round().clamp(-127, 127) * scale[:, None]).float()
            return
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates quantized tensors in favour of torchao
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = ops.prepack(qweight, bias)
        self.linear = ops.linear

    def forward(self, x):
        if x.dtype != torch.float32:
            return self.forward(x.float()).to(x.dtype)
        if self.linear is None:
            return F.linear(x, self.weight, self.bias)
        return self.linear(x, self.packed, True)  # True: 7-bit activations, no overflow; any leading dims


def int8_copy(model: GPT2PreTrainedModel) -> GPT2PreTrainedModel:
    """A copy of `model` whose Conv1D and nn.Linear layers (the LM head included) are Int8Linear; everything else
    (embeddings, LayerNorms) is shared with `model`. Cached on the model until its parameters change: quantising
    gpt2-small takes about a second."""
    return _cached_copy(model, "int8", None, lambda weight, bias: Int8Linear(weight, bias))


def _replace_modules(module: nn.Module, convert) -> nn.Module:
    """The module tree with `convert(m)` in place of m where it is not None; other leaves are shared, the modules
    above them are shallow copies (parameters shared)."""
    replacement = convert(module)
    if replacement is not None or not module._modules:
        return module if replacement is None else replacement
    clone = copy.copy(module)
    clone._modules = {name: None if child is None else _replace_modules(child, convert)
                      for name, child in module._modules.items()}
    return clone


# ---------------------------------------------------------------------------------------------------------------
# prepacked fp32 weights for batched decoding steps

class PackedLinear(nn.Module):
    """y = x @ W.T + b with W reordered once into oneDNN's blocked layout for `rows` rows.

    For a few rows (a batched decoding step) torch's GEMM re-packs the weight on every call, reading it twice and
    writing it once; a batch-8 step of gpt2-small then takes ~1.6x the time of a batch-1 step, against ~1.2x with
    the packed copy. For one row a plain GEMV is faster, hence rows > 1 only. fp32 in, fp32 out: exact products,
    only the summation order differs from F.linear."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int, ops):  # weight: (out, in)
        super().__init__()
        self.packed = ops.reorder(weight.detach(), rows)
        self.bias = None if bias is None else bias.detach()
        self.linear = ops.linear

    def forward(self, x):
        return self.linear(x, self.packed, self.bias, "none", [], "")


def can_pack(model: nn.Module) -> bool:
    """Whether packed_copy applies: one of our models, fp32 on CPU, and a torch with oneDNN's packed linear."""
    return (isinstance(model, GPT2PreTrainedModel) and torch_internals.onednn_linear() is not None
            and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters()))


def packed_copy(model: GPT2PreTrainedModel, rows: int) -> GPT2PreTrainedModel:
    """A copy of `model` whose Conv1D and nn.Linear layers are PackedLinear for `rows` rows, the rest shared.
    Cached on the model (packing gpt2-small takes ~0.4 s) until its parameters change or `rows` does."""
    ops = torch_internals.onednn_linear()
    return _cached_copy(model, "packed", rows, lambda weight, bias: PackedLinear(weight, bias, rows, ops))


# model -> {kind: (key, copy)}. Beside the model, not in it: the copies hold oneDNN/fbgemm tensors that can be
# neither deep-copied nor pickled, so `copy.deepcopy(model)` and `torch.save(model)` must not see them.
_COPIES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _cached_copy(model: GPT2PreTrainedModel, kind: str, variant, make_linear) -> GPT2PreTrainedModel:
    """`model` with make_linear(weight (out, in), bias) in place of each Conv1D and nn.Linear, kept while the
    model lives and its parameters and `variant` stay the same (not a submodule: no state_dict entries)."""
    key = (variant, tuple((p.data_ptr(), p._version) for p in model.parameters()))
    copies = _COPIES.setdefault(model, {})
    cached = copies.pop(kind, None)  # a stale copy is freed before the new one is built
    if cached is not None and cached[0] == key:
        copies[kind] = cached
        return cached[1]

    def convert(module):
        if isinstance(module, Conv1D):
            return make_linear(module.weight.t(), module.bias)
        if isinstance(module, nn.Linear):
            return make_linear(module.weight, module.bias)
        return None

    with torch.no_grad():
        copies[kind] = (key, _replace_modules(model, convert))
    return copies[kind][1]


def drop_copy(model: nn.Module, kind: str) -> None:
    """Free the cached "packed" or "int8" copy of `model`, if any."""
    _COPIES.get(model, {}).pop(kind, None)
