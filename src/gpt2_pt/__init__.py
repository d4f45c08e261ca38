"""gpt2_pt: GPT-2 in PyTorch, with transformers' class names, arguments, outputs and files.

    >>> from gpt2_pt import GPT2LMHeadModel
    >>> model = GPT2LMHeadModel.from_pretrained("gpt2")                  # doctest: +SKIP
    >>> logits = model(input_ids).logits                                  # doctest: +SKIP
"""

from gpt2_core.config import GPT2Config
from gpt2_core.generation import GenerationConfig
from gpt2_core.streamers import TextStreamer

from .loading import from_pretrained, save_pretrained
from .heads import (
    GPT2DoubleHeadsModel,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
)
from .modeling import GPT2Model, GPT2PreTrainedModel, KVCache

__all__ = [
    "GPT2Config", "GenerationConfig", "TextStreamer", "GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel",
    "GPT2ForSequenceClassification", "GPT2ForTokenClassification", "GPT2ForQuestionAnswering", "GPT2PreTrainedModel",
    "KVCache", "from_pretrained", "save_pretrained",
]
