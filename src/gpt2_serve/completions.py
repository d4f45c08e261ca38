"""POST /v1/completions (OpenAI's legacy completions, streaming and not) over the core scheduler.

Each prompt x n is one scheduler request (with a seed, choice j of a prompt uses seed + j, so n choices differ yet
each is reproducible alone). Events come from the decoding thread through `loop.call_soon_threadsafe` into one
asyncio queue per HTTP request; `ChoiceText` turns each choice's tokens into text that is safe to send. A stop
string cancels that choice's scheduler request at once; a client that goes away cancels all of them, so their
slots are free before the next decoding step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import StreamingResponse

from gpt2_core.scheduler import Finished, PromptEvent, QueueFull, Sampling, TokenEvent

from .errors import APIError, invalid
from .protocol import CompletionRequest
from .textstream import ChoiceText

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- the prompts
@dataclass
class Prompt:
    ids: list[int]
    text: str  # what echo returns


def prompts_of(engine, body: CompletionRequest) -> list[Prompt]:
    """The request's prompts as token ids, each checked against the vocabulary and the context length."""
    raw = body.prompt
    if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
        raw = [raw]
    prompts = []
    for i, item in enumerate(raw):
        name = "prompt" if len(raw) == 1 else f"prompt[{i}]"
        if isinstance(item, str):
            ids, text = engine.tokenizer.encode(item), item
        else:
            bad = next((t for t in item if not 0 <= t < engine.vocab_size), None)
            if bad is not None:
                raise invalid(name, f"should hold token ids in [0, {engine.vocab_size})", bad)
            ids = list(item)
            text = engine.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        if not ids:  # an empty prompt starts from <|endoftext|>, as GPT-2 was trained
            if not engine.stop_token_ids:
                raise invalid(name, "should not be empty (the model has no bos token to start from)", item)
            ids = [engine.stop_token_ids[0]]
        if len(ids) + body.max_tokens > engine.n_positions:
            raise APIError(
                400, f"This model's maximum context length is {engine.n_positions} tokens; the {name} has "
                f"{len(ids)} tokens and max_tokens is {body.max_tokens} ({len(ids) + body.max_tokens} in all). "
                f"Shorten the prompt or lower max_tokens.", param="max_tokens", code="context_length_exceeded")
        prompts.append(Prompt(ids, text))
    return prompts


def check_model(engine, name: str | None) -> None:
    if name is not None and name != engine.model_name:
        raise APIError(404, f"The model `{name}` does not exist; this server serves `{engine.model_name}`",
                       param="model", code="model_not_found", type="invalid_request_error")


def sampling_of(engine, body: CompletionRequest, seed: int | None):
    bias = body.logit_bias or {}
    bad = next((t for t in bias if not 0 <= t < engine.vocab_size), None)
    if bad is not None:
        raise invalid("logit_bias", f"keys should be token ids in [0, {engine.vocab_size})", str(bad))
    return Sampling(
        max_new_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
        min_p=body.min_p, repetition_penalty=body.repetition_penalty, presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty, logit_bias=bias or None, seed=seed, logprobs=body.logprobs,
        prompt_logprobs=bool(body.echo and body.logprobs is not None), stop_token_ids=engine.stop_token_ids)


# ----------------------------------------------------------------------------------------------- the choices
@dataclass
class Logprobs:
    """OpenAI's legacy logprobs object, filled token by token."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, tokenizer, token_id, logprob, top, offset):
        self.tokens.append(_token_text(tokenizer, token_id))
        self.token_logprobs.append(_number(logprob))
        self.top_logprobs.append(None if top is None else
                                 {_token_text(tokenizer, t): _number(lp) for t, lp in top})
        self.text_offset.append(offset)

    def take(self) -> dict:
        """The entries added since the last take (a streamed chunk's share)."""
        out = {"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top_logprobs,
               "text_offset": self.text_offset}
        self.tokens, self.token_logprobs, self.top_logprobs, self.text_offset = [], [], [], []
        return out

    def extend(self, other: dict) -> None:
        for key, values in other.items():
            getattr(self, key).extend(values)


def _token_text(tokenizer, token_id) -> str:
    return tokenizer.decode([token_id], clean_up_tokenization_spaces=False)


def _number(value):
    # JSON has no -inf: a token a filter removed has logprob -inf; OpenAI clients expect a float, so clamp it
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else -9999.0


class Choice:
    """One scheduler request of an HTTP request: its text, logprobs and end."""

    def __init__(self, index: int, prompt: Prompt, engine, body: CompletionRequest):
        self.index, self.prompt, self.tokenizer = index, prompt, engine.tokenizer
        self.text = ChoiceText(engine.tokenizer, body.stop)
        self.echo_text = prompt.text if body.echo else ""
        self.logprobs = Logprobs() if body.logprobs is not None else None
        self.offset_base = len(self.echo_text)
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.completion_tokens = 0
        self.request = None
        self.last_token_at: float | None = None

    def on_prompt(self, event) -> None:
        if self.logprobs is None:
            return
        offsets = ChoiceText(self.tokenizer, [])
        for token_id, lp, top in zip(self.prompt.ids, event.logprobs, event.top_logprobs):
            self.logprobs.add(self.tokenizer, token_id, lp, top, offsets.offset())
            offsets.add(token_id)

    def on_token(self, event) -> str:
        """The text this token makes sendable; a matching stop string cancels the request."""
        self.completion_tokens += 1
        if self.logprobs is not None:
            self.logprobs.add(self.tokenizer, event.token_id, event.logprob, event.top_logprobs,
                              self.offset_base + self.text.offset())
        delta = self.text.add(event.token_id)
        if self.text.stopped:
            self.finish_reason = "stop"
            self.request.cancel()
        return delta

    def on_finished(self, event) -> str:
        if event.reason == "error":
            self.finish_reason, self.error = "error", event.message or "generation failed"
            return ""
        self.finish_reason = "length" if event.reason == "length" else "stop"
        return self.text.finish()

    def payload(self, text: str, logprobs) -> dict:
        return {"index": self.index, "text": text, "logprobs": logprobs,
                "finish_reason": self.finish_reason if self.finish_reason != "error" else None}


class Generation:
    """The scheduler requests of one HTTP request, and the events they send back, in arrival order."""

    def __init__(self, engine, metrics, body: CompletionRequest, prompts: list[Prompt]):
        self.engine, self.metrics, self.body = engine, metrics, body
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.choices = [Choice(p * body.n + j, prompt, engine, body)
                        for p, prompt in enumerate(prompts) for j in range(body.n)]
        self.prompt_tokens = sum(len(p.ids) for p in prompts)

    def submit(self) -> None:
        samplings = [sampling_of(self.engine, self.body, None if self.body.seed is None else self.body.seed + j)
                     for j in range(self.body.n)]
        try:
            requests = self.engine.submit_all([(choice.prompt.ids, samplings[choice.index % self.body.n],
                                                self._forward(choice)) for choice in self.choices])
            for choice, request in zip(self.choices, requests):
                choice.request = request
        except QueueFull:
            self.cancel()
            raise APIError(429, f"The server is busy: {self.engine.max_queue} requests already wait for a slot; "
                           f"retry later", code="queue_full") from None
        except ValueError as e:  # what the scheduler still refuses (its own checks of prompt and settings)
            self.cancel()
            raise APIError(400, str(e)) from None
        except RuntimeError as e:  # the scheduler was shut down between the readiness check and here
            self.cancel()
            raise APIError(503, str(e)) from None
        except BaseException:
            self.cancel()
            raise
        self.metrics.prompt_tokens.inc(self.prompt_tokens * self.body.n)

    def _forward(self, choice: Choice):
        def on_event(event):  # the decoding thread
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, (choice, event, time.monotonic()))
            except RuntimeError:  # the event loop is gone (the server is stopping)
                pass
        return on_event

    def cancel(self) -> None:
        for choice in self.choices:
            if choice.request is not None:
                choice.request.cancel()

    @property
    def done(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)

    async def deltas(self):
        """(choice, new text, logprobs-so-far-taken?) for every event that changes what a client sees; ends when
        every choice has finished. Records the token metrics on the way."""
        while not self.done:
            choice, event, at = await self.queue.get()
            if choice.finish_reason is not None:  # events after our own stop-string cancel
                continue
            if isinstance(event, TokenEvent):
                self._time_token(choice, at)
                yield choice, choice.on_token(event)
            elif isinstance(event, PromptEvent):
                choice.on_prompt(event)
            elif isinstance(event, Finished):
                yield choice, choice.on_finished(event)

    def _time_token(self, choice: Choice, at: float) -> None:
        self.metrics.generation_tokens.inc()
        if choice.last_token_at is None:
            self.metrics.ttft.observe(at - choice.request.submitted_at)
        else:
            self.metrics.tpot.observe(at - choice.last_token_at)
        choice.last_token_at = at

    def usage(self) -> dict:
        completion = sum(c.completion_tokens for c in self.choices)
        prompt = self.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def error(self) -> APIError | None:
        failed = next((c for c in self.choices if c.finish_reason == "error"), None)
        if failed is None:
            return None
        status = 503 if self.engine.state == "stopping" else 500
        return APIError(status, failed.error)


# ----------------------------------------------------------------------------------------------- the handler
async def create_completion(engine, metrics, body: CompletionRequest, request: Request):
    engine.check_ready()
    check_model(engine, body.model)
    prompts = prompts_of(engine, body)
    generation = Generation(engine, metrics, body, prompts)
    header = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
              "model": engine.model_name}
    generation.submit()
    if body.stream:
        return EventStream(_stream(generation, header))
    return await _collect(generation, header, request)


async def _collect(generation: Generation, header: dict, request: Request):
    texts = {c.index: c.echo_text for c in generation.choices}
    logprobs = {c.index: None for c in generation.choices}

    async def run():
        async for choice, delta in generation.deltas():
            texts[choice.index] += delta

    try:
        await until_done_or_disconnected(run(), request)
    finally:
        generation.cancel()  # no-op for finished requests; frees the slots of a client that left
    failure = generation.error()
    if failure is not None:
        raise failure
    for choice in generation.choices:
        if choice.logprobs is not None:
            logprobs[choice.index] = choice.logprobs.take()
    choices = [c.payload(texts[c.index], logprobs[c.index]) for c in generation.choices]
    return JSONResponse({**header, "choices": choices, "usage": generation.usage()})


async def until_done_or_disconnected(work, request: Request) -> None:
    """Run `work`; stop it early if the client disconnects (the caller's `finally` cancels the requests)."""
    async with anyio.create_task_group() as group:
        async def watch():
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await work
        group.cancel_scope.cancel()


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _stream(generation: Generation, header: dict):
    include_usage = generation.body.include_usage
    extra = {"usage": None} if include_usage else {}
    try:
        for choice in generation.choices:
            if choice.echo_text:
                yield _sse({**header, "choices": [choice.payload(choice.echo_text, None)], **extra})
        async for choice, delta in generation.deltas():
            if choice.finish_reason == "error":
                break
            logprobs = choice.logprobs.take() if choice.logprobs is not None else None
            if delta or choice.finish_reason is not None or (logprobs and logprobs["tokens"]):
                yield _sse({**header, "choices": [choice.payload(delta, logprobs)], **extra})
        failure = generation.error()
    except Exception as e:  # noqa: BLE001 - the status line is sent: the only way left to tell is an error chunk
        logger.exception("stream %s failed", header["id"])
        failure = APIError(500, f"Internal server error ({type(e).__name__})")
    finally:
        generation.cancel()
    if failure is not None:
        yield _sse(failure.body())
    elif include_usage:
        yield _sse({**header, "choices": [], "usage": generation.usage()})
    yield "data: [DONE]\n\n"


class EventStream(StreamingResponse):
    """text/event-stream that always watches for the client leaving, whatever ASGI version the server speaks
    (Starlette's own StreamingResponse only does below ASGI 2.4, and then a gone client is noticed only at the next
    send): the generator is cancelled at once, so its `finally` frees the scheduler slots."""

    def __init__(self, content):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope, receive, send) -> None:
        async with anyio.create_task_group() as group:
            async def stream():
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
