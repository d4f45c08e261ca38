"""Name -> local file: a directory, the bundled model by its name, then the Hugging Face cache, then the hub
(through huggingface_hub).

The cache layout, locking, resumable downloads and the HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_HUB_OFFLINE
variables are huggingface_hub's, so a model that transformers downloaded loads here with no network and no copy.
huggingface_hub reads those variables once, when it is imported; HF_HUB_OFFLINE we also read at each call.

    >>> from gpt2_core import hub
    >>> hub.resolve_file("gpt2", "config.json")            # doctest: +SKIP
    '/root/.cache/huggingface/hub/models--gpt2/snapshots/607a30d783dfa663caf39e06633721c8d4cfcd7e/config.json'
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from urllib.parse import urlsplit

from . import bundled
from .bundled import BUNDLED_NAME

logger = logging.getLogger(__name__)

_COMMIT = re.compile(r"[0-9a-f]{40}")


# The keyword arguments of resolve_file that from_pretrained methods pass through.
RESOLVE_KEYS = ("revision", "cache_dir", "local_files_only", "token", "force_download")


def pop_resolve_kwargs(kwargs: dict) -> dict:
    """Take the resolver's keyword arguments out of `kwargs` (what remains is the caller's own)."""
    return {k: kwargs.pop(k) for k in RESOLVE_KEYS if k in kwargs}


class ModelNotFoundError(OSError):
    """The name is neither a local directory nor a model on the hub (or in the cache, when offline)."""


def is_offline(local_files_only: bool = False) -> bool:
    """True when downloads are off: `local_files_only`, or HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set now or at
    huggingface_hub's import."""
    if local_files_only:
        return True
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "on", "yes", "true"}:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_is_offline = is_offline  # the draft's name, kept for callers written against it


def _looks_like_path(name: str) -> bool:
    # A repo id is "name" or "org/name"; anything with more parts, a leading dot or slash, or a backslash is a path.
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or os.path.isabs(name))


def resolve_file(name_or_path, filename: str, *, revision: str | None = None, cache_dir=None,
                 local_files_only: bool = False, token=None, force_download: bool = False,
                 fallback_ok: bool = False) -> str | None:
    """Return the local path of `filename` for a model directory or hub id, or None when that model lacks the file.

    A directory is used as is. A hub id resolves like transformers: the HF cache (`cache_dir`, default
    HF_HUB_CACHE), checked against the hub unless offline (`local_files_only` or HF_HUB_OFFLINE); `revision`
    is a branch, tag or commit; `token` goes to the hub. Offline, a model with a snapshot in the cache but not
    this file gives None.
    `fallback_ok` marks a name the caller can serve from built-in data (the five GPT-2 presets for config and
    tokenizer): then only the directory and the cache are consulted, never the network, and a miss returns None.
    Raises ModelNotFoundError naming the model and where it looked when the model itself cannot be found.
    """
    name = os.fspath(name_or_path)
    if not os.path.isdir(name) and name == BUNDLED_NAME:
        name = bundled.default_model()  # the model shipped in the package, by its own name
    if os.path.isdir(name):
        path = os.path.join(name, filename)
        return path if os.path.isfile(path) else None
    if _looks_like_path(name):
        raise ModelNotFoundError(f"Model {name!r} not found: it is not a directory (and is not a valid hub "
                                 "model id)")

    if fallback_ok and not force_download and not cache_may_hold(name, cache_dir):
        return None  # decided without importing huggingface_hub (~250 ms): the built-in presets load fast

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub import errors as hf_errors

    if fallback_ok and not force_download:
        try:
            cached = huggingface_hub.try_to_load_from_cache(name, filename, cache_dir=cache_dir, revision=revision)
        except ValueError:  # a malformed repo id: there is nothing cached under it
            return None
        return cached if isinstance(cached, str) else None

    offline = is_offline(local_files_only)
    cache = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    if not force_download:
        # A file the hub said it lacks (a `.no_exist` marker) is not asked for again, as in transformers; this
        # also spares huggingface_hub's ~20 s of retries per such file when the hub cannot be reached.
        try:
            cached = huggingface_hub.try_to_load_from_cache(name, filename, cache_dir=cache, revision=revision)
        except ValueError:  # a malformed repo id; hf_hub_download below says so
            cached = None
        if cached is not None and not isinstance(cached, str):
            return None
    not_local = f"not a local directory, not in the HF cache ({cache})"
    unresolved = None if offline else _unresolved_host()
    try:
        return huggingface_hub.hf_hub_download(
            name, filename, revision=revision, cache_dir=cache_dir, local_files_only=offline or bool(unresolved),
            token=token, force_download=force_download)
    except hf_errors.LocalEntryNotFoundError as e:
        # Offline, or the hub could not be reached, and the file is not cached. A cached snapshot of the model
        # means the model is known and simply lacks (or never downloaded) this file.
        if _has_snapshot(name, revision, cache):
            logger.debug("%s: %s is not in the cached snapshot of %r", name, filename, revision or "main")
            return None
        where = ("downloads are off (local_files_only / HF_HUB_OFFLINE)" if offline
                 else f"the hub ({_endpoint()}) could not be reached: {unresolved or e.__cause__ or e}")
        if revision is not None and _has_snapshot(name, None, cache):
            raise ModelNotFoundError(f"Revision {revision!r} of model {name!r} is not in the HF cache ({cache}), "
                                     f"and {where}") from e
        raise ModelNotFoundError(f"Model {name!r} not found: {not_local}, and {where}") from e
    except hf_errors.EntryNotFoundError:
        return None
    except hf_errors.RevisionNotFoundError as e:
        raise ModelNotFoundError(f"Model {name!r} has no revision {revision!r} on the hub ({_endpoint()})") from e
    except hf_errors.GatedRepoError as e:
        raise ModelNotFoundError(f"Model {name!r} is gated on the hub ({_endpoint()}): accept its terms and pass "
                                 "`token=` (or log in with `hf auth login`)") from e
    except hf_errors.RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"Model {name!r} not found: {not_local}, and not on the hub ({_endpoint()}); "
                                 "for a private model pass `token=`") from e
    except hf_errors.HFValidationError as e:
        raise ModelNotFoundError(f"Model {name!r} not found: it is not a directory and not a valid hub model id "
                                 f"({e})") from e


_RESOLVED: dict[str, tuple[float, str | None]] = {}  # host -> (when asked, why it failed or None)


def _unresolved_host(ttl: float = 60.0) -> str | None:
    """Why the hub's host name does not resolve, or None. huggingface_hub retries a failed connection for ~25 s
    per file, with a log line per try; a name the resolver does not know will not resolve in those seconds, so
    we go straight to the cache instead. Asked once a minute at most. Behind a proxy the local resolver is not
    the one that matters, so we do not ask."""
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                           "ALL_PROXY", "all_proxy")):
        return None
    host = urlsplit(_endpoint()).hostname
    if not host:
        return None
    asked, reason = _RESOLVED.get(host, (-ttl, None))
    if time.monotonic() - asked >= ttl:
        try:
            socket.getaddrinfo(host, None)
            reason = None
        except socket.gaierror as e:
            reason = f"cannot resolve host {host!r} ({e.strerror or e})"
        except OSError:  # anything else is for huggingface_hub to report
            reason = None
        _RESOLVED[host] = (time.monotonic(), reason)
    return reason


def _has_snapshot(name: str, revision: str | None, cache: str) -> bool:
    """Whether the cache holds a snapshot of `name` at `revision` (a branch/tag through refs/, or a commit)."""
    from huggingface_hub.file_download import repo_folder_name

    storage = os.path.join(cache, repo_folder_name(repo_id=name, repo_type="model"))
    revision = revision or "main"
    commit = revision if _COMMIT.fullmatch(revision) else None
    if commit is None:
        try:
            with open(os.path.join(storage, "refs", revision), encoding="utf-8") as f:
                commit = f.read().strip()
        except OSError:
            return False
    return os.path.isdir(os.path.join(storage, "snapshots", commit)) or \
        os.path.isdir(os.path.join(storage, ".no_exist", commit))


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def cache_may_hold(name: str, cache_dir=None) -> bool:
    """Whether the HF cache has a folder for model `name`, checked without importing huggingface_hub.

    Follows huggingface_hub's cache location (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME); a
    folder found here only sends the lookup on to huggingface_hub, which decides.
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if cache_dir is None and constants is not None:  # already imported: its (possibly patched) value is free
        cache_dir = constants.HF_HUB_CACHE
    if cache_dir is None:
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                         "huggingface")
        cache_dir = (os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
                     or os.path.join(home, "hub"))
    folder = "models--" + name.replace("/", "--")
    return os.path.isdir(os.path.join(os.path.expanduser(os.path.expandvars(os.fspath(cache_dir))), folder))
