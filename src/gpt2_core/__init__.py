"""gpt2_core: everything about GPT-2 that is the same for every framework. Never imports torch or tensorflow."""

from .config import GPT2Config
from .streamers import BaseStreamer, TextStreamer
from .tokenizer import BatchEncoding, GPT2Tokenizer

__all__ = ["BaseStreamer", "BatchEncoding", "GPT2Config", "GPT2Tokenizer", "GenerationConfig", "TextStreamer"]
__version__ = "0.1.0"


def __getattr__(name):
    # generation_config imports numpy: loaded on first use, so that `import gpt2_core` (the tokenizer) stays light
    if name == "GenerationConfig":
        from .generation_config import GenerationConfig

        return GenerationConfig
    raise AttributeError(f"module 'gpt2_core' has no attribute {name!r}")
