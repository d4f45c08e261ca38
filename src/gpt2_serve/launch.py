"""An HTTP server as a child process on a free local port: start it, wait until its /health says 200, stop it
with SIGTERM. What the serve tests and bench/bench_serve.py (ours and `transformers serve`) share, and what a
script that drives gpt2-serve needs.

    >>> server = ServerProcess([sys.executable, "-m", "gpt2_serve.cli", "--model", "./ckpt"])  # doctest: +SKIP
    >>> server.wait_ready(); server.url                                        # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> server.stop()                                                          # doctest: +SKIP
    0
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`command + ["--port", <a free port>]` (`port_flag=None`: the command names its port itself, pass `port`),
    its output drained all along (a full pipe would block the server's logging, and so the server) into `lines`.
    `url`, `wait_ready()`, `stop()` (SIGTERM, then SIGKILL after `timeout`; returns the exit status), `output`."""

    def __init__(self, command: list[str], *, env: dict | None = None, port: int | None = None,
                 port_flag: str | None = "--port", name: str | None = None):
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name or command[0]
        if port_flag is not None:
            command = [*command, port_flag, str(self.port)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120.0, path: str = "/health") -> None:
        """Return once GET `path` answers 200; RuntimeError (with the output) if the process exits first,
        TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.reader.join(10)
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output[-5000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):  # not listening yet, or 503 while loading
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not become ready in {timeout:.0f} s: {self.output[-5000:]}")

    def stop(self, timeout: float = 60.0, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (SIGINT: as Ctrl-C) and wait for the exit; SIGKILL after `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(10)
        return self.proc.returncode
