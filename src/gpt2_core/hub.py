"""Name -> local file: a directory, then the Hugging Face cache, then the hub (through huggingface_hub).

The cache layout, locking, resumable downloads and the HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_HUB_OFFLINE
variables are huggingface_hub's, so a model that transformers downloaded loads here with no network and no copy.
"""

from __future__ import annotations

import os


class ModelNotFoundError(OSError):
    """The name is neither a local directory nor a model on the hub (or in the cache, when offline)."""


def _is_offline(local_files_only: bool) -> bool:
    if local_files_only:
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def _looks_like_path(name: str) -> bool:
    # A repo id is "name" or "org/name"; anything with more parts, a leading dot or slash, or a backslash is a path.
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or os.path.isabs(name))


def resolve_file(name_or_path, filename: str, *, revision: str | None = None, cache_dir=None,
                 local_files_only: bool = False, token=None, force_download: bool = False,
                 fallback_ok: bool = False) -> str | None:
    """Return the local path of `filename` for a model directory or hub id, or None when that model lacks the file.

    `fallback_ok` marks a name the caller can serve from built-in data (the five GPT-2 presets for config and
    tokenizer): then only the directory and the cache are consulted, never the network, and a miss returns None.
    Raises ModelNotFoundError naming the model and where it looked when the model itself cannot be found.
    """
    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        path = os.path.join(name, filename)
        return path if os.path.isfile(path) else None
    if _looks_like_path(name):
        raise ModelNotFoundError(f"{name!r} is not a directory (and is not a valid hub model id)")

    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    if fallback_ok and not force_download:
        cached = huggingface_hub.try_to_load_from_cache(name, filename, cache_dir=cache_dir, revision=revision)
        return cached if isinstance(cached, str) else None

    offline = _is_offline(local_files_only)
    try:
        return huggingface_hub.hf_hub_download(
            name, filename, revision=revision, cache_dir=cache_dir, local_files_only=offline, token=token,
            force_download=force_download)
    except hf_errors.LocalEntryNotFoundError as e:
        where = "downloads are off (local_files_only / HF_HUB_OFFLINE)" if offline else f"the hub ({_endpoint()}) " \
                "could not be reached"
        raise ModelNotFoundError(
            f"{filename} of model {name!r} is not in the cache ({cache_dir or huggingface_hub.constants.HF_HUB_CACHE})"
            f" and {where}") from e
    except hf_errors.EntryNotFoundError:
        return None
    except hf_errors.RevisionNotFoundError as e:
        raise ModelNotFoundError(f"Model {name!r} has no revision {revision!r} on the hub") from e
    except hf_errors.RepositoryNotFoundError as e:
        raise ModelNotFoundError(
            f"{name!r} is not a local directory and not a model on the hub ({_endpoint()})") from e
    except ValueError as e:  # huggingface_hub's HFValidationError: a malformed repo id
        raise ModelNotFoundError(f"{name!r} is not a directory and not a valid hub model id: {e}") from e


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT
