"""GPT-2's trunk in PyTorch: Conv1D, Attention, MLP, Block and GPT2Model.

Module attribute names equal the transformers names, so `state_dict()` keys and shapes equal those of
transformers' GPT-2 classes and loading a checkpoint is a copy plus a check (see loading.py). Beside it, each
importable from here as before: the KV cache (cache.py), GPT2Model's input checks (input_checks.py) and the heads
(heads.py). gpt2_tf/modeling.py mirrors this file block by block, as each of those files mirrors its twin.

    >>> import torch
    >>> from gpt2_pt import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2)).eval()
    >>> out = model(torch.tensor([[464, 2068]]))
    >>> out.logits.shape, len(out.past_key_values)
    (torch.Size([1, 2, 50257]), 2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gpt2_core.config import GPT2Config
from gpt2_core.outputs import BaseModelOutputWithPast

from . import kernels
from .cache import KVCache
from .input_checks import check_inputs

_GELU_A = 2 * math.sqrt(2 / math.pi)  # 0.5 * (1 + tanh(z)) == sigmoid(2 z)
_GELU_B = _GELU_A * 0.044715


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written as x * sigmoid(x (a + b x^2)): four passes over x.
    torch's F.gelu(approximate="tanh") is 2-3x slower on CPU here (and collapses when a thread is preempted), and
    the MLP runs it on every (tokens, 4 n_embd) activation. In place where autograd needs nothing back."""
    t = torch.addcmul(x.new_full((), _GELU_A), x, x, value=_GELU_B)  # a + b x^2
    if torch.is_grad_enabled() and x.requires_grad:
        return x * torch.sigmoid(t * x)
    return t.mul_(x).sigmoid_().mul_(x)


# transformers' ACT2FN, name for name. The four tanh approximations of GELU are one function (they differ only in
# how the constant sqrt(2/pi) is spelled).
ACT2FN = {
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_accurate": gelu_tanh,
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


# ----------------------------------------------------------------------------------------------- the model

class Conv1D(nn.Module):
    """A linear layer whose weight is stored (in, out), as GPT-2 checkpoints store it: y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        # F.linear wants (out, in); .t() is a free view. kernels.linear is F.linear, except while decoding, where it
        # runs the kernel measured fastest on this host for the step's row count (kernels.py).
        return kernels.linear(x, self.weight.t(), self.bias)


class Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.n_head, self.head_dim, self.layer_idx = config.n_head, config.head_dim, layer_idx
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1
        self.upcast = config.reorder_and_upcast_attn

    def forward(self, x, allowed, layer_past=None, cache=None, output_attentions=False):
        B, T, C = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nh, past + T, hd)
        elif layer_past is not None:
            k = torch.cat((layer_past[0], k), dim=2)  # (B, nh, past + T, hd)
            v = torch.cat((layer_past[1], v), dim=2)
        present = (k, v)

        # The explicit path returns the weights; with reorder_and_upcast_attn it also runs the scores in fp32.
        if output_attentions or (self.upcast and q.dtype != torch.float32):
            y, weights = self._explicit_attention(q, k, v, allowed)
        else:
            dropout = self.attn_dropout.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout,
                                               is_causal=allowed is None and T > 1, scale=self.scale)
            weights = None
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, nh * hd): heads side by side again
        y = self.c_proj(y)
        return (self.resid_dropout(y) if self.training else y), present, weights

    def _explicit_attention(self, q, k, v, mask):
        T, S = q.size(-2), k.size(-2)
        if mask is None:
            mask = causal_mask(T, S, q.device)
        if self.upcast:
            q, k = q.float(), k.float()
        scores = (q @ k.transpose(-1, -2)) * self.scale  # (B, nh, T, S)
        # The dtype's minimum, not -inf: a query that may see no key (a left-pad position) then gets finite
        # weights, which are zeroed below as SDPA zeroes them, and no NaN reaches the gradients.
        weights = F.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)
        if mask.dim() == 4:  # padding: some queries may see no key (the causal mask alone never does that)
            weights = weights.masked_fill(~mask, 0.0)
        weights = self.attn_dropout(weights.to(v.dtype))
        return weights @ v, weights


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner_dim)
        self.c_proj = Conv1D(config.inner_dim, config.n_embd)
        self.act = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        x = self.c_proj(self.act(self.c_fc(x)))
        return self.dropout(x) if self.training else x  # (in eval, skipping the call saves time per decoding step)


class Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, allowed, layer_past=None, cache=None, output_attentions=False):
        a, present, weights = self.attn(self.ln_1(x), allowed, layer_past, cache, output_attentions)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present, weights


def causal_mask(T: int, S: int, device) -> torch.Tensor:
    """(T, S) booleans: query i (at position S - T + i) may see keys 0 .. S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def attention_mask_for(attention_mask, T: int, S: int, device) -> torch.Tensor | None:
    """The boolean mask of the keys each query may see: (T, S), (B, 1, T, S), or None when SDPA's own causal
    flag (no past) or no mask at all (one new token) says it, which is the fast path."""
    padded = attention_mask is not None and not bool(attention_mask.all())
    if not padded and (S == T or T == 1):
        return None
    mask = causal_mask(T, S, device)
    if padded:
        mask = mask & attention_mask.bool()[:, None, None, :]  # (B, 1, T, S)
    return mask


def initialise(config: GPT2Config, *modules: nn.Module) -> None:
    """init_weights on every submodule, except on the meta device (a model built to receive a checkpoint)."""
    for module in modules:
        if not any(p.is_meta for p in module.parameters()):
            module.apply(lambda m: init_weights(m, config))


def init_weights(module: nn.Module, config: GPT2Config) -> None:
    """transformers' initialisation: N(0, initializer_range), zero biases, unit LayerNorm, and the residual
    projections scaled by 1/sqrt(2 * n_layer) (GPT-2 paper)."""
    std = config.initializer_range
    if isinstance(module, (nn.Linear, nn.Embedding, Conv1D)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    if isinstance(module, (Attention, MLP)):
        nn.init.normal_(module.c_proj.weight, mean=0.0, std=std / math.sqrt(2 * config.n_layer))


class GPT2PreTrainedModel(nn.Module):
    """What every class shares: the config, files (from_pretrained / save_pretrained), device and dtype."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        if not isinstance(config, GPT2Config):
            raise ValueError(f"`config` should be a gpt2_core GPT2Config. Received: {type(config).__name__}")
        if config.add_cross_attention:
            raise ValueError("add_cross_attention=True is not supported. Received: add_cross_attention=True")
        self.config = config

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Build this class from a directory or hub name; see gpt2_pt.loading.from_pretrained."""
        from .loading import from_pretrained

        return from_pretrained(pretrained_model_name_or_path, model_class=cls, **kwargs)

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Write config.json and model.safetensors that transformers loads; see gpt2_pt.loading.save_pretrained."""
        from .loading import save_pretrained

        save_pretrained(self, save_directory, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


class GPT2Model(GPT2PreTrainedModel):
    """The transformer body: embeddings, blocks, final LayerNorm.

    Where we differ from transformers 5 on purpose (tests/pt/test_modeling.py pins each):
      * positions: with `attention_mask` and no `position_ids`, a token's position is the count of kept tokens
        before it (clipped at 0), so a left-padded row gives the numbers of the same tokens unpadded. transformers'
        forward numbers 0..T-1 whatever the mask (its generate derives positions from the mask, like us); the two
        agree on unpadded batches and on the kept tokens of right-padded ones.
      * `past_key_values` is a tuple of (key, value) pairs or a KVCache, never a transformers Cache object, and
        the output field keeps that name (transformers 5.24 renamed it `cache`).
      * a query that may see no key (a left-pad position) gets zero attention in both our paths, as transformers'
        default SDPA gives it; transformers' eager path spreads it evenly instead. Only pad positions differ.
    """

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        # `_weight=torch.empty(...)` skips nn.Embedding's own init: init_weights below sets every weight anyway, and
        # on the meta device (loading) torch's normal_ would import torch._dynamo, seconds of import time.
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, _weight=torch.empty(config.vocab_size, config.n_embd))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd,
                                _weight=torch.empty(config.n_positions, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        initialise(config, self)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        # Leading dimensions (the choices of GPT2DoubleHeadsModel) fold into the batch: (B, T).
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`. Received: "
                             f"{'both' if input_ids is not None else 'neither'}")
        tokens = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if tokens.numel() == 0:
            raise ValueError(f"The input should hold at least one token. Received: shape {tuple(tokens.shape)}")
        lead_shape = tokens.shape[:-1]
        input_ids, token_type_ids, position_ids, attention_mask = (
            None if t is None else t.reshape(-1, t.size(-1))
            for t in (input_ids, token_type_ids, position_ids, attention_mask))
        if inputs_embeds is not None:
            inputs_embeds = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        cache = past_key_values if isinstance(past_key_values, KVCache) else None
        layer_pasts = past_key_values if cache is None and past_key_values is not None else (None,) * len(self.h)
        B, T, P = check_inputs(self.config, input_ids, inputs_embeds, past_key_values, attention_mask,
                                token_type_ids, position_ids)

        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(P, P + T, device=self.wpe.weight.device)[None]  # (1, T)
            else:  # count only the tokens the mask keeps, so left-padded rows start at position 0
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, P:]  # (B, T)
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        if self.training:
            x = self.drop(x)  # (B, T, C)
        mask = attention_mask_for(attention_mask, T, P + T, x.device)

        presents, all_hidden, all_weights = [], [], []
        for block, layer_past in zip(self.h, layer_pasts):
            if output_hidden_states:
                all_hidden.append(x)
            x, present, weights = block(x, mask, layer_past, cache, output_attentions)
            presents.append(present)
            all_weights.append(weights)
        x = self.ln_f(x).view(*lead_shape, T, -1)  # (*lead, T, C)
        if output_hidden_states:
            all_hidden.append(x)  # as in transformers, only this last one gets the leading dimensions back

        if cache is not None:
            cache.length += T
            past = cache
        else:
            past = tuple(presents) if use_cache else None
        out = BaseModelOutputWithPast(
            last_hidden_state=x, past_key_values=past,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_weights) if output_attentions else None)
        return out if return_dict is not False else out.to_tuple()


HEADS = ("GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification", "GPT2ForTokenClassification",
         "GPT2ForQuestionAnswering")


def __getattr__(name):
    """The heads moved to heads.py; `from gpt2_pt.modeling import GPT2LMHeadModel` keeps working (imported on
    first use, as heads.py imports this module)."""
    if name in HEADS:
        from . import heads

        return getattr(heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
