"""gpt2_tf: GPT-2 in Keras 3 on TensorFlow, with transformers-TF's class names, arguments, outputs and files.

Never imports torch (pytorch_model.bin is read only when torch happens to be installed).

    >>> from gpt2_tf import TFGPT2LMHeadModel
    >>> model = TFGPT2LMHeadModel.from_pretrained("gpt2")                # doctest: +SKIP
    >>> logits = model(input_ids).logits                                  # doctest: +SKIP
"""

from gpt2_core.config import GPT2Config
from gpt2_core.generation import GenerationConfig
from gpt2_core.streamers import TextStreamer

from .loading import from_pretrained, save_pretrained
from .heads import (
    TFGPT2DoubleHeadsModel,
    TFGPT2ForQuestionAnswering,
    TFGPT2ForSequenceClassification,
    TFGPT2ForTokenClassification,
    TFGPT2LMHeadModel,
)
from .modeling import KVCache, TFGPT2Model, TFGPT2PreTrainedModel

__all__ = [
    "GPT2Config", "GenerationConfig", "TextStreamer", "TFGPT2Model", "TFGPT2LMHeadModel", "TFGPT2DoubleHeadsModel",
    "TFGPT2ForSequenceClassification", "TFGPT2ForTokenClassification", "TFGPT2ForQuestionAnswering",
    "TFGPT2PreTrainedModel", "KVCache", "from_pretrained", "save_pretrained",
]
