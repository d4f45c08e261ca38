"""The five heads of transformers on GPT2Model, in PyTorch: LM, double heads (LM + multiple choice), sequence
classification, token classification and question answering, with their losses.

Attribute names equal transformers' (`lm_head`, `multiple_choice_head.summary`, `score`, `classifier`,
`qa_outputs`), so `state_dict()` keys equal theirs. gpt2_tf/heads.py mirrors this file block by block: a diff of
the two shows framework calls only.

    >>> from gpt2_pt import GPT2Config, GPT2ForSequenceClassification
    >>> model = GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=2, num_labels=3)).eval()
    >>> model(torch.tensor([[464, 2068]])).logits.shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from gpt2_core.config import GPT2Config
from gpt2_core.outputs import (CausalLMOutputWithPast, GPT2DoubleHeadsModelOutput, QuestionAnsweringModelOutput,
                                  SequenceClassifierOutputWithPast, TokenClassifierOutput)

from . import kernels
from .modeling import GPT2Model, GPT2PreTrainedModel, initialise

# ----------------------------------------------------------------------------------------------- losses

def lm_loss(logits, labels):
    """Next-token cross entropy: position t predicts labels[t + 1]; -100 marks labels to ignore."""
    return F.cross_entropy(logits[..., :-1, :].flatten(0, -2).float(), labels[..., 1:].flatten(), ignore_index=-100)


def check_batch_of_sequences(model, input_ids, inputs_embeds) -> None:
    """Sequence classification and question answering read one row per sequence: inputs (batch, seq) only (a
    1-D or 3-D input would index the wrong axis; transformers fails there with an IndexError)."""
    shape = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:-1])
    if len(shape) != 2:
        raise ValueError(f"{type(model).__name__} takes inputs of shape (batch, seq). Received: shape={shape}")

# ----------------------------------------------------------------------------------------------- heads

class VocabProjection(nn.Linear):
    """nn.Linear(n_embd, vocab_size, bias=False) (same state_dict), with the GEMM layout that reads its large
    (vocab, n_embd) weight fastest for a few rows (a decoding step at batch 4-16): W @ x.T runs ~1.4x faster than
    x @ W.T there (bench/bench_pt_generate.py; both are exact fp32 products, only the summation order differs)."""

    def forward(self, x):
        rows = x.numel() // x.size(-1)
        if 4 <= rows <= 16 and not kernels.chosen(rows):
            y = torch.mm(self.weight, x.reshape(rows, -1).t())  # (vocab, rows)
            return y.t().reshape(*x.shape[:-1], -1)  # (*lead, vocab), contiguous
        return kernels.linear(x, self.weight)


def linear_head(config: GPT2Config, n_out: int, *, bias: bool = True) -> nn.Linear:
    """A head's nn.Linear(n_embd, n_out), initialised as the trunk is (not on the meta device)."""
    head = nn.Linear(config.n_embd, n_out, bias=bias)
    initialise(config, head)
    return head


class HeadModel(GPT2PreTrainedModel):
    """What the five heads share: the trunk, GPT2Model, as `transformer` (the checkpoint's name), built first so
    that state_dict() lists the head's tensors after it, as transformers does; and `num_labels`, the config's."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)

    @property
    def num_labels(self) -> int:
        return self.config.num_labels


def lm_head(config: GPT2Config, wte: nn.Embedding) -> nn.Linear:
    """The vocabulary projection: wte itself when tied (no weight of its own), else a new initialised one."""
    if config.tie_word_embeddings:
        head = VocabProjection(config.n_embd, config.vocab_size, bias=False, device="meta")  # weight set next line
        head.weight = wte.weight
    else:
        head = VocabProjection(config.n_embd, config.vocab_size, bias=False)
        initialise(config, head)
    return head


class GPT2LMHeadModel(HeadModel):
    """The body plus the vocabulary projection. `logits_to_keep=N` (transformers' name) computes the logits of
    the last N positions only (0: all of them); decoding asks for 1, which skips most of the LM head's work
    at the prompt."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.lm_head = lm_head(config, self.transformer.wte)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, logits_to_keep: int = 0):
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise ValueError(f"`logits_to_keep` should be an int >= 0 (0 keeps all positions). "
                             f"Received: logits_to_keep={logits_to_keep!r}")
        body = self.transformer(input_ids, past_key_values, attention_mask, token_type_ids, position_ids,
                                inputs_embeds, use_cache, output_attentions, output_hidden_states)
        hidden = body.last_hidden_state
        if labels is not None and 0 < logits_to_keep < hidden.size(-2):
            raise ValueError("`labels` need the logits of every position: pass logits_to_keep=0. "
                             f"Received: logits_to_keep={logits_to_keep}")
        logits = self.lm_head(hidden[..., -logits_to_keep:, :] if logits_to_keep else hidden)
        out = CausalLMOutputWithPast(
            loss=None if labels is None else lm_loss(logits, labels), logits=logits,
            past_key_values=body.past_key_values, hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()

    def generate(self, *args, **kwargs):
        """Greedy, sampling or beam search decoding; see gpt2_pt.generation.generate."""
        from .generation import generate

        return generate(self, *args, **kwargs)


class SequenceSummary(nn.Module):
    """One vector per sequence (per choice): the token summary_type picks, projected (summary_* config fields)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        if config.summary_type == "attn":  # transformers has no implementation either
            raise ValueError("summary_type='attn' is not implemented. Received: summary_type='attn'")
        self.summary_type = config.summary_type
        self.summary = nn.Identity()
        if config.summary_use_proj:
            n_out = config.num_labels if config.summary_proj_to_labels and config.num_labels > 0 else config.n_embd
            self.summary = nn.Linear(config.n_embd, n_out)
        self.activation = torch.tanh if config.summary_activation == "tanh" else (lambda x: x)
        self.first_dropout = nn.Dropout(config.summary_first_dropout)
        self.last_dropout = nn.Dropout(config.extra.get("summary_last_dropout", 0.0))

    def forward(self, hidden, cls_index=None):  # hidden: (*lead, T, C)
        # "first", "last" and "mean" index axis 1, as transformers does: the sequence axis of a (B, T, C) input,
        # but the choices axis of GPT2DoubleHeadsModel's (B, choices, T, C). Kept so the numbers stay equal.
        if self.summary_type == "first":
            x = hidden[:, 0]
        elif self.summary_type == "last":
            x = hidden[:, -1]
        elif self.summary_type == "mean":
            x = hidden.mean(dim=1)
        elif cls_index is None:  # cls_index without indices: the last token
            x = hidden[..., -1, :]
        else:  # cls_index: (*lead) positions of the classification token
            index = cls_index[..., None, None].expand(*cls_index.shape, 1, hidden.size(-1))  # (*lead, 1, C)
            x = hidden.gather(-2, index).squeeze(-2)  # (*lead, C)
        return self.last_dropout(self.activation(self.summary(self.first_dropout(x))))


class GPT2DoubleHeadsModel(HeadModel):
    """The LM head plus a multiple-choice head. Inputs are (batch, num_choices, seq)."""

    def __init__(self, config: GPT2Config):
        # transformers sets num_labels = 1 on the config (one score per choice); we do it on a copy.
        config = dataclasses.replace(config, num_labels=1, id2label=None, label2id=None)
        super().__init__(config)
        self.lm_head = lm_head(config, self.transformer.wte)
        self.multiple_choice_head = SequenceSummary(config)
        initialise(config, self.multiple_choice_head)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, mc_token_ids=None, labels=None, mc_labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        body = self.transformer(input_ids, past_key_values, attention_mask, token_type_ids, position_ids,
                                inputs_embeds, use_cache, output_attentions, output_hidden_states)
        hidden = body.last_hidden_state  # (B, choices, T, C)
        logits = self.lm_head(hidden)
        mc_logits = self.multiple_choice_head(hidden, mc_token_ids).squeeze(-1)  # (B, choices)
        mc_loss = None
        if mc_labels is not None:
            mc_loss = F.cross_entropy(mc_logits.view(-1, mc_logits.size(-1)), mc_labels.view(-1))
        out = GPT2DoubleHeadsModelOutput(
            loss=None if labels is None else lm_loss(logits, labels), mc_loss=mc_loss, logits=logits,
            mc_logits=mc_logits, past_key_values=body.past_key_values, hidden_states=body.hidden_states,
            attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()


class GPT2ForSequenceClassification(HeadModel):
    """Classifies each sequence by its last token that is not `pad_token_id` (left or right padding)."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.score = linear_head(config, config.num_labels, bias=False)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        check_batch_of_sequences(self, input_ids, inputs_embeds)
        body = self.transformer(input_ids, past_key_values, attention_mask, token_type_ids, position_ids,
                                inputs_embeds, use_cache, output_attentions, output_hidden_states)
        hidden = body.last_hidden_state  # (B, T, C)
        B, T = hidden.shape[:2]
        pad_token_id = self.config.pad_token_id
        if pad_token_id is None and B != 1:
            raise ValueError("A batch of more than one sequence needs `pad_token_id` in the config to find each "
                             f"sequence's last token. Received: batch size {B}, pad_token_id=None")
        if pad_token_id is None or input_ids is None:  # inputs_embeds cannot show padding: take the last column
            last = torch.full((B,), T - 1, device=hidden.device)
        else:
            keep = (input_ids != pad_token_id).long()
            last = (torch.arange(T, device=hidden.device) * keep).argmax(-1)  # the rightmost token kept, else 0
        logits = self.score(hidden[torch.arange(B, device=hidden.device), last])  # (B, num_labels)
        out = SequenceClassifierOutputWithPast(
            loss=None if labels is None else self._loss(logits, labels), logits=logits,
            past_key_values=body.past_key_values, hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()

    def _loss(self, logits, labels):
        problem_type = self.config.problem_type
        if problem_type is None:  # what transformers infers (it also writes it into the config; we do not)
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze()) if self.num_labels == 1 else \
                F.mse_loss(logits, labels)
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        if problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels)
        raise ValueError("`problem_type` should be regression, single_label_classification or "
                         f"multi_label_classification. Received: problem_type={problem_type!r}")


class GPT2ForTokenClassification(HeadModel):
    def __init__(self, config: GPT2Config):
        super().__init__(config)
        # transformers reads classifier_dropout, then hidden_dropout, else 0.1; both live in config.extra here.
        dropout = config.extra.get("classifier_dropout")
        dropout = config.extra.get("hidden_dropout") if dropout is None else dropout
        self.dropout = nn.Dropout(0.1 if dropout is None else dropout)
        self.classifier = linear_head(config, config.num_labels)

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        body = self.transformer(input_ids, past_key_values, attention_mask, token_type_ids, position_ids,
                                inputs_embeds, use_cache, output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(body.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        out = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=body.hidden_states,
                                    attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()


class GPT2ForQuestionAnswering(HeadModel):
    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.qa_outputs = linear_head(config, 2)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        check_batch_of_sequences(self, input_ids, inputs_embeds)
        body = self.transformer(input_ids, None, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                False, output_attentions, output_hidden_states)
        start_logits, end_logits = self.qa_outputs(body.last_hidden_state).unbind(-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the sequence are clamped to T, and T is ignored by the loss (as in transformers).
            T = start_logits.size(1)
            start = start_positions.reshape(start_positions.size(0)).clamp(0, T)
            end = end_positions.reshape(end_positions.size(0)).clamp(0, T)
            loss = (F.cross_entropy(start_logits, start, ignore_index=T) +
                    F.cross_entropy(end_logits, end, ignore_index=T)) / 2
        out = QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits.contiguous(),
                                           end_logits=end_logits.contiguous(), hidden_states=body.hidden_states,
                                           attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()
