"""gpt2_pt.kernels: every product kernel gives F.linear's numbers, decoding under every plan gives transformers'
tokens, the calibration is cached per host and model shape, the thread pools are restored, and without
threadpoolctl everything stays on F.linear."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from gpt2_pt import generation as pt_generation  # noqa: E402
from gpt2_pt import kernels  # noqa: E402
from gpt2_pt.modeling import GPT2LMHeadModel  # noqa: E402

PAD = 2
U = 2.0 ** -24  # fp32 unit roundoff


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path, monkeypatch):
    """Each test calibrates into its own cache file, never the user's."""
    path = tmp_path / "kernels.json"
    monkeypatch.setenv("GPT2_KERNEL_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=1)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger weights spread the logits, so greedy choices are far from ties
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    reference.save_pretrained(directory)
    return GPT2LMHeadModel.from_pretrained(directory).eval()


def kernel_functions():
    return {"torch": F.linear, "blas": kernels.blas_linear}


# -- every kernel gives F.linear's products

def assert_fp32_product_close(y, x, weight, bias):
    """Any summation order of a length-K dot product is within gamma_K * sum|x_i w_i| of the exact value
    (gamma_K = K u / (1 - K u), Higham, Accuracy and Stability, 3.1), so two orders differ by at most twice that;
    the bias adds one rounding. Checked against the float64 product's terms, element by element."""
    reference = F.linear(x, weight, bias)
    K = x.size(-1)
    gamma = (K + 1) * U / (1 - (K + 1) * U)
    magnitude = F.linear(x.double().abs(), weight.double().abs(), None if bias is None else bias.double().abs())
    err = (y.double() - reference.double()).abs()
    assert y.shape == reference.shape and y.dtype == reference.dtype
    bound = 2 * gamma * magnitude
    assert bool((err <= bound).all()), f"max excess {(err - bound).max().item():.3g}"


@pytest.mark.parametrize("kernel", list(kernel_functions()))
@pytest.mark.parametrize("rows", [1, 3, 8, 40])
@pytest.mark.parametrize("layout", ["conv1d", "head"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_every_kernel_gives_f_linear(kernel, rows, layout, with_bias):
    gen = torch.Generator().manual_seed(rows)
    n_in, n_out = 96, 160
    if layout == "conv1d":  # a Conv1D's (in, out) storage seen as (out, in)
        weight = torch.randn(n_in, n_out, generator=gen).t()
    else:  # the LM head: (out, in) storage
        weight = torch.randn(n_out, n_in, generator=gen)
    bias = torch.randn(n_out, generator=gen) if with_bias else None
    x = torch.randn(rows, n_in, generator=gen)
    with torch.inference_mode():
        y = kernel_functions()[kernel](x, weight, bias)
        assert_fp32_product_close(y, x, weight, bias)
        y3 = kernel_functions()[kernel](x.view(1, rows, n_in), weight, bias)  # leading dims kept
    assert y3.shape == (1, rows, n_out)
    np.testing.assert_array_equal(y3.view(rows, n_out).numpy(), y.numpy())


def test_blas_kernel_on_model_parameters_leaves_them_untouched(ours):
    layer = ours.transformer.h[0].attn.c_attn
    before = layer.weight.detach().clone()
    x = torch.randn(2, 32)
    with torch.inference_mode():
        y = kernels.blas_linear(x, layer.weight.t(), layer.bias)  # parameters that require grad: read, not copied
    assert_fp32_product_close(y, x, layer.weight.detach().t(), layer.bias.detach())
    assert torch.equal(layer.weight, before)


def test_linear_is_f_linear_outside_decoding(ours):
    x = torch.randn(3, 32)
    layer = ours.transformer.h[0].mlp.c_fc
    assert not kernels.chosen(3)
    assert torch.equal(kernels.linear(x, layer.weight.t(), layer.bias), F.linear(x, layer.weight.t(), layer.bias))


# -- decoding under each plan

def force(model, rows, plan):
    """Write `plan` as the cached calibration for (this host, model, rows)."""
    path = kernels.cache_path()
    table = json.loads(path.read_text()) if path.exists() else {}
    table[kernels.cache_key(model, rows)] = {"plan": {"kernel": plan.kernel, "torch_threads": plan.torch_threads,
                                                       "blas_threads": plan.blas_threads}, "ms": {}, "stable": True}
    path.write_text(json.dumps(table))


def plans():
    return kernels.candidates(2)


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("batch", [1, 3])
def test_every_plan_decodes_transformers_tokens(ours, reference, index, batch):
    if index >= len(plans()):
        pytest.skip("no BLAS that threadpoolctl can size")
    plan = plans()[index]
    force(ours, batch, plan)
    ids = torch.randint(3, 97, (batch, 5), generator=torch.Generator().manual_seed(batch))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with kernels.decoding(ours, batch) as active:
            assert active == plan and torch.get_num_threads() == plan.torch_threads
            assert kernels.chosen(batch) == (plan.kernel != "torch")
        out = ours.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=PAD)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(previous)
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                      pad_token_id=PAD)
    assert torch.equal(out, expected)


def test_blas_plan_runs_the_blas_kernel_and_restores_its_pool(ours, monkeypatch):
    blas = kernels._blas_controller()
    if blas is None:
        pytest.skip("no BLAS that threadpoolctl can size")
    before = [info["num_threads"] for info in blas.info()]
    plan = kernels.Plan("blas", 1, 2)
    force(ours, 1, plan)
    calls, original = [], kernels.blas_linear
    monkeypatch.setattr(kernels, "blas_linear", lambda *args: calls.append(1) or original(*args))  # counts
    with kernels.decoding(ours, 1):
        assert [info["num_threads"] for info in blas.info()] == [2] * len(before)
        with torch.inference_mode():
            ours(torch.tensor([[5, 6, 7]]))  # the prompt's rows go to BLAS too: torch has one thread now
            ours(torch.tensor([[5]]))
    assert len(calls) == 2 * (4 * 2 + 1)  # 4 Conv1D per block, 2 blocks, the head; two forwards
    assert [info["num_threads"] for info in blas.info()] == before


def test_overlapping_decodings_restore_the_pools_once_all_end(ours):
    """Threads of a server decoding at once: each sets its own torch threads; BLAS's pool (one per process) is
    restored once the last one ends, whatever the order."""
    force(ours, 1, kernels.Plan("blas", 1, 1))
    blas = kernels._blas_controller()

    def blas_threads():
        return None if blas is None else [info["num_threads"] for info in blas.info()]

    original = blas_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    inside, release = threading.Barrier(2), threading.Event()

    def decode():
        with kernels.decoding(ours, 1):
            inside.wait(timeout=60)
            release.wait(timeout=60)

    try:
        first = threading.Thread(target=decode)
        first.start()
        with kernels.decoding(ours, 1):
            inside.wait(timeout=60)
            assert torch.get_num_threads() == 1
            release.set()
            first.join(timeout=60)
            assert torch.get_num_threads() == 1  # the other decoding ended, this one still runs
        assert torch.get_num_threads() == 2 and blas_threads() == original
    finally:
        torch.set_num_threads(previous)


def test_autograd_and_other_dtypes_stay_on_f_linear(ours):
    force(ours, 1, kernels.Plan("blas", 1, 2))
    x = torch.randn(1, 32, requires_grad=True)
    layer = ours.transformer.h[0].attn.c_proj
    with kernels.decoding(ours, 1):
        y = kernels.linear(x, layer.weight.t(), layer.bias)
        y.sum().backward()  # gradients flow: F.linear ran
        assert x.grad is not None
        with torch.inference_mode():
            half = kernels.linear(x.detach().double(), layer.weight.detach().double().t(), None)
        assert half.dtype == torch.float64


def test_environment_switch_keeps_f_linear(ours, monkeypatch, kernel_cache):
    monkeypatch.setenv("GPT2_KERNELS", "torch")
    with kernels.decoding(ours, 1) as plan:
        assert plan is None and not kernels.chosen(1)
    assert not kernel_cache.exists()  # nothing calibrated
    monkeypatch.setenv("GPT2_KERNELS", "fastest")
    with pytest.raises(ValueError, match="GPT2_KERNELS should be 'auto' or 'torch'. Received: GPT2_KERNELS='fastest'"):
        ours.generate(torch.tensor([[5, 6]]), max_new_tokens=2, pad_token_id=PAD)


def test_other_models_and_int8_are_left_alone(ours, reference, kernel_cache):
    with kernels.decoding(reference, 1) as plan:  # transformers' model: its forward never calls `linear`
        assert plan is None and not kernels.chosen(1)
    ours.generate(torch.tensor([[5, 6]]), max_new_tokens=2, pad_token_id=PAD, quantize="int8")
    assert not kernel_cache.exists()  # int8 decoding never calibrated


# -- calibration and its cache

def test_calibration_is_cached_per_host_and_shape(ours, kernel_cache, monkeypatch):
    result = kernels.calibrate(ours, 1)
    assert set(result["ms"]) == {p.name for p in kernels.candidates(torch.get_num_threads())}
    assert kernels.Plan(**result["plan"]) in kernels.candidates(torch.get_num_threads())
    plan = kernels.plan_for(ours, 1)
    table = json.loads(kernel_cache.read_text())
    assert len(table) == 1 and kernels.Plan(**table[kernels.cache_key(ours, 1)]["plan"]) == plan
    stamp = kernel_cache.stat().st_mtime_ns
    assert kernels.plan_for(ours, 1) == plan and kernel_cache.stat().st_mtime_ns == stamp  # read, not rerun
    kernels.plan_for(ours, 8)  # another row class: its own entry
    monkeypatch.setattr(kernels, "_cpu_flags", lambda: "fpu sse2")  # another host: calibrated again
    kernels.plan_for(ours, 1)
    assert len(json.loads(kernel_cache.read_text())) == 3


def test_agreement_of_the_rounds():
    assert kernels.agree([[10.0, 10.5, 11.0], [20.0, 21.0]])
    assert not kernels.agree([[10.0, 10.5], [20.0, 31.0]])  # one candidate hit by a load spike
    assert not kernels.agree([[10.0], [20.0]])  # one round (the budget ran out): nothing to compare


def test_calibration_taken_under_load_is_taken_again(ours, kernel_cache, monkeypatch):
    """A calibration whose rounds disagree serves its process, and the next processes calibrate again (at most
    ATTEMPTS in all); one whose rounds agree stays."""
    key = kernels.cache_key(ours, 1)
    verdicts = iter([False, False, False, True])
    monkeypatch.setattr(kernels, "agree", lambda rounds: next(verdicts))

    def new_process():
        kernels._session_plans.clear()
        kernels.plan_for(ours, 1)
        return json.loads(kernel_cache.read_text())[key]

    entry = new_process()
    assert (entry["stable"], entry["attempts"]) == (False, 1)
    stamp = kernel_cache.stat().st_mtime_ns
    kernels.plan_for(ours, 1)  # the same process: no second calibration
    assert kernel_cache.stat().st_mtime_ns == stamp
    assert [new_process()["attempts"] for _ in range(2)] == [2, 3]
    assert new_process()["attempts"] == 3  # ATTEMPTS reached: the last one stands, no further calibration
    kernels._session_plans.clear()
    monkeypatch.setattr(kernels, "ATTEMPTS", 5)
    entry = new_process()  # the fourth calibration agrees: it stays
    assert (entry["stable"], entry["attempts"]) == (True, 4)
    monkeypatch.setattr(kernels, "agree", lambda rounds: pytest.fail("calibrated again"))
    assert new_process()["attempts"] == 4


def test_a_cached_entry_without_the_agreement_check_is_taken_again(ours, kernel_cache):
    """Calibrations cached by an earlier version (no "stable" field) may have been taken under load."""
    kernel_cache.write_text(json.dumps({kernels.cache_key(ours, 1): {
        "plan": {"kernel": "torch", "torch_threads": 2, "blas_threads": 1}, "ms": {}}}))
    kernels._session_plans.clear()
    kernels.plan_for(ours, 1)
    entry = json.loads(kernel_cache.read_text())[kernels.cache_key(ours, 1)]
    assert "stable" in entry and entry["attempts"] == 1


def test_unreadable_or_unwritable_cache_still_decodes(ours, kernel_cache, tmp_path, monkeypatch):
    kernel_cache.write_text("{not json")
    assert kernels.plan_for(ours, 1) in kernels.candidates(torch.get_num_threads())
    assert kernels.cache_key(ours, 1) in json.loads(kernel_cache.read_text())  # rewritten whole
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("GPT2_KERNEL_CACHE", str(blocked / "kernels.json"))  # its directory cannot exist
    assert kernels.plan_for(ours, 1) in kernels.candidates(torch.get_num_threads())


def test_calibration_samples_large_models_within_its_byte_budget(monkeypatch):
    monkeypatch.setattr(kernels, "CALIBRATION_BYTES", 1000)
    pairs = [(torch.zeros(10, 10), None)] * 5 + [(torch.zeros(20, 10), None)]  # 400 bytes per layer, 800 the head
    sample = kernels._sample(pairs)
    assert sample[0] is pairs[-1] and len(sample) == 2


def test_cpu_description_names_the_vector_flags():
    text = kernels.cpu_description()
    assert str(os.cpu_count()) in text
    if "avx2" in kernels._cpu_flags().split():
        assert "avx2" in text


# -- fallback

def test_without_threadpoolctl_everything_stays_on_torch(tmp_path):
    """threadpoolctl hidden (as if not installed): the only candidate is F.linear, and decoding still works."""
    code = (
        "import sys; sys.modules['threadpoolctl'] = None\n"
        "import torch\n"
        "from gpt2_core.config import GPT2Config\n"
        "from gpt2_pt import GPT2LMHeadModel, kernels\n"
        "assert [p.kernel for p in kernels.candidates(2)] == ['torch'], kernels.candidates(2)\n"
        "config = GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,"
        " eos_token_id=0)\n"
        "model = GPT2LMHeadModel(config).eval()\n"
        "assert kernels.plan_for(model, 1).kernel == 'torch'\n"
        "print(model.generate(torch.tensor([[3, 4]]), max_new_tokens=3, pad_token_id=0).shape[1])\n")
    env = dict(os.environ, GPT2_KERNEL_CACHE=str(tmp_path / "k.json"))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "5"


def test_packed_copy_is_opt_in(ours):
    ours.generate(torch.tensor([[5, 6], [7, 8]]), max_new_tokens=2, pad_token_id=PAD)
    assert "packed" not in pt_generation._COPIES.get(ours, {})  # no second copy of the weights by default
