"""The routes: /v1/completions (its work lives in completions.py), /v1/models, /tokenize, /detokenize,
/autocomplete (Write With Transformer's shape), /health and /metrics."""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .completions import Generation, check_model, create_completion, prompts_of, until_done_or_disconnected
from .errors import APIError, invalid
from .protocol import AutocompleteRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest


def open_router(engine, metrics) -> APIRouter:
    """Routes that stay open when an API key is set: health checks and scraping need no secret."""
    router = APIRouter()

    @router.get("/health")
    async def health():
        engine.check_ready()
        return {"status": "ok"}

    @router.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    return router


def model_router(engine, metrics) -> APIRouter:
    """Routes that run the model (the API key guards them when one is set)."""
    router = APIRouter()

    @router.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await create_completion(engine, metrics, body, request)

    def card():
        return {"id": engine.model_name, "object": "model", "created": engine.created, "owned_by": "gpt2",
                "max_model_len": engine.n_positions or None}

    @router.get("/v1/models")
    async def models():
        return {"object": "list", "data": [card()]}

    @router.get("/v1/models/{name:path}")
    async def model(name: str):
        check_model(engine, name)
        return card()

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        engine.check_ready()
        return {"tokens": engine.tokenizer.encode(body.content)}

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        engine.check_ready()
        size = len(engine.tokenizer)
        bad = next((t for t in body.tokens if not 0 <= t < size), None)
        if bad is not None:
            raise invalid("tokens", f"should hold token ids in [0, {size})", bad)
        return {"content": engine.tokenizer.decode(body.tokens, clean_up_tokenization_spaces=False)}

    @router.post("/autocomplete")
    async def autocomplete(body: AutocompleteRequest, request: Request):
        return await _autocomplete(engine, metrics, body, request)

    return router


async def _autocomplete(engine, metrics, body: AutocompleteRequest, request: Request):
    """`samples` continuations of `context`; at `max_time` seconds the texts so far are returned. A context longer
    than the model's window keeps its end, as an editor's autocomplete should."""
    engine.check_ready()
    if body.gen_length >= engine.n_positions:
        raise invalid("gen_length", f"should be below the model's context length {engine.n_positions}",
                      body.gen_length)
    ids = engine.tokenizer.encode(body.context)[-(engine.n_positions - body.gen_length):]
    completion = CompletionRequest(prompt=ids or "", max_tokens=body.gen_length, n=body.samples,
                                   temperature=body.temperature, top_p=body.top_p, top_k=body.top_k)
    generation = Generation(engine, metrics, completion, prompts_of(engine, completion))
    started = time.monotonic()
    texts = {c.index: "" for c in generation.choices}
    times = {c.index: None for c in generation.choices}
    generation.submit()

    async def run():
        with anyio.move_on_after(body.max_time if body.max_time is not None else float("inf")):
            async for choice, delta in generation.deltas():
                texts[choice.index] += delta
                if choice.finish_reason is not None:
                    times[choice.index] = time.monotonic() - started

    try:
        await until_done_or_disconnected(run(), request)
    finally:
        generation.cancel()
    failure = generation.error()
    if failure is not None:
        raise failure
    total = time.monotonic() - started
    sentences = [{"value": texts[c.index] + c.text.finish(),
                  "time": round(times[c.index] if times[c.index] is not None else total, 4)}
                 for c in generation.choices]
    return JSONResponse({"sentences": sentences, "time": round(total, 4)})


def require_key(api_key: str | None):
    """A dependency: 401 unless the request's `Authorization: Bearer <key>` equals `api_key` (constant time)."""
    import hmac

    expected = api_key.encode() if api_key else None

    async def check(request: Request):
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise APIError(401, "Invalid or missing API key: send `Authorization: Bearer <key>`",
                           code="invalid_api_key")
    return check
