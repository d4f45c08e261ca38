"""The errors of reading checkpoint files: each names the file and says what is wrong with it."""

from __future__ import annotations

import os


class CheckpointError(OSError):
    """A checkpoint file is missing, truncated or corrupt. `path` names the file, the message says what is wrong."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class NeedsTorch(CheckpointError):
    """The file is a torch pickle (pytorch_model.bin): only torch can read it."""


class WeightsNotFoundError(CheckpointError):
    """The model exists but holds none of the weight files we can use."""
