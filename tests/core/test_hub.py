"""Name resolution against a fake hub on 127.0.0.1: download, reload offline, missing file vs missing model,
revisions, and the environment variables (checked in a subprocess, since huggingface_hub reads them at import)."""

import json
import os
import socket
import time

import numpy as np

import pytest
from hubserver import HubServer, run_python

from gpt2_core import checkpoint, hub
from gpt2_core.hub import ModelNotFoundError

CONFIG = json.dumps({"model_type": "gpt2", "n_embd": 8}).encode()


def test_local_directory(tmp_path):
    (tmp_path / "config.json").write_bytes(CONFIG)
    assert hub.resolve_file(tmp_path, "config.json") == str(tmp_path / "config.json")
    assert hub.resolve_file(str(tmp_path), "tokenizer.json") is None
    with pytest.raises(ModelNotFoundError, match="'./no/such/dir' not found: it is not a directory"):
        hub.resolve_file("./no/such/dir", "config.json")


def test_download_then_offline_from_cache(hub_server, monkeypatch, tmp_path):
    commit = hub_server.add("org/tiny", {"config.json": CONFIG, "model.safetensors": b"0" * 64})
    hub_server.patch(monkeypatch, tmp_path / "cache")
    online = hub.resolve_file("org/tiny", "config.json")
    assert online == str(tmp_path / "cache" / "models--org--tiny" / "snapshots" / commit / "config.json")
    assert open(online, "rb").read() == CONFIG
    assert hub.resolve_file("org/tiny", "tokenizer.json") is None  # the model lacks it: None, not an error

    hub_server.patch(monkeypatch, tmp_path / "cache", offline=True)
    seen = len(hub_server.requests)
    assert hub.resolve_file("org/tiny", "config.json") == online  # the cached file itself: no copy
    assert hub.resolve_file("org/tiny", "tokenizer.json") is None  # known missing (cached 404)
    assert hub.resolve_file("org/tiny", "model.safetensors") is None  # snapshot cached, this file not
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_file("org/other", "config.json")
    assert "'org/other'" in str(info.value) and str(tmp_path / "cache") in str(info.value)
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert len(hub_server.requests) == seen  # offline means no request at all


def test_hub_unreachable_uses_the_cache(hub_server, monkeypatch, tmp_path):
    hub_server.add("org/tiny", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    cached = hub.resolve_file("org/tiny", "config.json")
    assert hub.resolve_file("org/tiny", "tokenizer.json") is None  # the hub says so: remembered in the cache
    hub_server.stop()  # the network is down, HF_HUB_OFFLINE is not set
    assert hub.resolve_file("org/tiny", "config.json") == cached
    assert hub.resolve_file("org/tiny", "tokenizer.json") is None


def test_unresolvable_hub_fails_fast_and_uses_the_cache(hub_server, monkeypatch, tmp_path):
    hub_server.add("org/tiny", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    cached = hub.resolve_file("org/tiny", "config.json")
    from huggingface_hub import constants

    # .invalid never resolves (RFC 6761): huggingface_hub alone would retry for ~25 s before giving up
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.gpt2-tests.invalid")
    monkeypatch.setattr(hub, "_RESOLVED", {})
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    assert hub.resolve_file("org/tiny", "config.json") == cached
    with pytest.raises(ModelNotFoundError, match="cannot resolve host 'hub.gpt2-tests.invalid'"):
        hub.resolve_file("org/other", "config.json")
    assert time.monotonic() - start < 5


def test_local_files_only_is_offline(hub_server, monkeypatch, tmp_path):
    hub_server.add("org/tiny", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    with pytest.raises(ModelNotFoundError, match="downloads are off"):
        hub.resolve_file("org/tiny", "config.json", local_files_only=True)
    assert hub_server.requests == []


def test_unknown_model_online(hub_server, monkeypatch, tmp_path):
    hub_server.patch(monkeypatch, tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_file("org/missing", "config.json")
    message = str(info.value)
    assert "'org/missing'" in message and hub_server.url in message and str(tmp_path) in message


def test_revisions(hub_server, monkeypatch, tmp_path):
    v1 = hub_server.add("org/tiny", {"config.json": b'{"n_embd": 8}'})
    v2 = hub_server.add("org/tiny", {"config.json": b'{"n_embd": 16}', "extra.txt": b"x"}, revision="v2")
    hub_server.patch(monkeypatch, tmp_path)
    read = lambda **kw: open(hub.resolve_file("org/tiny", "config.json", **kw), "rb").read()  # noqa: E731
    assert read() == b'{"n_embd": 8}'
    assert read(revision="v2") == b'{"n_embd": 16}'
    assert read(revision=v1) == b'{"n_embd": 8}'
    assert hub.resolve_file("org/tiny", "extra.txt") is None
    assert hub.resolve_file("org/tiny", "extra.txt", revision=v2) is not None
    with pytest.raises(ModelNotFoundError, match="'org/tiny' has no revision 'v9'"):
        hub.resolve_file("org/tiny", "config.json", revision="v9")
    hub_server.patch(monkeypatch, tmp_path, offline=True)  # pinned revisions resolve from the cache offline
    assert read(revision="v2") == b'{"n_embd": 16}'
    assert read(revision=v2) == b'{"n_embd": 16}'
    with pytest.raises(ModelNotFoundError, match="Revision 'v3' of model 'org/tiny' is not in the HF cache"):
        hub.resolve_file("org/tiny", "config.json", revision="v3")


def test_token_is_sent(hub_server, monkeypatch, tmp_path):
    hub_server.add("org/private", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    hub.resolve_file("org/private", "config.json", token="hf_secret")
    assert hub_server.authorizations[-1] == "Bearer hf_secret"


def test_fallback_ok_never_uses_the_network(hub_server, monkeypatch, tmp_path):
    hub_server.add("gpt2", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    assert hub.resolve_file("gpt2", "config.json", fallback_ok=True) is None
    assert hub_server.requests == []
    cached = hub.resolve_file("gpt2", "config.json")
    assert hub.resolve_file("gpt2", "config.json", fallback_ok=True) == cached


def test_sharded_weights_from_the_hub(hub_server, monkeypatch, tmp_path):
    state = {f"t{i}": np.full((50,), i, np.float32) for i in range(5)}
    checkpoint.save_weights(state, tmp_path / "repo", max_shard_size=500)
    hub_server.add("org/sharded", tmp_path / "repo")
    hub_server.patch(monkeypatch, tmp_path / "cache")
    files = checkpoint.find_weights("org/sharded")
    assert files.kind == "safetensors_sharded" and len(files.paths) == 3
    arrays, _ = checkpoint.read_weights(files)
    assert all(np.array_equal(arrays[k], v) for k, v in state.items())

    hub_server.patch(monkeypatch, tmp_path / "cache", offline=True)
    assert checkpoint.find_weights("org/sharded") == files

    os.remove(tmp_path / "repo" / "model-00002-of-00003.safetensors")
    hub_server.add("org/broken", tmp_path / "repo")
    hub_server.patch(monkeypatch, tmp_path / "cache")
    with pytest.raises(checkpoint.CheckpointError, match="lists shard 'model-00002-of-00003.safetensors'"):
        checkpoint.find_weights("org/broken")


def test_model_without_weights_on_the_hub(hub_server, monkeypatch, tmp_path):
    hub_server.add("org/config-only", {"config.json": CONFIG})
    hub_server.patch(monkeypatch, tmp_path)
    with pytest.raises(checkpoint.WeightsNotFoundError, match="'org/config-only' has no weights file"):
        checkpoint.find_weights("org/config-only")
    with pytest.raises(ModelNotFoundError, match="'org/nothing'"):
        checkpoint.find_weights("org/nothing")


def test_environment_variables_in_a_fresh_process(hub_server, tmp_path):
    """HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE as a user sets them, read by huggingface_hub at import."""
    commit = hub_server.add("org/tiny", {"config.json": CONFIG})
    code = """
from gpt2_core import hub
print(hub.resolve_file("org/tiny", "config.json"))
print(hub.resolve_file("org/tiny", "missing.json"))
try:
    hub.resolve_file("org/missing", "config.json")
except hub.ModelNotFoundError as e:
    print("not found:", e)
"""
    online = run_python(code, hub_server.env(tmp_path)).stdout.splitlines()
    assert online[0] == str(tmp_path / "models--org--tiny" / "snapshots" / commit / "config.json")
    assert online[1] == "None"
    assert online[2].startswith("not found: Model 'org/missing' not found") and hub_server.url in online[2]
    seen = len(hub_server.requests)
    offline = run_python(code, hub_server.env(tmp_path, offline=True)).stdout.splitlines()
    assert offline[:2] == online[:2]
    assert "'org/missing'" in offline[2] and "HF_HUB_OFFLINE" in offline[2]
    assert len(hub_server.requests) == seen

    env = hub_server.env(tmp_path)  # HF_HOME alone puts the cache in HF_HOME/hub
    del env["HF_HUB_CACHE"]
    env["HF_HOME"] = str(tmp_path / "home")
    home = run_python(code, env).stdout.splitlines()
    assert home[0] == str(tmp_path / "home" / "hub" / "models--org--tiny" / "snapshots" / commit / "config.json")


def test_server_is_loopback_and_stops_itself():
    server = HubServer(lifetime=0.2).start()
    host, port = server._httpd.server_address[:2]
    assert host == "127.0.0.1"
    assert server.stopped.wait(timeout=5)
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()


def test_fake_hub_serves_snapshot_download(hub_server, monkeypatch, tmp_path):
    """Other tests may use huggingface_hub's snapshot_download / model_info against the fake hub."""
    import huggingface_hub

    commit = hub_server.add("org/tiny", {"config.json": CONFIG, "sub/notes.txt": b"hello"})
    hub_server.patch(monkeypatch, tmp_path)
    folder = huggingface_hub.snapshot_download("org/tiny")
    assert folder == str(tmp_path / "models--org--tiny" / "snapshots" / commit)
    assert (tmp_path / folder / "sub" / "notes.txt").read_bytes() == b"hello"
    assert huggingface_hub.model_info("org/tiny").sha == commit
    with pytest.raises(huggingface_hub.errors.RepositoryNotFoundError):
        huggingface_hub.model_info("org/nothing")
