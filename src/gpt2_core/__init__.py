"""gpt2_core: everything about GPT-2 that is the same for every framework. Never imports torch or tensorflow."""

from .config import GPT2Config

__all__ = ["GPT2Config"]
__version__ = "0.1.0"
