"""gpt2_core.scheduler with real tiny models (no mocks): a request's tokens equal model.generate's alone, whatever
runs beside it; slots are reused; the queue bounds; cancel frees a slot within one step; errors end one request
only; OpenAI's penalties, logit_bias and logprobs against direct numpy references."""

import numpy as np
import pytest
import torch
from pt_utils import randomize
from tiny import TINY

import gpt2_pt
from gpt2_core.scheduler import Finished, PromptEvent, QueueFull, Sampling, Scheduler, TokenEvent
from gpt2_pt.slots import SlotRunner

EOS = TINY["eos_token_id"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize(gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)), 0).eval()


@pytest.fixture
def scheduler(model):
    made = []

    def make(n_slots=4, max_queue=16, start=True, runner=None):
        s = Scheduler(runner or SlotRunner(model, n_slots), max_slots=n_slots, max_queue=max_queue)
        if start:
            s.start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.shutdown()


def collect(request, timeout=60):
    events = list(request.events(timeout=timeout))
    tokens = [e.token_id for e in events if isinstance(e, TokenEvent)]
    return tokens, events


def mixed_requests(n=8, seed=0):
    """n prompts of different lengths, alternately greedy and seeded sampling with assorted filters. Prompt plus
    new tokens stay in (16, 32]: TF's generate then builds one program for all (its cache is a power of two)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(0, EOS, size=int(rng.integers(1, 12))).tolist()
        new_tokens = int(rng.integers(17, 33)) - len(prompt)
        if i % 2:
            sampling = Sampling(max_new_tokens=new_tokens, temperature=0, stop_token_ids=(EOS,),
                                repetition_penalty=1.3 if i % 3 == 0 else 1.0)
        else:
            sampling = Sampling(max_new_tokens=new_tokens, temperature=[0.7, 1.0, 1.3][i % 3],
                                top_k=[0, 20][i % 4 // 2], top_p=[1.0, 0.9][i % 3 % 2], min_p=0.05 * (i == 4),
                                repetition_penalty=1.2 if i == 2 else 1.0, seed=100 + i, stop_token_ids=(EOS,))
        out.append((prompt, sampling))
    return out


def generate_kwargs(sampling):
    """model.generate's arguments for the same settings (without the seed's generator)."""
    kwargs = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=list(sampling.stop_token_ids) or None,
                  repetition_penalty=sampling.repetition_penalty)
    if sampling.greedy:
        return dict(kwargs, do_sample=False)
    return dict(kwargs, do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k,
                top_p=sampling.top_p, min_p=sampling.min_p or None)


def pt_reference(model, prompt, sampling):
    generator = None if sampling.greedy else torch.Generator().manual_seed(sampling.seed)
    out = model.generate(torch.tensor([prompt]), generator=generator, **generate_kwargs(sampling))
    return out[0, len(prompt):].tolist()


def finished_tokens(tokens, events):
    """The tokens generate returns: the streamed ones plus the stop token that ended the request."""
    end = events[-1]
    return tokens + ([end.stop_token_id] if end.stop_token_id is not None else [])


def test_eight_concurrent_requests_equal_generate_alone(model, scheduler):
    s = scheduler(n_slots=8)
    cases = mixed_requests(8)
    requests = [s.submit(prompt, sampling) for prompt, sampling in cases]
    for (prompt, sampling), request in zip(cases, requests):
        tokens, events = collect(request)
        assert isinstance(events[-1], Finished) and events[-1].reason in ("stop", "length")
        assert finished_tokens(tokens, events) == pt_reference(model, prompt, sampling)


def test_eight_concurrent_requests_equal_generate_alone_tf(model, tmp_path):
    tf = pytest.importorskip("tensorflow")
    import gpt2_tf
    from gpt2_tf.slots import TFSlotRunner

    model.save_pretrained(tmp_path)
    model = gpt2_tf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    s = Scheduler(TFSlotRunner(model, 8), max_slots=8, max_queue=16)
    s.start()
    try:
        cases = mixed_requests(8, seed=1)
        requests = [s.submit(prompt, sampling) for prompt, sampling in cases]
        for (prompt, sampling), request in zip(cases, requests):
            tokens, events = collect(request, timeout=300)
            assert events[-1].reason in ("stop", "length"), events[-1]
            # generate's graph runner: the same tokens as its default XLA one (tests/tf/test_tf_generate.py) without
            # an XLA compile per prompt length; tests/tf/test_tf_slots.py compares a slot run with XLA generate
            kwargs = generate_kwargs(sampling)
            seed = None if sampling.greedy else sampling.seed
            out = model.generate(tf.constant([prompt]), seed=seed, execution="graph", **kwargs)
            assert finished_tokens(tokens, events) == out.numpy()[0, len(prompt):].tolist()
    finally:
        s.shutdown()


def test_slots_are_reused_and_never_exceeded(model, scheduler):
    s = scheduler(n_slots=2)
    busy = []
    cases = mixed_requests(6, seed=2)
    requests = [s.submit(prompt, sampling, on_event=lambda e: busy.append(s.running)) for prompt, sampling in cases]
    for (prompt, sampling), request in zip(cases, requests):
        tokens, events = collect(request)
        assert finished_tokens(tokens, events) == pt_reference(model, prompt, sampling)
    assert max(busy) == 2 and s.running == 0 and s.queue_depth == 0


def test_queue_full(model, scheduler):
    s = scheduler(n_slots=1, max_queue=2, start=False)
    first = [s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0)) for _ in range(2)]
    assert s.queue_depth == 2
    with pytest.raises(QueueFull, match="max_queue=2"):
        s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0))
    s.start()
    for request in first:
        assert collect(request)[1][-1].reason == "length"
    s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0))  # room again


def test_submit_all_queues_every_request_or_none(model, scheduler):
    s = scheduler(n_slots=1, max_queue=2, start=False)
    s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0))
    greedy = Sampling(max_new_tokens=2, temperature=0)
    with pytest.raises(QueueFull, match="1 requests already wait and 2 more came"):
        s.submit_all([([3], greedy, None), ([4], greedy, None)])
    assert s.queue_depth == 1  # neither of the two was queued
    with pytest.raises(ValueError, match="prompt_ids"):  # a bad one refuses the whole lot, before queueing any
        s.submit_all([([3], greedy, None), ([], greedy, None)])
    assert s.queue_depth == 1
    (request,) = s.submit_all([([3], greedy, None)])
    s.start()
    assert collect(request)[1][-1].reason == "length"


def test_cancel_frees_the_slot_before_the_next_step(model, scheduler):
    s = scheduler(n_slots=1)
    seen = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, TokenEvent) and len(seen) == 3:
            request.cancel()  # on the decoding thread, between two steps

    request = s.submit([5, 6, 7], Sampling(max_new_tokens=40, temperature=0), on_event=on_event)
    waiting = s.submit([8], Sampling(max_new_tokens=3, temperature=0))  # gets the slot next
    tokens, events = collect(request)
    assert len(tokens) == 3 and events[-1] == Finished("cancelled", prompt_tokens=3, completion_tokens=3)
    assert seen == events
    assert collect(waiting)[1][-1].reason == "length"
    # a request cancelled while it waits never runs
    blocker = s.submit([1], Sampling(max_new_tokens=40, temperature=0))
    queued = s.submit([2], Sampling(max_new_tokens=5, temperature=0))
    queued.cancel()
    blocker.cancel()
    tokens, events = collect(queued)
    assert tokens == [] and events == [Finished("cancelled", prompt_tokens=1, completion_tokens=0)]
    assert collect(blocker)[1][-1].reason == "cancelled"
    assert s.running == 0 and s.queue_depth == 0


def test_a_failing_request_ends_alone(model, scheduler):
    s = scheduler(n_slots=2)

    def explode(event):
        if isinstance(event, TokenEvent):
            raise RuntimeError("client went away badly")

    bad = s.submit([3, 4], Sampling(max_new_tokens=10, temperature=0), on_event=explode)
    good = s.submit([5, 6], Sampling(max_new_tokens=10, temperature=0))
    tokens, events = collect(bad)
    assert events[-1].reason == "error" and "client went away badly" in events[-1].message
    assert len(tokens) == 1  # the event the callback failed on is still queued for events()
    tokens, events = collect(good)
    assert events[-1].reason == "length" and tokens == pt_reference(model, [5, 6], Sampling(10, temperature=0))
    # the loop goes on serving
    assert collect(s.submit([7], Sampling(max_new_tokens=2, temperature=0)))[1][-1].reason == "length"


def reference_decode(model, prompt, *, steps, bias=None, presence=0.0, frequency=0.0, temperature=0.0, seed=None):
    """OpenAI's documented sampling written out directly: raw logits of an uncached forward, + logit_bias,
    - count * frequency - (count > 0) * presence over the generated tokens, then argmax, or a draw from
    softmax(scores / temperature) by inverting its CDF at the torch generator's uniform (what generate draws)."""
    ids, counts = list(prompt), np.zeros(TINY["vocab_size"])
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].double().numpy()
        for token, value in (bias or {}).items():
            logits[token] += value
        logits = logits - counts * frequency - (counts > 0) * presence
        if temperature == 0:
            token = int(np.argmax(logits))
        else:
            p = np.exp((logits - logits.max()) / temperature)
            cdf = np.cumsum(p / p.sum())
            u = torch.rand((1,), generator=generator, dtype=torch.float64).item()
            token = int((cdf <= u * cdf[-1]).sum())
        ids.append(token)
        counts[token] += 1
    return ids[len(prompt):]


@pytest.mark.parametrize("settings", [
    dict(presence=1.5),
    dict(frequency=0.7),
    dict(presence=-0.5, frequency=1.2, bias={3: 2.5, 7: -100.0, 50: 1.0}),
    dict(bias={11: 100.0}),
    dict(presence=0.8, frequency=0.4, bias={20: 1.5}, temperature=0.9, seed=7),
], ids=["presence", "frequency", "all", "forced-by-bias", "sampled"])
def test_openai_penalties_and_logit_bias_match_a_direct_reference(model, scheduler, settings):
    s = scheduler(n_slots=2)
    prompt, steps = [9, 30, 9, 41, 2], 12
    sampling = Sampling(max_new_tokens=steps, temperature=settings.get("temperature", 0),
                        presence_penalty=settings.get("presence", 0.0),
                        frequency_penalty=settings.get("frequency", 0.0), logit_bias=settings.get("bias"),
                        seed=settings.get("seed"))
    other = s.submit([1, 2, 3], Sampling(max_new_tokens=steps, temperature=0))  # a neighbour in the batch
    tokens, _ = collect(s.submit(prompt, sampling))
    assert tokens == reference_decode(model, prompt, steps=steps, **settings)
    if settings.get("bias") == {11: 100.0}:
        assert tokens == [11] * steps
    assert collect(other)[1][-1].reason == "length"


def test_logprobs_are_the_raw_log_softmax(model, scheduler):
    s = scheduler(n_slots=2)
    prompt = [4, 8, 15, 16, 23, 42]
    sampling = Sampling(max_new_tokens=6, temperature=1.3, seed=3, logprobs=3, prompt_logprobs=True,
                        presence_penalty=1.0, logit_bias={5: 3.0})  # neither moves the reported logprobs
    s.submit([1], Sampling(max_new_tokens=6, temperature=0))
    tokens, events = collect(s.submit(prompt, sampling))
    ids = prompt + tokens
    with torch.no_grad():
        reference = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1).numpy()
    prompt_event = events[0]
    assert isinstance(prompt_event, PromptEvent) and prompt_event.logprobs[0] is None
    assert prompt_event.top_logprobs[0] is None
    for i in range(1, len(prompt)):
        assert prompt_event.logprobs[i] == pytest.approx(reference[i - 1, ids[i]], abs=1e-5)
        check_top(prompt_event.top_logprobs[i], reference[i - 1], 3)
    token_events = [e for e in events if isinstance(e, TokenEvent)]
    for j, event in enumerate(token_events):
        row = reference[len(prompt) - 1 + j]
        assert event.logprob == pytest.approx(row[event.token_id], abs=1e-5)
        check_top(event.top_logprobs, row, 3)


def check_top(top, row, k):
    assert len(top) == k
    order = np.argsort(-row, kind="stable")[:k]
    assert [t for t, _ in top] == order.tolist()
    np.testing.assert_allclose([v for _, v in top], row[order], atol=1e-5)
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)


def test_logprobs_zero_gives_the_chosen_token_only(scheduler):
    s = scheduler(n_slots=1)
    tokens, events = collect(s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0, logprobs=0)))
    assert all(e.top_logprobs == [] and e.logprob <= 0 for e in events[:-1])
    tokens, events = collect(s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0)))
    assert all(e.logprob is None and e.top_logprobs is None for e in events[:-1])


def test_stop_tokens_end_a_request(model, scheduler):
    s = scheduler(n_slots=2)
    prompt = [10, 20, 30]
    free_run = collect(s.submit(prompt, Sampling(max_new_tokens=12, temperature=0)))[0]
    stop = free_run[4]
    tokens, events = collect(s.submit(prompt, Sampling(max_new_tokens=12, temperature=0, stop_token_ids=(stop,))))
    first = free_run.index(stop)
    assert tokens == free_run[:first]
    assert events[-1] == Finished("stop", prompt_tokens=3, completion_tokens=first + 1, stop_token_id=stop)


def test_submit_rejects_what_cannot_run(scheduler):
    s = scheduler(n_slots=1, start=False)
    n_positions = TINY["n_positions"]
    with pytest.raises(ValueError, match="context"):
        s.submit([1] * (n_positions - 3), Sampling(max_new_tokens=4))
    with pytest.raises(ValueError, match="non-empty"):
        s.submit([], Sampling(max_new_tokens=4))
    with pytest.raises(ValueError, match=r"prompt_ids` should be in \[0, 99\)"):
        s.submit([99], Sampling(max_new_tokens=4))
    with pytest.raises(ValueError, match="logit_bias` holds ids outside"):
        s.submit([1], Sampling(max_new_tokens=4, logit_bias={120: 1.0}))
    with pytest.raises(ValueError, match="Sampling"):
        s.submit([1], dict(max_new_tokens=4))
    with pytest.raises(ValueError, match="max_slots"):
        Scheduler(s.runner, max_slots=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=4, temperature=-1), "temperature"),
    (dict(max_new_tokens=4, top_p=0), "top_p"),
    (dict(max_new_tokens=4, top_k=-1), "top_k"),
    (dict(max_new_tokens=4, min_p=2), "min_p"),
    (dict(max_new_tokens=4, repetition_penalty=0), "repetition_penalty"),
    (dict(max_new_tokens=4, presence_penalty=float("nan")), "presence_penalty"),
    (dict(max_new_tokens=4, logit_bias={"a": 1}), "logit_bias"),
    (dict(max_new_tokens=4, seed=-1), "seed"),
    (dict(max_new_tokens=4, logprobs=21), "logprobs"),
    (dict(max_new_tokens=4, stop_token_ids=(-1,)), "stop_token_ids"),
])
def test_sampling_validates_itself(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampling(**kwargs)


def test_shutdown_ends_every_live_request(scheduler):
    s = scheduler(n_slots=1, start=False)

    def on_event(event):
        if isinstance(event, TokenEvent):
            s.shutdown("going away")  # from the decoding thread, mid-request: the loop ends after this step

    running = s.submit([1, 2], Sampling(max_new_tokens=30, temperature=0), on_event=on_event)
    waiting = [s.submit([1, 2], Sampling(max_new_tokens=30, temperature=0)) for _ in range(2)]
    s.start()
    tokens, events = collect(running)
    assert len(tokens) == 1 and events[-1] == Finished("error", "going away", prompt_tokens=2, completion_tokens=1)
    for request in waiting:
        assert collect(request) == ([], [Finished("error", "going away", prompt_tokens=2)])
    with pytest.raises(RuntimeError, match="going away"):
        s.submit([1], Sampling(max_new_tokens=1))
    s.shutdown()  # again: nothing left to do
    never_started = scheduler(n_slots=1, start=False)
    request = never_started.submit([3], Sampling(max_new_tokens=2))
    never_started.shutdown()
    assert request.finished.reason == "error" and request.finished.message == "server shutting down"


def test_request_timing(scheduler):
    s = scheduler(n_slots=1)
    request = s.submit([1, 2], Sampling(max_new_tokens=3, temperature=0))
    collect(request)
    assert request.submitted_at <= request.first_token_at


def test_start_wait_returns_after_the_warmup_on_the_decoding_thread(model, scheduler):
    import threading

    class Recording(SlotRunner):
        def warmup(self):
            self.warmed_on = threading.current_thread().name
            super().warmup()

    runner = Recording(model, 2)
    s = scheduler(n_slots=2, start=False, runner=runner)
    s.start(wait=True)
    assert runner.warmed_on == "gpt2-decode" and runner.row_of == {}
    assert collect(s.submit([1, 2], Sampling(max_new_tokens=2, temperature=0)))[0]
