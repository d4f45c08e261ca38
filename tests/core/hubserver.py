"""A tiny fake Hugging Face hub on 127.0.0.1 for tests: serves files in the hub's URL layout.

    GET/HEAD /{repo_id}/resolve/{revision}/{filename}     the file, with the headers huggingface_hub needs:
             ETag, X-Repo-Commit, Content-Length (404 + X-Error-Code: RepoNotFound / RevisionNotFound / EntryNotFound)
    GET      /api/models/{repo_id}[/revision/{revision}]   {"id", "sha", "siblings"} (model_info)
    GET      /api/models/{repo_id}/tree/{revision}          the file list (list_repo_tree, snapshot_download)

Usage (in-process, huggingface_hub's import-time constants patched for the test):

    with HubServer() as server:
        server.add("org/tiny", {"config.json": b"{}"})
        server.patch(monkeypatch, cache_dir=tmp_path / "cache")
        hub.resolve_file("org/tiny", "config.json")

or in a subprocess with real environment variables: `run_python(code, server.env(cache_dir))`.
The server binds a random loopback port, answers at most `max_requests` requests, and shuts itself down after
`lifetime` seconds even if a test forgets to stop it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping


def fake_commit(*parts: str) -> str:
    """A deterministic 40-hex commit id."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


class HubServer:
    def __init__(self, *, lifetime: float = 120.0, max_requests: int = 10_000):
        self.repos: dict[str, dict[str, str]] = {}  # repo_id -> {branch/tag: commit}
        self.commits: dict[str, dict[str, bytes | Path]] = {}  # commit -> files
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._stopping = False
        self._connections: set = set()  # open client sockets, closed on stop (keep-alive would outlive shutdown)
        self.stopped = threading.Event()  # set once the port is closed

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- content
    def add(self, repo_id: str, files: Mapping[str, bytes | str | os.PathLike] | str | os.PathLike, *,
            revision: str = "main") -> str:
        """Publish `files` (name -> bytes or a file path, or a directory) as `revision` of `repo_id`.

        Returns the commit id; both the branch name and the commit resolve to these files.
        """
        if isinstance(files, (str, os.PathLike)):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        content = {name: (Path(v) if isinstance(v, (str, os.PathLike)) else bytes(v)) for name, v in files.items()}
        commit = fake_commit(repo_id, revision, *sorted(content))
        with self._lock:
            self.commits[commit] = content
            self.repos.setdefault(repo_id, {})[revision] = commit
        return commit

    def commit_of(self, repo_id: str, revision: str = "main") -> str:
        return self.repos[repo_id][revision]

    # -- lifecycle
    def start(self) -> "HubServer":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._timer.cancel()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.stopped.set()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- pointing huggingface_hub at us
    def env(self, cache_dir, *, offline: bool = False, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess whose huggingface_hub talks to this server and caches in `cache_dir`."""
        env = dict(os.environ if base is None else base)
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME"):
            env.pop(var, None)
        env.update({"HF_ENDPOINT": self.url, "HF_HUB_CACHE": os.fspath(cache_dir),
                    "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                    "HF_HUB_ETAG_TIMEOUT": "5", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        return env

    def patch(self, monkeypatch, cache_dir, *, offline: bool = False) -> None:
        """Point this process's huggingface_hub at the server (undone by monkeypatch at test end).

        huggingface_hub computes these constants from the environment at import time, so setting variables is
        not enough in-process; the hub URL template and the cache are read from `constants` at call time.
        """
        from huggingface_hub import constants, hf_api

        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(hf_api.api, "endpoint", self.url)  # the shared HfApi behind model_info & co.
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", os.fspath(cache_dir))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        if offline:
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_python(code: str, env: Mapping[str, str], *, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (so huggingface_hub reads `env` at import); raises on failure."""
    result = subprocess.run([sys.executable, "-c", code], env=dict(env), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _make_handler(server: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def setup(self):
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self):
            with server._lock:
                server._connections.discard(self.connection)
            super().finish()

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        def _serve(self, *, body: bool):
            if server._stopping:  # a request on a keep-alive connection after stop(): hang up
                self.close_connection = True
                return
            with server._lock:
                server.requests.append((self.command, self.path))
                server.authorizations.append(self.headers.get("Authorization"))
                too_many = len(server.requests) > server.max_requests
            if too_many:
                return self._error(429, None, "too many requests for the test hub")
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/"):], body)
            if "/resolve/" not in path:
                return self._error(404, None, "unknown route")
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            self._file(urllib.parse.unquote(repo_id), urllib.parse.unquote(revision),
                       urllib.parse.unquote(filename), body)

        def _commit(self, repo_id: str, revision: str):
            branches = server.repos.get(repo_id)
            if branches is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            commit = branches.get(revision) or (revision if revision in branches.values() else None)
            if commit is None:
                self._error(404, "RevisionNotFound", "Invalid rev id")
            return commit

        def _file(self, repo_id: str, revision: str, filename: str, body: bool):
            commit = self._commit(repo_id, revision)
            if commit is None:
                return
            content = server.commits[commit].get(filename)
            if content is None:
                return self._error(404, "EntryNotFound", "Entry not found", commit=commit)
            data = content.read_bytes() if isinstance(content, Path) else content
            start = 0
            status = 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng[6:].rstrip("-").isdigit():
                start, status = min(int(rng[6:].rstrip("-")), len(data)), 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if body:
                self.wfile.write(data[start:])

        def _api(self, rest: str, body: bool):
            tree = "/tree/" in rest
            repo_id, _, revision = rest.partition("/tree/" if tree else "/revision/")
            revision = urllib.parse.unquote(revision).split("/")[0] if tree else urllib.parse.unquote(revision)
            commit = self._commit(urllib.parse.unquote(repo_id), revision or "main")
            if commit is None:
                return
            files = server.commits[commit]
            if tree:  # list_repo_tree (snapshot_download): every file, recursively, in one page
                entries = []
                for name in sorted(files):
                    data = files[name].read_bytes() if isinstance(files[name], Path) else files[name]
                    entries.append({"type": "file", "path": name, "size": len(data),
                                    "oid": hashlib.sha1(data).hexdigest()})
                payload = json.dumps(entries).encode()
            else:
                payload = json.dumps({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                                      "siblings": [{"rfilename": n} for n in sorted(files)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Repo-Commit", commit)
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def _error(self, status: int, code: str | None, message: str, *, commit: str | None = None):
            payload = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler
