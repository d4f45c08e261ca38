"""gpt2_tf.training: our AdamW against torch.optim.AdamW, a run stopped by SIGTERM and resumed against the same run
uninterrupted (same weights, bit for bit), the checkpoint loading in transformers and gpt2_pt, and mixed_bfloat16
training close to float32 with float32 weights saved."""

import json
import os
import signal

import numpy as np
import pytest

from gpt2_core import training as core

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from gpt2_tf import training as tft  # noqa: E402
from tf_train_utils import BF16_LOSS_RTOL, TINY, loader, weights, write_corpus  # noqa: E402


def test_adamw_matches_torch_adamw_with_clipping():
    """Two groups (decay / no decay), warmup-sized and full learning rates, gradients that do and do not get
    clipped: the same float32 numbers as torch's AdamW + clip_grad_norm_ to within a few ulps."""
    cfg = core.TrainConfig(weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0)
    rng = np.random.default_rng(0)
    shapes = {"transformer.h.0.mlp.c_fc.weight": (8, 16), "transformer.h.0.mlp.c_fc.bias": (16,),
              "transformer.wte.weight": (10, 8)}
    init = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    tf_vars = {n: tf.Variable(a) for n, a in init.items()}
    opt = tft.AdamW(tf_vars, cfg)
    pt = {n: torch.nn.Parameter(torch.from_numpy(a.copy())) for n, a in init.items()}
    groups = [{"params": [p for n, p in pt.items() if core.decays(n)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in pt.items() if not core.decays(n)], "weight_decay": 0.0}]
    pt_opt = torch.optim.AdamW(groups, lr=1e-3, betas=(cfg.beta1, cfg.beta2))
    for step, (lr, scale) in enumerate([(1e-4, 0.01), (1e-3, 3.0), (6e-4, 0.1), (2e-3, 10.0), (1e-5, 1e-4)]):
        grads = {n: (scale * rng.standard_normal(s)).astype(np.float32) for n, s in shapes.items()}
        for group in pt_opt.param_groups:
            group["lr"] = lr
        for n, p in pt.items():
            p.grad = torch.from_numpy(grads[n].copy())
        torch.nn.utils.clip_grad_norm_(list(pt.values()), cfg.grad_clip)
        pt_opt.step()
        opt.lr.assign(lr)
        g = [tf.constant(grads[n]) for n in opt.names]
        norm = tf.linalg.global_norm(g)
        opt.apply([x * tf.minimum(cfg.grad_clip / (norm + tft.CLIP_EPS), 1.0) for x in g])
        for n in shapes:
            np.testing.assert_allclose(tf_vars[n].numpy(), pt[n].detach().numpy(), rtol=2e-6, atol=1e-8,
                                       err_msg=f"{n} at step {step}")


class _SigtermAt:
    """The train blocks, sending this process SIGTERM while the loop reads step `at` (a real signal, as a
    scheduler's preemption sends it): the loop finishes that step, writes a checkpoint and returns."""

    def __init__(self, blocks, cfg, at):
        self.blocks, self.cfg, self.at = blocks, cfg, at

    def batch(self, seed, step, rows, **kw):
        if step == core.micro_step_index(self.cfg, self.at, 0):
            os.kill(os.getpid(), signal.SIGTERM)
        return self.blocks.batch(seed, step, rows, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 5-step run uninterrupted, the same run stopped by SIGTERM during step 2 and resumed, and the same run
    in bf16."""
    root = tmp_path_factory.mktemp("tftrain")
    corpus = write_corpus(root)
    common = dict(data=[corpus], steps=5, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4, batch_size=2,
                  grad_accum=2, dropout=0.1, eval_every=0, eval_batches=2, backend="tf", **TINY)
    whole = core.TrainConfig(out_dir=str(root / "whole"), **common)
    summary = tft.train(whole, loader(whole), progress=False)
    cut = core.TrainConfig(out_dir=str(root / "cut"), **common)
    load = loader(cut)

    def load_with_signal():
        data = load()
        data.train = _SigtermAt(data.train, cut, at=2)
        return data

    stopped = tft.train(cut, load_with_signal, progress=False)
    resumed = tft.train(cut, load, resume=True, progress=False)
    bf16 = core.TrainConfig(out_dir=str(root / "bf16"), **{**common, "dtype": "bfloat16"})
    tft.train(bf16, loader(bf16), progress=False)
    return root, summary, stopped, resumed


def test_sigterm_saves_and_resume_continues_exactly(runs):
    root, summary, stopped, resumed = runs
    assert stopped["stopped_by"] == "SIGTERM" and stopped["step"] == 3
    assert summary["step"] == resumed["step"] == 5 and resumed["stopped_by"] is None
    whole, cut = weights(root / "whole"), weights(root / "cut")
    assert sorted(whole) == sorted(cut)
    for name in whole:  # dropout on, grad-accum 2: still the same bits
        np.testing.assert_array_equal(whole[name], cut[name], err_msg=name)
    opt_whole, opt_cut = np.load(root / "whole" / tft.OPTIMIZER_NAME), np.load(root / "cut" / tft.OPTIMIZER_NAME)
    assert int(opt_whole["step"]) == int(opt_cut["step"]) == 5
    log_whole = core.read_log(str(root / "whole" / core.LOG_NAME))
    log_cut = core.read_log(str(root / "cut" / core.LOG_NAME))
    assert [r["train_loss"] for r in log_whole if "train_loss" in r] == \
        [r["train_loss"] for r in log_cut if "train_loss" in r]
    assert resumed["val_loss"] == pytest.approx(summary["val_loss"], abs=0)
    state = json.loads((root / "cut" / core.STATE_NAME).read_text())
    assert state["backend"] == "tf" and state["files"] == {"optimizer": tft.OPTIMIZER_NAME} and state["step"] == 5
    assert (root / "whole" / core.CURVE_NAME).is_file()


def test_checkpoint_loads_in_transformers_gpt2_pt_and_gpt2_tf(runs):
    root = runs[0] / "whole"
    import transformers

    from gpt2_pt import GPT2LMHeadModel
    from gpt2_tf import TFGPT2LMHeadModel

    ids = [[464, 2068, 7586, 21831, 18045, 625, 262, 16931]]
    ours_tf = TFGPT2LMHeadModel.from_pretrained(str(root))(tf.constant(ids)).logits.numpy()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(root)).eval()
    ours_pt = GPT2LMHeadModel.from_pretrained(str(root)).eval()
    with torch.no_grad():
        np.testing.assert_allclose(theirs(torch.tensor(ids)).logits.numpy(), ours_tf, atol=2e-5, rtol=0)
        np.testing.assert_allclose(ours_pt(torch.tensor(ids)).logits.numpy(), ours_tf, atol=2e-5, rtol=0)
    assert theirs.config.resid_pdrop == 0.1  # the run's --dropout is the checkpoint's


def test_resume_refuses_other_settings_and_other_backends(runs, tmp_path):
    root = runs[0]
    changed = core.TrainConfig(out_dir=str(root / "whole"), data=[str(root / "corpus.txt")], steps=5,
                               batch_size=2, grad_accum=1, backend="tf", **TINY)
    with pytest.raises(ValueError, match="grad-accum 2 -> 1"):
        tft.train(changed, loader(changed), resume=True, progress=False)
    state_path = root / "whole" / core.STATE_NAME
    state = json.loads(state_path.read_text())
    foreign = tmp_path / "pt_run"
    foreign.mkdir()
    (foreign / core.STATE_NAME).write_text(json.dumps({**state, "backend": "pt"}))
    cfg = core.TrainConfig.from_json({**state["config"], "out_dir": str(foreign)})
    with pytest.raises(ValueError, match="written by --backend pt"):
        tft.train(cfg, loader(cfg), resume=True, progress=False)


def test_mixed_bfloat16_trains_like_float32_and_saves_float32(runs):
    """Keras's mixed_bfloat16 policy on every layer (bf16 activations and matmuls, float32 variables); see
    BF16_LOSS_RTOL for the tolerance."""
    root = runs[0]
    fp32 = np.array([r["train_loss"] for r in core.read_log(str(root / "whole" / core.LOG_NAME)) if "train_loss" in r])
    bf16 = np.array([r["train_loss"] for r in core.read_log(str(root / "bf16" / core.LOG_NAME)) if "train_loss" in r])
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    np.testing.assert_allclose(bf16, fp32, rtol=BF16_LOSS_RTOL, atol=0)
    assert bf16[-1] < bf16[0] - 0.3  # and learned
    saved = weights(root / "bf16")
    assert {a.dtype for a in saved.values()} == {np.dtype("float32")}
    import transformers

    ids = [[464, 2068, 7586, 21831, 18045, 625, 262, 16931]]
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(root / "bf16")).eval()
    assert theirs.dtype == torch.float32
    ours = tft.TFGPT2LMHeadModel.from_pretrained(str(root / "bf16"))(tf.constant(ids)).logits.numpy()
    with torch.no_grad():
        np.testing.assert_allclose(theirs(torch.tensor(ids)).logits.numpy(), ours, atol=2e-5, rtol=0)
