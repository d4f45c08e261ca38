"""Continuous batching: one decoding thread serves every request of one model over a fixed number of slots.

Between two decoding steps the thread admits at most one queued request (its prompt is prefilled into a free
slot, so a new request never stalls the running ones for more than one prefill; with none running, it fills
every free slot first), then runs one step for all active slots at once: the backend's slot runner turns one
token per slot into the next logits, one batched forward. Each request keeps its own sampling settings, tokens,
penalty counts and random stream (gpt2_core.sampling_state), so its tokens are those `model.generate` gives it
alone on the same prompt, settings and seed, whatever runs beside it. Finished and cancelled requests leave
their slot before the next step.

Framework-neutral (numpy only): gpt2_pt.slots.SlotRunner and gpt2_tf.slots.TFSlotRunner are the backends.

    >>> scheduler = Scheduler(SlotRunner(model, n_slots=8), max_slots=8, max_queue=64)
    >>> scheduler.start()
    >>> request = scheduler.submit([464, 3290], Sampling(max_new_tokens=16, temperature=0.8, seed=1))
    >>> [e.token_id for e in request.events() if isinstance(e, TokenEvent)]

Contract notes (the serve helper codes against this; changes from sched_api.md are listed here):
  * Sampling lives in gpt2_core.sampling_state, the SlotRunner protocol in gpt2_core.slot_runner (both
    re-exported here); Sampling validates itself (ValueError).
  * A stop token is not sent as a TokenEvent: Finished("stop", stop_token_id=...) names it, and counts it in
    completion_tokens (as OpenAI and vLLM count it); its text is no part of the completion.
  * submit raises ValueError for a prompt that is empty, holds ids outside the vocabulary, or does not leave
    max_new_tokens of room in the runner's max_length; QueueFull when max_queue requests already wait;
    RuntimeError after shutdown.
  * Events come in order: PromptEvent (when prompt_logprobs), TokenEvent..., then exactly one Finished (also
    kept as `request.finished`). `logprobs` goes up to 20 (the chat API's top_logprobs limit).
  * max_slots defaults to runner.n_slots, max_queue to 64. A runner may have `warmup()`: start() runs it first,
    on the decoding thread (TF traces and XLA-compiles there, seconds; requests submitted meanwhile wait);
    start(wait=True) returns when it is done.
  * shutdown(message, timeout=30.0) joins the thread; start() or submit() after it raise RuntimeError.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .sampling_state import RequestSampler, Sampling
from .slot_runner import SlotRunner

__all__ = ["Finished", "PromptEvent", "QueueFull", "Request", "Sampling", "Scheduler", "SlotRunner", "TokenEvent"]

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """submit() when `max_queue` requests already wait for a slot."""


@dataclass
class TokenEvent:
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


@dataclass
class PromptEvent:
    """Once, after the prefill, when `prompt_logprobs` was asked: one entry per prompt token (the first None)."""
    logprobs: list[float | None]
    top_logprobs: list[list[tuple[int, float]] | None]


@dataclass
class Finished:
    reason: str  # "stop" (a stop token) | "length" | "cancelled" | "error"
    message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_token_id: int | None = None


Event = TokenEvent | PromptEvent | Finished


class Request:
    """A submitted request. Its events go to the `on_event` callback given to submit (called on the decoding
    thread) and into a queue read by `events()`. `cancel()` is thread-safe: a waiting request leaves the queue,
    a running one its slot, before the next decoding step; it then gets Finished("cancelled")."""

    def __init__(self, request_id: str, prompt_ids: np.ndarray, sampling: Sampling, on_event):
        self.id = request_id
        self.prompt_ids, self.sampling, self.on_event = prompt_ids, sampling, on_event
        self.submitted_at = time.monotonic()
        self.first_token_at: float | None = None
        self.finished: Finished | None = None
        self._cancelled = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield the events as they come, up to and including Finished; `timeout` (seconds) bounds each wait
        (queue.Empty when it passes)."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, Finished):
                return

    def _emit(self, event: Event) -> None:
        """Queue the event and hand it to on_event (a failing callback is logged; the request goes on)."""
        if isinstance(event, TokenEvent) and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if isinstance(event, Finished):
            self.finished = event
        self._events.put(event)
        if self.on_event is not None:
            self.on_event(event)


class _Active:
    """A request in a slot: its sampler and the last token it fed the model."""

    def __init__(self, request: Request, slot: int, sampler: RequestSampler):
        self.request, self.slot, self.sampler = request, slot, sampler
        self.last_token = -1


class Scheduler:
    """The decoding loop over `runner`'s slots (at most `max_slots` of them busy) with a waiting queue of at most
    `max_queue` requests. `start()` runs it on its own thread; `shutdown()` stops it."""

    def __init__(self, runner: SlotRunner, *, max_slots: int | None = None, max_queue: int = 64):
        max_slots = runner.n_slots if max_slots is None else max_slots
        if isinstance(max_slots, bool) or not isinstance(max_slots, int) or not 1 <= max_slots <= runner.n_slots:
            raise ValueError(f"`max_slots` should be an integer in [1, runner.n_slots={runner.n_slots}]. Received: "
                             f"max_slots={max_slots!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"`max_queue` should be an integer >= 0. Received: max_queue={max_queue!r}")
        self.runner, self.max_slots, self.max_queue = runner, max_slots, max_queue
        self._waiting: collections.deque[Request] = collections.deque()
        self._active: dict[int, _Active] = {}  # slot -> request
        self._free = list(range(max_slots - 1, -1, -1))  # a stack: the lowest slot is reused first
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed: str | None = None  # the shutdown message once shut down
        self._ids = itertools.count()
        self._warm = threading.Event()  # set once the decoding thread has run the runner's warmup

    # -- the server's side (any thread)
    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._active)

    def start(self, wait: bool = False) -> None:
        """Start the decoding thread (once). Its first job is the runner's `warmup()`, if it has one (TF traces
        and compiles there); requests submitted meanwhile wait in the queue. `wait=True` returns once it is done."""
        with self._lock:
            if self._closed is not None:
                raise RuntimeError("The scheduler was shut down; make a new one")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="gpt2-decode", daemon=True)
                self._thread.start()
        if wait:
            self._warm.wait()

    def submit(self, prompt_ids, sampling: Sampling, on_event: Callable[[Event], None] | None = None) -> Request:
        """Queue a request; its events follow (see Request). Raises QueueFull, or ValueError for a prompt the
        runner cannot take."""
        return self.submit_all([(prompt_ids, sampling, on_event)])[0]

    def submit_all(self, items) -> list[Request]:
        """Queue several requests (prompt_ids, sampling, on_event) at once, or none of them: QueueFull when the
        queue has no room for all (a completion's n choices are accepted whole)."""
        checked = [(self._checked_ids(ids, sampling), sampling, on_event) for ids, sampling, on_event in items]
        with self._lock:
            if self._closed is not None:
                raise RuntimeError(f"The scheduler was shut down: {self._closed}")
            if len(self._waiting) + len(checked) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests already wait and {len(checked)} more came "
                                f"(max_queue={self.max_queue})")
            requests = [Request(f"req-{next(self._ids)}", ids, sampling, on_event)
                        for ids, sampling, on_event in checked]
            self._waiting.extend(requests)
            self._lock.notify()
        return requests

    def _checked_ids(self, prompt_ids, sampling: Sampling) -> np.ndarray:
        if not isinstance(sampling, Sampling):
            raise ValueError(f"`sampling` should be a Sampling. Received: {type(sampling).__name__}")
        ids = np.asarray(prompt_ids)
        vocab, room = self.runner.vocab_size, self.runner.max_length
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"`prompt_ids` should be a non-empty list of token ids. Received: shape {ids.shape}, "
                             f"dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"`prompt_ids` should be in [0, {vocab}). Received values from {ids.min()} to "
                             f"{ids.max()}")
        if ids.size + sampling.max_new_tokens > room:
            raise ValueError(f"The prompt ({ids.size} tokens) plus max_new_tokens={sampling.max_new_tokens} pass "
                             f"the model's context ({room} positions)")
        sampling.check_vocab(vocab)
        return ids.astype(np.int64)

    def shutdown(self, message: str = "server shutting down", timeout: float | None = 30.0) -> None:
        """Stop the decoding thread; every request not yet finished gets Finished("error", message)."""
        with self._lock:
            if self._closed is None:
                self._closed = message
            self._lock.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._close_all(message)

    # -- the decoding thread
    def _loop(self) -> None:
        warmup = getattr(self.runner, "warmup", None)
        if warmup is not None:
            try:
                warmup()
            except Exception:  # noqa: BLE001 - the requests will meet the problem themselves, with its message
                logger.exception("the slot runner's warmup failed")
        self._warm.set()
        while True:
            with self._lock:
                while self._closed is None and not self._waiting and not self._active:
                    self._lock.wait()
                if self._closed is not None:
                    break
            try:
                self._drop_cancelled()
                # one prefill between two steps while requests run; with none running there is nobody to stall
                idle = not self._active
                while self._free and self._waiting and self._closed is None:
                    self._admit()
                    if not idle:
                        break
                if self._active and self._closed is None:  # a shutdown meanwhile: no more steps
                    self._step()
            except Exception as e:  # noqa: BLE001 - a fault outside any one request: end those running, go on
                logger.exception("decoding loop error")
                for active in list(self._active.values()):
                    self._fail(active, e)
        self._close_all(self._closed)

    def _close_all(self, message: str) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for active in list(self._active.values()):
            self._finish(active, Finished("error", message))
        for request in waiting:
            self._finish_request(request, Finished("error", message, prompt_tokens=len(request.prompt_ids)))

    def _drop_cancelled(self) -> None:
        for active in [a for a in self._active.values() if a.request.cancelled]:
            self._finish(active, Finished("cancelled"))
        with self._lock:  # submit() appends from other threads
            cancelled = [r for r in self._waiting if r.cancelled]
            if cancelled:
                self._waiting = collections.deque(r for r in self._waiting if not r.cancelled)
        for request in cancelled:
            self._finish_request(request, Finished("cancelled", prompt_tokens=len(request.prompt_ids)))

    def _admit(self) -> None:
        """Prefill the oldest waiting request into a free slot and choose its first token."""
        with self._lock:
            request = self._waiting.popleft()
        slot = self._free.pop()
        active = _Active(request, slot, None)
        self._active[slot] = active
        try:
            sampling = request.sampling
            active.sampler = RequestSampler(sampling, request.prompt_ids, self.runner.vocab_size)
            if not sampling.greedy:
                self.runner.seed(slot, sampling.seed)
            logits = self.runner.prefill(slot, request.prompt_ids, all_logits=sampling.prompt_logprobs)
            if sampling.prompt_logprobs:
                request._emit(PromptEvent(*active.sampler.prompt_logprobs(logits)))
                logits = logits[-1]
            self._advance(active, logits)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the loop
            self._fail(active, e)

    def _step(self) -> None:
        """One batched forward for every active slot, then each request's own choice of its next token."""
        actives = list(self._active.values())
        slots = np.array([a.slot for a in actives], dtype=np.int64)
        tokens = np.array([a.last_token for a in actives], dtype=np.int64)
        try:
            logits = self.runner.step(slots, tokens)
        except Exception as e:  # noqa: BLE001 - the batch failed: each request in it ends with the error
            logger.exception("decoding step failed")
            for active in actives:
                self._fail(active, e)
            return
        for active, row in zip(actives, logits):
            try:
                self._advance(active, row)
            except Exception as e:  # noqa: BLE001
                self._fail(active, e)

    def _advance(self, active: _Active, logits: np.ndarray) -> None:
        """Choose the request's next token from its logits, send it, and finish the request when it ends."""
        sampler, slot = active.sampler, active.slot
        token, logprob, top = sampler.choose(logits, lambda: self.runner.uniform(slot))
        active.last_token = token
        sampling = sampler.sampling
        if token in sampling.stop_token_ids:
            self._finish(active, Finished("stop", stop_token_id=token))
            return
        active.request._emit(TokenEvent(token, logprob, top))
        if sampler.generated >= sampling.max_new_tokens:
            self._finish(active, Finished("length"))

    def _fail(self, active: _Active, error: Exception) -> None:
        if active.request.finished is None:
            logger.warning("request %s failed: %r", active.request.id, error)
            self._finish(active, Finished("error", f"{type(error).__name__}: {error}"))

    def _finish(self, active: _Active, finished: Finished) -> None:
        """Free the slot, then send Finished with the token counts."""
        if self._active.pop(active.slot, None) is not None:
            try:
                self.runner.free(active.slot)
            except Exception:  # noqa: BLE001 - the next prefill into the slot starts it afresh anyway
                logger.exception("freeing slot %d failed", active.slot)
            self._free.append(active.slot)
        finished.prompt_tokens = len(active.request.prompt_ids)
        finished.completion_tokens = 0 if active.sampler is None else active.sampler.generated
        self._finish_request(active.request, finished)

    @staticmethod
    def _finish_request(request: Request, finished: Finished) -> None:
        if request.finished is not None:
            return
        try:
            request._emit(finished)
        except Exception:  # noqa: BLE001 - the callback failed on the last event: nothing more to tell it
            logger.exception("on_event failed for request %s", request.id)
