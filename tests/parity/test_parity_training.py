"""Training parity across frameworks: the same initial weights, data order and settings, 20 AdamW steps (warmup,
cosine decay, weight decay groups, clipping, grad-accum) in gpt2_pt and gpt2_tf give the same losses and weights.

Tolerance, from float32 rounding: the two forwards agree to ~1e-6 relative (different GEMM and reduction orders,
each op rounding at 2^-24 ~ 6e-8), so the losses agree to ~1e-6 and the gradients to ~1e-5 relative. AdamW turns a
gradient into the step lr * m_hat / (sqrt(v_hat) + eps), whose size does not depend on the gradient's scale, so a
relative gradient difference d moves a weight by ~lr * d per step; over 20 steps of lr <= 1e-3 that is
~20 * 1e-3 * 1e-5 = 2e-7, far below the 1e-4 allowed. The allowance is for the few coordinates whose gradient is
itself at rounding level (m_hat / sqrt(v_hat) is then ~ +-1 in either framework, by chance): each such step can
differ by up to 2 * lr, so their weights may differ by a few lr in all; we bound the worst element by 1e-4 (0.1 x
the total movement 20 * lr ~ 0.01) and the typical one (the mean) by 1e-6.
"""

import numpy as np
import pytest

from gpt2_core import training as core

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from tf_train_utils import TINY, loader, weights, write_corpus  # noqa: E402

STEPS = 20


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from gpt2_pt import GPT2LMHeadModel
    from gpt2_pt import training as ptt
    from gpt2_tf import training as tft

    root = tmp_path_factory.mktemp("parity_train")
    corpus = write_corpus(root)
    torch.manual_seed(0)
    init = GPT2LMHeadModel(core.pretraining_config(core.TrainConfig(
        **{k: TINY[k] for k in ("n_layer", "n_embd", "n_head", "n_positions")})))
    init.save_pretrained(str(root / "init"))
    common = dict(data=[corpus], model=str(root / "init"), dropout=0.0, steps=STEPS, warmup_steps=4,
                  learning_rate=1e-3, min_lr=1e-4, weight_decay=0.1, grad_clip=1.0, batch_size=2, grad_accum=2,
                  eval_every=10, eval_batches=2, block_size=TINY["block_size"], dtype="float32")
    runs = {}
    for backend, module in (("pt", ptt), ("tf", tft)):
        cfg = core.TrainConfig(out_dir=str(root / backend), backend=backend, **common)
        summary = module.train(cfg, loader(cfg), progress=False)
        runs[backend] = summary, core.read_log(str(root / backend / core.LOG_NAME)), weights(root / backend)
    return runs, weights(root / "init")


def test_losses_agree(both):
    runs, _ = both
    pt_log, tf_log = runs["pt"][1], runs["tf"][1]
    pt_train = [r["train_loss"] for r in pt_log if "train_loss" in r]
    tf_train = [r["train_loss"] for r in tf_log if "train_loss" in r]
    assert len(pt_train) == len(tf_train) == STEPS
    np.testing.assert_allclose(tf_train, pt_train, rtol=0, atol=2e-5)
    assert pt_train[-1] < pt_train[0] - 0.5  # it learned: the comparison is not of two idle runs
    assert [r["lr"] for r in pt_log if "lr" in r] == [r["lr"] for r in tf_log if "lr" in r]
    pt_val = [r["val_loss"] for r in pt_log if "val_loss" in r]
    tf_val = [r["val_loss"] for r in tf_log if "val_loss" in r]
    assert len(pt_val) == len(tf_val) == 2
    np.testing.assert_allclose(tf_val, pt_val, rtol=0, atol=2e-5)


def test_weights_agree(both):
    runs, init = both
    pt_w, tf_w = runs["pt"][2], runs["tf"][2]
    assert sorted(pt_w) == sorted(tf_w)
    for name in pt_w:
        diff = np.abs(pt_w[name] - tf_w[name])
        moved = np.abs(pt_w[name] - init[name]).max()
        assert moved > 1e-3, name  # every tensor trained (weights moved by ~lr per step)
        assert diff.max() <= 1e-4 and diff.mean() <= 1e-6, (name, diff.max(), diff.mean())
