"""What the serve tests share: a tiny random-weight checkpoint directory written by transformers (the full GPT-2
vocabulary, everything else tiny), an in-process app over it, and a real `gpt2-serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
N_POSITIONS = 96


def write_checkpoint(directory) -> str:
    import torch
    import transformers

    from gpt2_core.tokenizer import GPT2Tokenizer

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_positions=N_POSITIONS, n_embd=32, n_layer=2, n_head=4)
    model = transformers.GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # transformers' init is near-uniform over 50257 tokens; this gives peaked choices
        for name, p in model.named_parameters():
            if "ln_" not in name:
                p.copy_(0.4 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(directory)
    GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"))


def make_client(model_dir, **engine_kwargs):
    from fastapi.testclient import TestClient

    from gpt2_serve.app import create_app
    from gpt2_serve.engine import Engine

    app_kwargs = {k: engine_kwargs.pop(k) for k in ("api_key", "max_body_bytes") if k in engine_kwargs}
    engine = Engine(model_dir, **engine_kwargs)
    engine.load()
    return TestClient(create_app(engine, **app_kwargs), raise_server_exceptions=False), engine


def sse_events(lines) -> list:
    """The `data:` payloads of an event stream, parsed (the final "[DONE]" kept as the string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m gpt2_serve.cli ...` on a free port; `url`, `wait_ready()`, `stop()` (SIGTERM, returns the exit
    status), and the output once stopped."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "gpt2_serve.cli", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        self.output = ""

    def wait_ready(self, timeout=120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gpt2-serve exited with {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("gpt2-serve did not become ready")

    def stop(self, timeout=60.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output, _ = self.proc.communicate()
        return self.proc.returncode
