"""Continuous batching, gpt2_pt's slot runner against gpt2_tf's on the same checkpoint: the same step logits for
slots at different lengths (within the project's one TOLERANCE), and through the scheduler the same greedy tokens
and logprobs for concurrent requests. (Sampled tokens differ by design: each backend draws from its own
framework's generator, as its generate does.)"""

import numpy as np
import pytest
from parity_utils import TINY, assert_close, pt_tf_pair

from gpt2_core.scheduler import Sampling, Scheduler, TokenEvent
from gpt2_pt.slots import SlotRunner
from gpt2_tf.slots import TFSlotRunner


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return pt_tf_pair(tmp_path_factory.mktemp("slots"))


def test_step_logits_agree(models):
    pt, tf_model = models
    runners = SlotRunner(pt, 3), TFSlotRunner(tf_model, 3)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 98, size=n) for n in (6, 2, 11)]
    for slot, ids in enumerate(prompts):
        assert_close(runners[1].prefill(slot, ids), runners[0].prefill(slot, ids), f"prefill {slot}")
    slots = np.array([1, 2, 0])
    for step in range(5):
        tokens = rng.integers(0, 98, size=3)
        assert_close(runners[1].step(slots, tokens), runners[0].step(slots, tokens), f"step {step}")


def run(runner, cases):
    scheduler = Scheduler(runner, max_slots=runner.n_slots, max_queue=len(cases))
    scheduler.start()
    try:
        requests = [scheduler.submit(prompt, sampling) for prompt, sampling in cases]
        return [[e for e in r.events(timeout=300) if isinstance(e, TokenEvent)] for r in requests]
    finally:
        scheduler.shutdown()


def test_concurrent_greedy_requests_agree(models):
    pt, tf_model = models
    rng = np.random.default_rng(1)
    eos = TINY["eos_token_id"]
    cases = [(rng.integers(0, eos, size=int(rng.integers(1, 12))).tolist(),
              Sampling(max_new_tokens=int(rng.integers(4, 20)), temperature=0, stop_token_ids=(eos,), logprobs=2,
                       repetition_penalty=1.2 if i % 3 == 0 else 1.0, presence_penalty=0.5 * (i % 2)))
             for i in range(6)]
    ours_pt, ours_tf = run(SlotRunner(pt, 4), cases), run(TFSlotRunner(tf_model, 4), cases)
    for events_pt, events_tf in zip(ours_pt, ours_tf):
        assert [e.token_id for e in events_pt] == [e.token_id for e in events_tf]
        assert_close([e.logprob for e in events_tf], [e.logprob for e in events_pt], "logprobs")
        assert [[t for t, _ in e.top_logprobs] for e in events_pt] == [[t for t, _ in e.top_logprobs]
                                                                      for e in events_tf]
