"""gpt2_convert: the `gpt2-convert` command and its library form, `convert(SRC, DST, ...)`.

Core readers -> core name tables -> writers; the backends are used only by --verify.
"""

from .converter import ConversionError, ConversionResult, convert

__all__ = ["convert", "ConversionError", "ConversionResult"]
