"""gpt2_pt.slots.SlotRunner on its own: a prefill gives the forward's logits, a batched step of slots at different
lengths gives each slot's solo logits, freed rows are reused (and the moved row goes on unchanged), the random
stream is generate's, the products run through generate's kernel choice on the model's own weights (no second
copy unless asked), int8 is generate's int8, and misuse fails with a clear message. (tests/tf/test_tf_slots.py is
the twin.)"""

import numpy as np
import pytest
import torch
from pt_utils import assert_close, randomize
from tiny import TINY

from test_kernels import force

import gpt2_pt
from gpt2_pt import kernels
from gpt2_pt.slots import SlotRunner

# A batched step runs k rows through one GEMM where a solo run does a GEMV: only the fp32 summation order differs.
BATCH_RTOL = 1e-5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize(gpt2_pt.GPT2LMHeadModel(gpt2_pt.GPT2Config(**TINY)), 0).eval()


def solo_logits(model, ids):
    """The logits after each of `ids`' tokens from one uncached forward."""
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids, dtype=np.int64))[None]).logits[0].numpy()


def prompts(seed=0, lengths=(5, 1, 9, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 98, size=n) for n in lengths]


def test_prefill_gives_the_forward_logits(model):
    runner = SlotRunner(model, 3)
    ids = prompts()[0]
    assert_close(runner.prefill(2, ids), solo_logits(model, ids)[-1], "prefill")
    assert_close(runner.prefill(1, ids, all_logits=True), solo_logits(model, ids), "prefill all_logits")


@pytest.mark.parametrize("pack_weights", [True, False])
def test_batched_steps_equal_each_slot_alone(model, pack_weights):
    runner = SlotRunner(model, 4, pack_weights=pack_weights)
    assert (runner.step_model is model) != pack_weights
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


def test_no_second_copy_of_the_weights_by_default(model):
    runner = SlotRunner(model, 4)
    assert runner.model is model and runner.step_model is model


def test_steps_run_generates_kernel_choice_and_let_it_go_when_idle(model, tmp_path, monkeypatch):
    """With BLAS owning the cores (forced for one row and for a few), prefills and steps run BLAS's kernel on the
    model's weights, under the plan's thread counts, with generate's tokens; the last free restores the pools."""
    blas = kernels._blas_controller()
    if blas is None:
        pytest.skip("no BLAS that threadpoolctl can size")
    monkeypatch.setenv("GPT2_KERNEL_CACHE", str(tmp_path / "kernels.json"))
    plan = kernels.Plan("blas", 1, 2)
    force(model, 1, plan)
    force(model, 2, plan)
    calls, original = [], kernels.blas_linear
    monkeypatch.setattr(kernels, "blas_linear", lambda *args: calls.append(1) or original(*args))
    threads, pools = torch.get_num_threads(), [info["num_threads"] for info in blas.info()]
    runner = SlotRunner(model, 2)
    ids = prompts()[2]
    greedy = {0: [int(runner.prefill(0, ids).argmax())]}
    assert calls and torch.get_num_threads() == 1  # held between calls
    greedy[1] = [int(runner.prefill(1, ids).argmax())]
    for _ in range(4):
        logits = runner.step(np.array([0, 1]), np.array([greedy[0][-1], greedy[1][-1]]))
        for slot in (0, 1):
            greedy[slot].append(int(logits[slot].argmax()))
    runner.free(1)
    for _ in range(4):
        greedy[0].append(int(runner.step(np.array([0]), np.array(greedy[0][-1:])).argmax()))
    assert len(calls) == (2 + 8) * 9  # 2 prefills and 8 steps, 9 products each (tiny: 2 blocks)
    runner.free(0)
    assert torch.get_num_threads() == threads and [info["num_threads"] for info in blas.info()] == pools
    out = model.generate(torch.from_numpy(ids)[None], max_new_tokens=9, do_sample=False, eos_token_id=None)
    assert greedy[0] == out[0, len(ids):].tolist()
    assert greedy[1] == out[0, len(ids):len(ids) + 5].tolist()


def test_int8_steps_are_generates_int8(model):
    runner = SlotRunner(model, 2, quantize="int8")
    ids = prompts()[0]
    greedy = [int(runner.prefill(0, ids).argmax())]
    for _ in range(6):
        greedy.append(int(runner.step(np.array([0]), np.array(greedy[-1:])).argmax()))
    out = model.generate(torch.from_numpy(ids)[None], max_new_tokens=7, do_sample=False, eos_token_id=None,
                         quantize="int8")
    assert greedy == out[0, len(ids):].tolist()


def test_a_single_slot_step_is_generate_exactly(model):
    runner = SlotRunner(model, 2)
    ids = prompts()[2]
    greedy = [int(runner.prefill(1, ids).argmax())]
    for _ in range(8):
        greedy.append(int(runner.step(np.array([1]), np.array(greedy[-1:])).argmax()))
    out = model.generate(torch.from_numpy(ids)[None], max_new_tokens=9, do_sample=False, eos_token_id=None)
    assert greedy == out[0, len(ids):].tolist()


def test_freed_rows_are_reused_and_moved_rows_go_on(model):
    runner = SlotRunner(model, 3)
    seqs = {slot: list(p) for slot, p in enumerate(prompts(lengths=(4, 7, 2)))}
    for slot, ids in seqs.items():
        runner.prefill(slot, np.array(ids))
    runner.free(0)  # slot 2 (the last row) moves into row 0
    del seqs[0]
    assert sorted(runner.row_of.values()) == [0, 1]
    seqs[0] = list(prompts(seed=5, lengths=(6,))[0])
    runner.prefill(0, np.array(seqs[0]))  # the freed slot again, in row 2
    for step in range(4):
        slots = np.array(sorted(seqs))
        tokens = np.array([step + 3 * s for s in slots])
        logits = runner.step(slots, tokens)
        for row, slot in enumerate(slots):
            seqs[slot].append(int(tokens[row]))
            assert_close(logits[row], solo_logits(model, seqs[slot])[-1], f"slot {slot}", rtol=BATCH_RTOL)
    runner.prefill(1, np.array([7]))  # prefilling a busy slot restarts it
    assert runner.lengths[runner.row_of[1]] == 1 and len(runner.row_of) == 3


def test_the_random_stream_is_generates(model):
    runner = SlotRunner(model, 2)
    runner.seed(1, 1234)
    ours = [runner.uniform(1) for _ in range(3)]
    generator = torch.Generator().manual_seed(1234)
    assert ours == [torch.rand((1,), generator=generator, dtype=torch.float64).item() for _ in range(3)]
    runner.seed(0, None)
    assert 0 <= runner.uniform(0) < 1


def test_warmup_leaves_every_slot_free(model):
    runner = SlotRunner(model, 2)
    runner.warmup()
    assert runner.row_of == {} and not runner.lengths.any()
    runner.prefill(0, np.array([1]))
    with pytest.raises(ValueError, match="every slot free"):
        runner.warmup()


def test_misuse_fails_clearly(model):
    with pytest.raises(ValueError, match="n_slots"):
        SlotRunner(model, 0)
    with pytest.raises(ValueError, match="max_length"):
        SlotRunner(model, 1, max_length=TINY["n_positions"] + 1)
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        SlotRunner(model.transformer, 1)
    with pytest.raises(ValueError, match="quantize"):
        SlotRunner(model, 1, quantize="int4")
    runner = SlotRunner(model, 2, max_length=4)
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
