"""/v1/completions and the small routes through an ASGI client over a real tiny model: greedy text equals
transformers' generate on the same checkpoint, streaming equals non-streaming, stop strings, n, seeds, logprobs
against transformers' own log-softmax, echo, usage, /autocomplete, /tokenize, /metrics."""

import numpy as np
import pytest
import torch
import transformers
from prometheus_client.parser import text_string_to_metric_families
from serving import make_client, sse_events, tiny_dir  # noqa: F401

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def served(tiny_dir):  # noqa: F811
    client, engine = make_client(tiny_dir, max_concurrency=4)
    yield client, engine
    engine.shutdown()


@pytest.fixture(scope="module")
def client(served):
    return served[0]


@pytest.fixture(scope="module")
def reference(tiny_dir):  # noqa: F811
    return transformers.GPT2LMHeadModel.from_pretrained(tiny_dir).eval()


def complete(client, **body):
    response = client.post("/v1/completions", json={"prompt": PROMPT, "temperature": 0, **body})
    assert response.status_code == 200, response.text
    return response.json()


def stream(client, **body):
    with client.stream("POST", "/v1/completions", json={"prompt": PROMPT, "temperature": 0, "stream": True,
                                                        **body}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.iter_lines())


def hf_greedy(reference, tokenizer, prompt_ids, max_new_tokens):
    with torch.no_grad():
        out = reference.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=50256)
    return out[0, len(prompt_ids):].tolist()


def test_greedy_text_equals_transformers_generate(served, reference):
    client, engine = served
    ids = engine.tokenizer.encode(PROMPT)
    reply = complete(client, max_tokens=24)
    tokens = hf_greedy(reference, engine.tokenizer, ids, 24)
    expected = engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert reply["choices"][0]["text"] == expected and expected
    assert reply["object"] == "text_completion" and reply["id"].startswith("cmpl-")
    assert reply["model"] == engine.model_name
    assert reply["choices"][0]["finish_reason"] == ("stop" if 50256 in tokens else "length")
    assert reply["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(tokens),
                              "total_tokens": len(ids) + len(tokens)}


def test_token_id_prompts_and_several_prompts(served, reference):
    client, engine = served
    prompts = [engine.tokenizer.encode("Hello there"), engine.tokenizer.encode("One two three four")]
    reply = complete(client, prompt=prompts, max_tokens=6, n=2)
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2, 3]
    for i, choice in enumerate(reply["choices"]):
        tokens = hf_greedy(reference, engine.tokenizer, prompts[i // 2], 6)
        assert choice["text"] == engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert reply["usage"]["prompt_tokens"] == sum(map(len, prompts))
    single = complete(client, prompt=prompts[1], max_tokens=6)
    assert single["choices"][0]["text"] == reply["choices"][2]["text"]


def test_packed_weights_serve_the_same_tokens(tiny_dir, reference):  # noqa: F811
    """--pack-weights: four prompts at once run batched steps on the prepacked copy, with generate's tokens."""
    client, engine = make_client(tiny_dir, max_concurrency=4, pack_weights=True)
    try:
        assert engine.scheduler.runner.step_model is not engine.model
        prompts = [engine.tokenizer.encode(text) for text in ("Hello there", "One two three four", "A", "The end")]
        reply = complete(client, prompt=prompts, max_tokens=8)
        for prompt, choice in zip(prompts, reply["choices"]):
            tokens = hf_greedy(reference, engine.tokenizer, prompt, 8)
            assert choice["text"] == engine.tokenizer.decode(tokens, skip_special_tokens=True)
    finally:
        engine.shutdown()
    with pytest.raises(ValueError, match="pack_weights prepacks float32 weights"):
        type(engine)(tiny_dir, int8=True, pack_weights=True)


def test_stream_equals_non_stream(client):
    full = complete(client, max_tokens=30, stop=None)
    events = stream(client, max_tokens=30, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    usage, chunks = events[-2], events[:-2]
    assert usage["choices"] == [] and usage["usage"] == full["usage"]
    assert len({c["id"] for c in events[:-1]}) == 1
    assert "".join(c["choices"][0]["text"] for c in chunks) == full["choices"][0]["text"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]
    assert len(chunks) > 3  # text arrives token by token, not at the end


def test_stop_string_across_token_boundary(served):
    client, engine = served
    full = complete(client, max_tokens=30)["choices"][0]["text"]
    tokens = [engine.tokenizer.decode([t]) for t in engine.tokenizer.encode(full)]
    # a stop string made of the end of one token and the start of the next, in the middle of the text
    k = len(tokens) // 2
    stop = tokens[k][-2:] + tokens[k + 1][:2]
    cut = full.find(stop)
    assert cut > 0
    reply = complete(client, max_tokens=30, stop=["zzzz-never", stop])["choices"][0]
    assert reply["text"] == full[:cut] and reply["finish_reason"] == "stop"
    events = stream(client, max_tokens=30, stop=stop)[:-1]
    assert "".join(e["choices"][0]["text"] for e in events) == full[:cut]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_n_with_seed_is_seed_plus_index(client):
    body = {"max_tokens": 8, "temperature": 1.0, "top_k": 40}
    both = complete(client, n=2, seed=5, **body)["choices"]
    first = complete(client, seed=5, **body)["choices"][0]["text"]
    second = complete(client, seed=6, **body)["choices"][0]["text"]
    assert [both[0]["text"], both[1]["text"]] == [first, second]
    assert complete(client, n=2, seed=5, **body)["choices"] == both  # reproducible


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_logprobs_and_echo_against_transformers(served, reference):
    client, engine = served
    ids = engine.tokenizer.encode(PROMPT)
    reply = complete(client, max_tokens=6, logprobs=2, echo=True)
    choice = choice_lp = reply["choices"][0]
    lp = choice_lp["logprobs"]
    text = choice["text"]
    assert text.startswith(PROMPT)
    generated = hf_greedy(reference, engine.tokenizer, ids, 6)
    sequence = ids + generated
    with torch.no_grad():
        expected = log_softmax(reference(torch.tensor([sequence])).logits[0].double().numpy())
    n = len(sequence) if 50256 not in generated else len(sequence) - 1
    assert len(lp["tokens"]) == n
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for i in range(1, n):
        assert lp["token_logprobs"][i] == pytest.approx(expected[i - 1, sequence[i]], abs=1e-4)
        top = sorted(expected[i - 1], reverse=True)[:2]
        assert sorted(lp["top_logprobs"][i].values(), reverse=True) == pytest.approx(top, abs=1e-4)
    assert lp["tokens"] == [engine.tokenizer.decode([t]) for t in sequence[:n]]
    assert lp["text_offset"][0] == 0 and lp["text_offset"][len(ids)] == len(PROMPT)
    assert all(text[o:].startswith(t) for o, t in zip(lp["text_offset"], lp["tokens"]))


def test_streamed_logprobs_add_up(client):
    full = complete(client, max_tokens=10, logprobs=1)["choices"][0]["logprobs"]
    events = stream(client, max_tokens=10, logprobs=1)[:-1]
    joined = {key: [v for e in events for v in e["choices"][0]["logprobs"][key]] for key in full}
    assert joined == full


def test_unfinished_character_is_held_back(served):
    client, engine = served
    # the emoji's UTF-8 bytes span several tokens: force the one holding its first bytes
    first = engine.tokenizer.encode("\U0001f642")[0]
    assert "\ufffd" in engine.tokenizer.decode([first])
    events = stream(client, max_tokens=3, logit_bias={str(first): 100})[:-1]
    texts = [e["choices"][0]["text"] for e in events]
    assert all("\ufffd" not in t for t in texts[:-1])  # nothing sent until the generation ends, then U+FFFD
    assert "".join(texts) == engine.tokenizer.decode([first] * 3)


def test_tokenize_detokenize_models_health(served):
    client, engine = served
    ids = client.post("/tokenize", json={"content": "Hello world, héllo"}).json()["tokens"]
    assert ids == engine.tokenizer.encode("Hello world, héllo")
    assert client.post("/detokenize", json={"tokens": ids}).json() == {"content": "Hello world, héllo"}
    assert client.post("/detokenize", json={"tokens": [10**6]}).status_code == 400
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == engine.model_name
    assert client.get("/health").json() == {"status": "ok"}


def test_autocomplete_in_wwt_shape(client):
    reply = client.post("/autocomplete", json={"context": PROMPT, "samples": 2, "gen_length": 5,
                                               "temperature": 0}).json()
    assert set(reply) == {"sentences", "time"} and len(reply["sentences"]) == 2
    greedy = complete(client, max_tokens=5)["choices"][0]["text"]
    assert [s["value"] for s in reply["sentences"]] == [greedy, greedy]
    assert all(s["time"] >= 0 for s in reply["sentences"])
    long_context = "word " * 500  # past the window: its end is kept
    assert client.post("/autocomplete", json={"context": long_context, "gen_length": 4}).status_code == 200
    assert client.post("/autocomplete", json={"context": "x", "samples": 0}).status_code == 400


def test_metrics_count(served):
    client, _ = served

    def scrape():
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        return samples

    before = scrape()
    reply = complete(client, max_tokens=7, n=2)
    client.post("/v1/completions", json={"prompt": PROMPT, "temperature": -1})
    after = scrape()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("gpt2_serve:requests_total", route="/v1/completions", status="200") == 1
    assert delta("gpt2_serve:requests_total", route="/v1/completions", status="400") == 1
    assert delta("gpt2_serve:generation_tokens_total") == sum(
        1 for _ in range(reply["usage"]["completion_tokens"]))  # every token went through the scheduler
    assert delta("gpt2_serve:prompt_tokens_total") == 2 * reply["usage"]["prompt_tokens"]
    assert delta("gpt2_serve:time_to_first_token_seconds_count") == 2
    assert delta("gpt2_serve:time_per_output_token_seconds_count") == reply["usage"]["completion_tokens"] - 2
    assert after[("gpt2_serve:num_requests_running", ())] == 0
    assert after[("gpt2_serve:num_requests_waiting", ())] == 0
