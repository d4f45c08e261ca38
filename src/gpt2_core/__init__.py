"""gpt2_core: everything about GPT-2 that is the same for every framework. Never imports torch or tensorflow."""

from .config import GPT2Config
from .tokenizer import BatchEncoding, GPT2Tokenizer

__all__ = ["BatchEncoding", "GPT2Config", "GPT2Tokenizer"]
__version__ = "0.1.0"
