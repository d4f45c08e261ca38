"""What the serve tests share: a tiny random-weight checkpoint directory written by transformers (the full GPT-2
vocabulary, everything else tiny), an in-process app over it, and a real `gpt2-serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys

import pytest

from gpt2_serve import launch

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


class ServerProcess(launch.ServerProcess):
    """`python -m gpt2_serve.cli ...` (this checkout's code, the test environment) on a free port."""

    def __init__(self, *args: str):
        super().__init__([sys.executable, "-m", "gpt2_serve.cli", *args], env=ENV, name="gpt2-serve")
