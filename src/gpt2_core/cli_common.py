"""What the console scripts share: one-line argument errors, integer flag types, the error-to-exit-status wrapper,
and loading a model's tokenizer (GPT-2's own for a checkpoint folder without vocabulary files)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"should be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"should be a non-negative integer, got {text}")
    return value


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit status 1."""


def run_main(prog: str, run, args, *, level=logging.WARNING) -> int:
    """`run(args)`'s exit status; a user-facing error (CLIError, ValueError, OSError, ImportError) becomes one
    line on stderr and status 1, Ctrl-C status 130."""
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")  # only the error line starts with prog
    try:
        return run(args)
    except (CLIError, ValueError, OSError, ImportError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def load_tokenizer(model_name):
    """The tokenizer saved with `model_name`; a checkpoint folder without vocabulary files gets GPT-2's own."""
    from .tokenizer import GPT2Tokenizer

    try:
        return GPT2Tokenizer.from_pretrained(model_name)
    except OSError:
        if not os.path.isdir(model_name):
            raise
        return GPT2Tokenizer.from_pretrained("gpt2")
