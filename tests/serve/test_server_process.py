"""A real `gpt2-serve` process on 127.0.0.1, driven by the official openai client: completions streaming and not,
the API key, Ctrl-C (PT) and SIGTERM (TF) during a stream (error chunk, [DONE], exit 0), a disconnecting client
freeing its slot while /health keeps answering, /metrics, and start-up errors as one line."""

import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import transformers
from prometheus_client.parser import text_string_to_metric_families
from serving import ENV, ServerProcess, sse_events, tiny_dir  # noqa: F401

from gpt2_core.tokenizer import GPT2Tokenizer

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def server(tiny_dir):  # noqa: F811
    process = ServerProcess("--model", tiny_dir, "--api-key", "test-key", "--max-concurrency", "2")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


def greedy_reference(tiny_dir, max_new_tokens):  # noqa: F811
    import torch

    tokenizer = GPT2Tokenizer.from_pretrained(tiny_dir)
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    ids = tokenizer.encode(PROMPT)
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=50256)
    return tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)


def test_openai_client_completion(client, tiny_dir):  # noqa: F811
    reply = client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=12, temperature=0)
    assert reply.choices[0].text == greedy_reference(tiny_dir, 12)
    assert reply.usage.completion_tokens >= 1 and reply.object == "text_completion"
    streamed = client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [m.id for m in client.models.list().data] == [tiny_dir]


def test_openai_client_errors(client, server, tiny_dir):  # noqa: F811
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=4, temperature=-1)
    assert "temperature" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="not-this-one", prompt=PROMPT, max_tokens=4)
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=4)
    assert client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=2).choices  # still serving


def scrape(server) -> dict:
    text = httpx.get(f"{server.url}/metrics").text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_disconnecting_client_frees_its_slot(server, tiny_dir):  # noqa: F811
    # 16 long choices over 2 slots: far more work than the time the client stays
    body = {"model": tiny_dir, "prompt": PROMPT, "max_tokens": 90, "n": 16, "stream": True, "temperature": 0.9,
            "logit_bias": {"50256": -100}}  # never an early end of text: only the disconnect ends them
    before = scrape(server)["gpt2_serve:generation_tokens_total"]
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{server.url}/v1/completions", json=body,
                         headers={"Authorization": "Bearer test-key"}) as response:
            lines = response.iter_lines()  # kept: a dropped iterator closes the connection when collected
            next(lines)
            busy = scrape(server)
            assert busy["gpt2_serve:num_requests_running"] == 2 and busy["gpt2_serve:num_requests_waiting"] > 0
            health = httpx.get(f"{server.url}/health", timeout=5)  # the event loop answers while decoding runs
            assert health.status_code == 200 and health.json() == {"status": "ok"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = scrape(server)
        if now["gpt2_serve:num_requests_running"] == now["gpt2_serve:num_requests_waiting"] == 0:
            break
        time.sleep(0.02)
    assert now["gpt2_serve:num_requests_running"] == now["gpt2_serve:num_requests_waiting"] == 0
    assert now["gpt2_serve:generation_tokens_total"] - before < 16 * 90 / 2


def interrupt_during_stream(process, sig, key=None):
    """Send `sig` to the server while it streams a long completion: the stream ends with an error chunk and
    [DONE], the process exits 0, and nothing it printed is a traceback."""
    events, started = [], threading.Event()

    def read():
        body = {"prompt": PROMPT, "max_tokens": 90, "stream": True, "logit_bias": {"50256": -100}}
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.stream("POST", f"{process.url}/v1/completions", json=body, headers=headers,
                          timeout=60) as response:
            for line in response.iter_lines():
                events.extend(sse_events([line]))
                started.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(60)
    status = process.stop(sig=sig)
    reader.join(60)
    assert status == 0, process.output
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["type"] == "unavailable_error" and "shutting down" in events[-2]["error"]["message"]
    assert all("error" not in e for e in events[:-2])
    assert "Traceback" not in process.output


def test_ctrl_c_during_stream_ends_it_and_exits_0(server):
    # stops the module's server: the last test here that uses it (SIGTERM: the TF test below)
    interrupt_during_stream(server, signal.SIGINT, key="test-key")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpt2_serve.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--model", "/nonexistent/model-dir", "--port", "0"], "model-dir"),
    (["--model", "x", "--backend", "jax"], "--backend"),
    (["--model", "x", "--backend", "tf", "--int8"], "--int8"),
    (["--model", "x", "--int8", "--pack-weights"], "--pack-weights"),
    (["--model", "x", "--max-concurrency", "0"], "--max-concurrency"),
    (["--model", "x", "--api-key-file", "/nonexistent/key"], "/nonexistent/key"),
])
def test_start_up_errors_are_one_line(args, needle):
    result = run_cli(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpt2-serve")]
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.slow  # TensorFlow's start-up and the XLA compile of the step
def test_tf_backend_main_path_and_sigterm(tiny_dir):  # noqa: F811
    pytest.importorskip("tensorflow")
    process = ServerProcess("--model", tiny_dir, "--backend", "tf", "--max-concurrency", "2")
    try:
        process.wait_ready(timeout=300)
        client = openai.OpenAI(base_url=f"{process.url}/v1", api_key="unused", max_retries=0)
        reply = client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=12, temperature=0)
        assert reply.choices[0].text == greedy_reference(tiny_dir, 12)  # TF serving == transformers (PyTorch)
        chunks = list(client.completions.create(model=tiny_dir, prompt=PROMPT, max_tokens=12, temperature=0,
                                                stream=True))
        assert "".join(c.choices[0].text for c in chunks) == reply.choices[0].text
        assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
        interrupt_during_stream(process, signal.SIGTERM)
    finally:
        process.stop()
