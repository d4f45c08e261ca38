"""Every bad request gets the OpenAI error shape with the right status, names the field and the value it got, and
the server goes on serving (ASGI client over a real tiny model)."""

import pytest
from serving import N_POSITIONS, make_client, tiny_dir  # noqa: F401

GOOD = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def client(tiny_dir):  # noqa: F811
    client, engine = make_client(tiny_dir, max_concurrency=2)
    yield client
    engine.shutdown()


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert "Traceback" not in response.text
    return body["error"]


@pytest.mark.parametrize("field,value,needle", [
    ("temperature", -0.5, "-0.5"),
    ("temperature", "hot", "hot"),
    ("top_p", 0, "(0, 1]"),
    ("top_p", 1.5, "1.5"),
    ("top_k", -2, "-2"),
    ("min_p", 2, "2"),
    ("n", 0, "0"),
    ("n", 1.5, "1.5"),
    ("max_tokens", 0, "0"),
    ("max_tokens", "16", "16"),
    ("max_tokens", True, "true"),
    ("logprobs", 6, "6"),
    ("logprobs", -1, "-1"),
    ("presence_penalty", 3, "3"),
    ("frequency_penalty", -2.5, "-2.5"),
    ("repetition_penalty", 0, "0"),
    ("stop", 5, "5"),
    ("stop", [""], '[""]'),
    ("seed", -1, "-1"),
    ("stream", "yes", "yes"),
    ("echo", 1, "1"),
    ("logit_bias", {"abc": 1}, "abc"),
    ("logit_bias", {"10": 101}, "101"),
    ("logit_bias", {"60000": 1}, "60000"),
    ("prompt", 3.5, "3.5"),
    ("prompt", [], "[]"),
    ("prompt", [1, "a"], "a"),
    ("prompt", [50257], "50257"),
    ("prompt", [[1, 2], [-1]], "-1"),
    ("suffix", "the end", "not supported"),
    ("best_of", 3, "not supported"),
    ("user", 5, "5"),
])
def test_bad_field_is_400_naming_it(client, field, value, needle):
    error = error_of(client.post("/v1/completions", json={**GOOD, field: value}), 400)
    assert error["type"] == "invalid_request_error"
    assert field in error["message"] and needle in error["message"], error
    assert error["param"] is not None and error["param"].startswith(field), error
    assert client.post("/v1/completions", json=GOOD).status_code == 200  # still serving


def test_stream_options_need_stream(client):
    error = error_of(client.post("/v1/completions", json={**GOOD, "stream_options": {"include_usage": True}}), 400)
    assert "stream_options" in error["message"]


def test_missing_prompt(client):
    error = error_of(client.post("/v1/completions", json={"max_tokens": 2}), 400)
    assert error["param"] == "prompt" and "required" in error["message"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
def test_body_not_a_json_object(client, body):
    error = error_of(client.post("/v1/completions", content=body, headers={"content-type": "application/json"}), 400)
    assert error["type"] == "invalid_request_error"


def test_context_length_names_both_lengths(client):
    prompt = list(range(N_POSITIONS - 10))
    error = error_of(client.post("/v1/completions", json={**GOOD, "prompt": prompt, "max_tokens": 11}), 400)
    assert str(N_POSITIONS - 10) in error["message"] and "11" in error["message"]
    assert str(N_POSITIONS) in error["message"] and error["param"] == "max_tokens"
    assert client.post("/v1/completions", json={**GOOD, "prompt": prompt, "max_tokens": 10}).status_code == 200


def test_unknown_model_is_404(client):
    error = error_of(client.post("/v1/completions", json={**GOOD, "model": "gpt-4"}), 404)
    assert "gpt-4" in error["message"] and error["code"] == "model_not_found"
    error_of(client.get("/v1/models/gpt-4"), 404)


def test_unknown_route_and_method(client):
    error_of(client.get("/v1/nothing-here"), 404)
    error_of(client.get("/v1/completions"), 405)


def test_oversized_body_is_413(tiny_dir):  # noqa: F811
    client, engine = make_client(tiny_dir, max_body_bytes=1000)
    try:
        error = error_of(client.post("/v1/completions", json={**GOOD, "prompt": "x" * 2000}), 413)
        assert "1000" in error["message"]
        chunks = iter([b'{"prompt": "', b"y" * 1500, b'"}'])  # no Content-Length: counted as it arrives
        error_of(client.post("/v1/completions", content=chunks, headers={"content-type": "application/json"}), 413)
        assert client.post("/v1/completions", json=GOOD).status_code == 200
    finally:
        engine.shutdown()


def test_api_key(tiny_dir):  # noqa: F811
    client, engine = make_client(tiny_dir, api_key="s3cret")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}):
            error = error_of(client.post("/v1/completions", json=GOOD, headers=headers), 401)
            assert error["type"] == "authentication_error"
            error_of(client.get("/v1/models", headers=headers), 401)
            error_of(client.post("/tokenize", json={"content": "hi"}, headers=headers), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/completions", json=GOOD, headers=ok).status_code == 200
        assert client.get("/v1/models", headers=ok).status_code == 200
        assert client.get("/health").status_code == 200  # open: health checks need no secret
        assert client.get("/metrics").status_code == 200
    finally:
        engine.shutdown()


def test_queue_full_is_429(tiny_dir):  # noqa: F811
    # one slot and room for one waiting request: three choices cannot all be taken
    client, engine = make_client(tiny_dir, max_concurrency=1, max_queue=1)
    try:
        error = error_of(client.post("/v1/completions", json={**GOOD, "n": 3, "max_tokens": 20}), 429)
        assert error["type"] == "rate_limit_error"
        assert client.post("/v1/completions", json=GOOD).status_code == 200  # the rejected choices were cancelled
    finally:
        engine.shutdown()


def test_loading_is_503_then_ok(tiny_dir):  # noqa: F811
    from fastapi.testclient import TestClient

    from gpt2_serve.app import create_app
    from gpt2_serve.engine import Engine

    engine = Engine(tiny_dir)
    client = TestClient(create_app(engine))
    for response in (client.get("/health"), client.post("/v1/completions", json=GOOD),
                     client.post("/tokenize", json={"content": "hi"})):
        assert error_of(response, 503)["type"] == "unavailable_error"
    engine.start().join(120)
    assert client.get("/health").json() == {"status": "ok"}
    engine.shutdown()
    assert error_of(client.post("/v1/completions", json=GOOD), 503)["type"] == "unavailable_error"


def test_failed_load_is_503_naming_the_model(tmp_path):
    from fastapi.testclient import TestClient

    from gpt2_serve.app import create_app
    from gpt2_serve.engine import Engine

    engine = Engine(str(tmp_path / "missing-model"))
    engine.start().join(60)
    error = error_of(TestClient(create_app(engine)).get("/health"), 503)
    assert "missing-model" in error["message"] and engine.state == "failed"
