"""gpt2_tf.slots.TFSlotRunner on its own: a prefill gives the forward's logits, a fixed-size step of slots at
different lengths gives each slot's solo logits, freed slots are reused, the compiled step is traced once, the
random stream is generate's, and misuse fails with a clear message. (Twin of tests/pt/test_slots.py.)"""

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import assert_close, randomize
from tiny import TINY

import gpt2_tf
from gpt2_core import GPT2Config
from gpt2_tf.slots import TFSlotRunner

# A step runs every slot's row through one GEMM (XLA-compiled) where a solo run does a GEMV: only the fp32
# summation order differs.
BATCH_RTOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return randomize(gpt2_tf.TFGPT2LMHeadModel(GPT2Config(**TINY)), 0)


@pytest.fixture(scope="module")
def runner(model):
    """One runner for the module (its step compiles once); each test starts with every slot free."""
    runner = TFSlotRunner(model, 4)
    yield runner


@pytest.fixture(autouse=True)
def _free_all(runner):
    for slot in range(runner.n_slots):
        runner.free(slot)


def solo_logits(model, ids):
    """The logits after each of `ids`' tokens from one uncached forward."""
    return model(np.asarray(ids, dtype=np.int32)[None]).logits[0].numpy()


def prompts(seed=0, lengths=(5, 1, 9, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 98, size=n) for n in lengths]


def test_prefill_gives_the_forward_logits(model, runner):
    ids = prompts()[0]
    assert_close(runner.prefill(2, ids), solo_logits(model, ids)[-1], "prefill")
    assert_close(runner.prefill(1, ids, all_logits=True), solo_logits(model, ids), "prefill all_logits")


def test_batched_steps_equal_each_slot_alone(model, runner):
    seqs = [list(p) for p in prompts()]
    for slot, ids in enumerate(seqs):
        runner.prefill(slot, np.array(ids))
    rng = np.random.default_rng(1)
    order = np.array([2, 0, 3, 1])  # any order of the active slots
    for _ in range(6):
        tokens = rng.integers(0, 98, size=4)
        logits = runner.step(order, tokens)
        for row, slot in enumerate(order):
            seqs[slot].append(int(tokens[row]))
            assert_close(logits[row], solo_logits(model, seqs[slot])[-1], f"slot {slot}", rtol=BATCH_RTOL)
    assert runner._step.experimental_get_tracing_count() == 1


def test_a_single_slot_run_is_generates(model, runner):
    ids = prompts()[2]
    greedy = [int(runner.prefill(1, ids).argmax())]
    for _ in range(8):
        greedy.append(int(runner.step(np.array([1]), np.array(greedy[-1:])).argmax()))
    out = model.generate(ids[None].astype(np.int32), max_new_tokens=9, do_sample=False, eos_token_id=None)
    assert greedy == out.numpy()[0, len(ids):].tolist()


def test_freed_slots_are_reused(model, runner):
    seqs = {slot: list(p) for slot, p in enumerate(prompts(lengths=(4, 7, 2)))}
    for slot, ids in seqs.items():
        runner.prefill(slot, np.array(ids))
    runner.free(0)
    seqs[0] = list(prompts(seed=5, lengths=(6,))[0])
    runner.prefill(0, np.array(seqs[0]))  # a shorter row's leftovers past its length stay masked
    for step in range(4):
        slots = np.array(sorted(seqs))
        tokens = np.array([step + 3 * s for s in slots])
        logits = runner.step(slots, tokens)
        for row, slot in enumerate(slots):
            seqs[slot].append(int(tokens[row]))
            assert_close(logits[row], solo_logits(model, seqs[slot])[-1], f"slot {slot}", rtol=BATCH_RTOL)


def test_the_random_stream_is_generates(runner):
    runner.seed(1, 1234)
    ours = [runner.uniform(1) for _ in range(3)]
    generator = tf.random.Generator.from_seed(1234)
    assert ours == [float(generator.uniform((1,), dtype=tf.float64)[0]) for _ in range(3)]
    runner.seed(0, None)
    assert 0 <= runner.uniform(0) < 1


def test_warmup_leaves_every_slot_free(runner):
    runner.warmup()
    assert not runner.active.any() and not runner.lengths.any()
    runner.prefill(0, np.array([1]))
    with pytest.raises(ValueError, match="every slot free"):
        runner.warmup()


def test_misuse_fails_clearly(model):
    with pytest.raises(ValueError, match="n_slots"):
        TFSlotRunner(model, 0)
    with pytest.raises(ValueError, match="max_length"):
        TFSlotRunner(model, 1, max_length=TINY["n_positions"] + 1)
    with pytest.raises(ValueError, match="execution"):
        TFSlotRunner(model, 1, execution="jit")
    with pytest.raises(ValueError, match="TFGPT2LMHeadModel"):
        TFSlotRunner(model.transformer, 1)
    runner = TFSlotRunner(model, 2, max_length=4, execution="eager")
    with pytest.raises(ValueError, match="slot"):
        runner.prefill(2, np.array([1]))
    with pytest.raises(ValueError, match="1 to max_length=4"):
        runner.prefill(0, np.arange(5))
    runner.prefill(0, np.arange(3))
    with pytest.raises(ValueError, match=r"each active slot \[0\]"):
        runner.step(np.array([1]), np.array([1]))
    runner.step(np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="full"):
        runner.step(np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="random stream"):
        runner.uniform(1)
