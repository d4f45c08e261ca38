"""File helpers: atomic writes (a reader never sees a half-written file, a failed write leaves nothing behind) and
reading a JSON object with errors that name the file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside `path`; on success it is renamed over `path`, on failure removed."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def save_text(directory: str | os.PathLike, filename: str, text: str) -> str:
    """Write `text` as `directory`/`filename` atomically, creating the directory; returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    atomic_write_text(path, text)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in `path`. ValueError naming the file when it is not valid JSON or holds no object;
    OSError (FileNotFoundError...) as open() raises it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{os.fspath(path)} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)} should hold a JSON object, found {type(data).__name__}")
    return data
