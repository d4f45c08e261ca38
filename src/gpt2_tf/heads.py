"""The five heads of transformers on TFGPT2Model, in Keras 3 on TensorFlow: LM, double heads (LM + multiple
choice), sequence classification, token classification and question answering, with their losses.

Attribute names equal transformers' (`lm_head`, `multiple_choice_head.summary`, `score`, `classifier`,
`qa_outputs`), so the canonical weight names equal theirs. This file mirrors gpt2_pt/heads.py block by block: a
diff of the two shows framework calls only. Each head trains with `model.compile(optimizer)` + `model.fit` on its
own loss (see TFGPT2PreTrainedModel.compute_loss).

    >>> from gpt2_tf import GPT2Config, TFGPT2ForSequenceClassification
    >>> model = TFGPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=2, num_labels=3))
    >>> model(tf.constant([[464, 2068]])).logits.shape
    TensorShape([1, 3])
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from gpt2_core.config import GPT2Config
from gpt2_core.outputs import (CausalLMOutputWithPast, GPT2DoubleHeadsModelOutput, QuestionAnsweringModelOutput,
                                  SequenceClassifierOutputWithPast, TokenClassifierOutput)

from .input_checks import check_at_most, dim_of
from .modeling import Linear, TFGPT2Model, TFGPT2PreTrainedModel, unpack_inputs

# ----------------------------------------------------------------------------------------------- losses

def cross_entropy(logits, labels, ignore_index=-100):
    """torch's F.cross_entropy: the mean over labels != ignore_index, in float32 (NaN when all are ignored)."""
    logits = tf.cast(tf.reshape(logits, (-1, tf.shape(logits)[-1])), tf.float32)
    labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
    keep = tf.not_equal(labels, ignore_index)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(keep, labels, 0), logits=logits)
    keep = tf.cast(keep, tf.float32)
    return tf.reduce_sum(losses * keep) / tf.reduce_sum(keep)


def lm_loss(logits, labels):
    """Next-token cross entropy: position t predicts labels[t + 1]; -100 marks labels to ignore."""
    return cross_entropy(logits[..., :-1, :], tf.convert_to_tensor(labels)[..., 1:])


def check_batch_of_sequences(model, input_ids, inputs_embeds) -> None:
    """Sequence classification and question answering read one row per sequence: inputs (batch, seq) only (a
    1-D or 3-D input would index the wrong axis; transformers fails there with an IndexError)."""
    shape = tuple(tf.convert_to_tensor(input_ids).shape) if input_ids is not None else \
        tuple(tf.convert_to_tensor(inputs_embeds).shape[:-1])
    if len(shape) != 2:
        raise ValueError(f"{type(model).__name__} takes inputs of shape (batch, seq). Received: shape={shape}")

# ----------------------------------------------------------------------------------------------- heads

def linear_head(config: GPT2Config, n_out: int, *, use_bias: bool = True, name: str) -> Linear:
    """A head's Linear(n_embd, n_out), initialised as the trunk is."""
    return Linear(config.n_embd, n_out, config.initializer_range, use_bias=use_bias, name=name)


class TFHeadModel(TFGPT2PreTrainedModel):
    """What the five heads share: the trunk, TFGPT2Model, as `transformer` (the checkpoint's name), built first so
    that the weights list the head's after it, as transformers does; and `num_labels`, the config's."""

    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.transformer = TFGPT2Model(config, name="transformer")

    @property
    def num_labels(self) -> int:
        return self.config.num_labels


def lm_head(config: GPT2Config, wte) -> Linear:
    """The vocabulary projection: wte's weight itself when tied (no weight of its own), else a new initialised one.
    (gpt2_pt's VocabProjection picks a GEMM layout per row count; TF's one 2-D GEMM in Linear needs no choice.)"""
    tied = wte.weight if config.tie_word_embeddings else None
    return Linear(config.n_embd, config.vocab_size, config.initializer_range, use_bias=False, weight=tied,
                  name="lm_head")


class TFGPT2LMHeadModel(TFHeadModel):
    """The body plus the vocabulary projection. `logits_to_keep=N` (transformers' name) computes the logits of
    the last N positions only (0: all of them); decoding asks for 1, which skips most of the LM head's work
    at the prompt."""

    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.lm_head = lm_head(config, self.transformer.wte)
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, logits_to_keep: int = 0, training=False):
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise ValueError(f"`logits_to_keep` should be an int >= 0 (0 keeps all positions). "
                             f"Received: logits_to_keep={logits_to_keep!r}")
        body = self.transformer(input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, position_ids=position_ids,
                                inputs_embeds=inputs_embeds, use_cache=use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                training=training)
        hidden = body.last_hidden_state
        T = hidden.shape[-2]
        if labels is not None and logits_to_keep > 0 and (T is None or logits_to_keep < T):
            raise ValueError("`labels` need the logits of every position: pass logits_to_keep=0. "
                             f"Received: logits_to_keep={logits_to_keep}")
        logits = self.lm_head(hidden[..., -logits_to_keep:, :] if logits_to_keep else hidden)
        out = CausalLMOutputWithPast(
            loss=None if labels is None else lm_loss(logits, labels), logits=logits,
            past_key_values=body.past_key_values, hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()

    def generate(self, *args, **kwargs):
        """Greedy, sampling or beam search decoding; see gpt2_tf.generation.generate."""
        from .generation import generate

        return generate(self, *args, **kwargs)


class SequenceSummary(keras.layers.Layer):
    """One vector per sequence (per choice): the token summary_type picks, projected (summary_* config fields)."""

    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(**kwargs)
        if config.summary_type == "attn":  # transformers has no implementation either
            raise ValueError("summary_type='attn' is not implemented. Received: summary_type='attn'")
        self.summary_type = config.summary_type
        self.summary = lambda x: x
        if config.summary_use_proj:
            n_out = config.num_labels if config.summary_proj_to_labels and config.num_labels > 0 else config.n_embd
            self.summary = Linear(config.n_embd, n_out, config.initializer_range, name="summary")
        self.activation = tf.tanh if config.summary_activation == "tanh" else (lambda x: x)
        self.first_dropout = keras.layers.Dropout(config.summary_first_dropout)
        self.last_dropout = keras.layers.Dropout(config.extra.get("summary_last_dropout", 0.0))
        self.built = True

    def call(self, hidden, cls_index=None, training=False):  # hidden: (*lead, T, C)
        # "first", "last" and "mean" index axis 1, as transformers does: the sequence axis of a (B, T, C) input,
        # but the choices axis of TFGPT2DoubleHeadsModel's (B, choices, T, C). Kept so the numbers stay equal.
        if self.summary_type == "first":
            x = hidden[:, 0]
        elif self.summary_type == "last":
            x = hidden[:, -1]
        elif self.summary_type == "mean":
            x = tf.reduce_mean(hidden, axis=1)
        elif cls_index is None:  # cls_index without indices: the last token
            x = hidden[..., -1, :]
        else:  # cls_index: (*lead) positions of the classification token
            x = tf.gather(hidden, cls_index, axis=-2, batch_dims=cls_index.shape.rank)  # (*lead, C)
        x = self.summary(self.first_dropout(x, training=training))
        return self.last_dropout(self.activation(x), training=training)


class TFGPT2DoubleHeadsModel(TFHeadModel):
    """The LM head plus a multiple-choice head. Inputs are (batch, num_choices, seq)."""

    def __init__(self, config: GPT2Config, **kwargs):
        # transformers sets num_labels = 1 on the config (one score per choice); we do it on a copy.
        config = dataclasses.replace(config, num_labels=1, id2label=None, label2id=None)
        super().__init__(config, **kwargs)
        self.lm_head = lm_head(config, self.transformer.wte)
        self.multiple_choice_head = SequenceSummary(config, name="multiple_choice_head")
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, mc_token_ids=None, labels=None, mc_labels=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        body = self.transformer(input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, position_ids=position_ids,
                                inputs_embeds=inputs_embeds, use_cache=use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                training=training)
        hidden = body.last_hidden_state  # (B, choices, T, C)
        logits = self.lm_head(hidden)
        if mc_token_ids is not None:
            mc_token_ids = tf.convert_to_tensor(mc_token_ids)
        mc_logits = tf.squeeze(self.multiple_choice_head(hidden, mc_token_ids, training=training), -1)  # (B, choices)
        mc_loss = None
        if mc_labels is not None:
            mc_loss = cross_entropy(mc_logits, mc_labels)
        out = GPT2DoubleHeadsModelOutput(
            loss=None if labels is None else lm_loss(logits, labels), mc_loss=mc_loss, logits=logits,
            mc_logits=mc_logits, past_key_values=body.past_key_values, hidden_states=body.hidden_states,
            attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()


class TFGPT2ForSequenceClassification(TFHeadModel):
    """Classifies each sequence by its last token that is not `pad_token_id` (left or right padding)."""

    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.score = linear_head(config, config.num_labels, use_bias=False, name="score")
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        check_batch_of_sequences(self, input_ids, inputs_embeds)
        body = self.transformer(input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, position_ids=position_ids,
                                inputs_embeds=inputs_embeds, use_cache=use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                training=training)
        hidden = body.last_hidden_state  # (B, T, C)
        B, T = dim_of(hidden, 0), dim_of(hidden, 1)
        pad_token_id = self.config.pad_token_id
        if pad_token_id is None:
            message = "A batch of more than one sequence needs `pad_token_id` in the config to find each sequence's" \
                      " last token"
            check_at_most(B, 1, lambda: f"{message}. Received: batch size {B}, pad_token_id=None", message)
        if pad_token_id is None or input_ids is None:  # inputs_embeds cannot show padding: take the last column
            last = tf.fill((B,), T - 1)
        else:
            keep = tf.cast(tf.not_equal(input_ids, pad_token_id), tf.int32)
            last = tf.argmax(tf.range(T) * keep, axis=-1, output_type=tf.int32)  # the rightmost token kept, else 0
        logits = self.score(tf.gather(hidden, last, axis=1, batch_dims=1))  # (B, num_labels)
        out = SequenceClassifierOutputWithPast(
            loss=None if labels is None else self._loss(logits, tf.convert_to_tensor(labels)), logits=logits,
            past_key_values=body.past_key_values, hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()

    def _loss(self, logits, labels):
        problem_type = self.config.problem_type
        if problem_type is None:  # what transformers infers (it also writes it into the config; we do not)
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (tf.int64, tf.int32):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type == "regression":
            labels = tf.cast(labels, logits.dtype)
            return tf.reduce_mean(tf.square(tf.squeeze(logits) - tf.squeeze(labels))) if self.num_labels == 1 else \
                tf.reduce_mean(tf.square(logits - labels))
        if problem_type == "single_label_classification":
            return cross_entropy(tf.reshape(logits, (-1, self.num_labels)), tf.reshape(labels, (-1,)))
        if problem_type == "multi_label_classification":
            labels = tf.cast(labels, logits.dtype)
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
        raise ValueError("`problem_type` should be regression, single_label_classification or "
                         f"multi_label_classification. Received: problem_type={problem_type!r}")


class TFGPT2ForTokenClassification(TFHeadModel):
    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        # transformers reads classifier_dropout, then hidden_dropout, else 0.1; both live in config.extra here.
        dropout = config.extra.get("classifier_dropout")
        dropout = config.extra.get("hidden_dropout") if dropout is None else dropout
        self.dropout = keras.layers.Dropout(0.1 if dropout is None else dropout)
        self.classifier = linear_head(config, config.num_labels, name="classifier")
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        body = self.transformer(input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, position_ids=position_ids,
                                inputs_embeds=inputs_embeds, use_cache=use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                training=training)
        logits = self.classifier(self.dropout(body.last_hidden_state, training=training))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = cross_entropy(tf.reshape(logits, (-1, self.num_labels)), tf.reshape(labels, (-1,)))
        out = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=body.hidden_states,
                                    attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()


class TFGPT2ForQuestionAnswering(TFHeadModel):
    def __init__(self, config: GPT2Config, **kwargs):
        super().__init__(config, **kwargs)
        self.qa_outputs = linear_head(config, 2, name="qa_outputs")
        self.built = True

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
             inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        check_batch_of_sequences(self, input_ids, inputs_embeds)
        body = self.transformer(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                position_ids=position_ids, inputs_embeds=inputs_embeds, use_cache=False,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                training=training)
        start_logits, end_logits = tf.unstack(self.qa_outputs(body.last_hidden_state), axis=-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the sequence are clamped to T, and T is ignored by the loss (as in transformers).
            T = tf.shape(start_logits)[1]
            start = tf.clip_by_value(tf.reshape(tf.cast(start_positions, tf.int32), (-1,)), 0, T)
            end = tf.clip_by_value(tf.reshape(tf.cast(end_positions, tf.int32), (-1,)), 0, T)
            loss = (cross_entropy(start_logits, start, ignore_index=T) +
                    cross_entropy(end_logits, end, ignore_index=T)) / 2
        out = QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                           hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict is not False else out.to_tuple()
