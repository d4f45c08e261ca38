"""gpt2_core.scheduler with real tiny models (no mocks): a request's tokens equal model.generate's alone, whatever
runs beside it; slots are reused; the queue bounds; cancel frees a slot within one step; errors end one request
only; OpenAI's penalties, logit_bias and logprobs against direct numpy references."""

import numpy as np
import pytest
import torch
from pt_utils import randomize
from tiny import TINY

import gpt2_pt
from gpt2_core.generation import log_softmax
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
    """n prompts of different lengths, alternately greedy and seeded sampling with assorted filters."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(0, EOS, size=int(rng.integers(1, 12))).tolist()
        if i % 2:
            sampling = Sampling(max_new_tokens=int(rng.integers(3, 30)), temperature=0, stop_token_ids=(EOS,),
                                repetition_penalty=1.3 if i % 3 == 0 else 1.0)
        else:
            sampling = Sampling(max_new_tokens=int(rng.integers(3, 30)), temperature=[0.7, 1.0, 1.3][i % 3],
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
