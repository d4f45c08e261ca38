"""gpt2_pt.training in this process: a run resumed with more --steps keeps its lr schedule (the same weights, bit
for bit, as one run with --decay-steps at the first run's end), and bf16 autocast on CPU trains close to float32
while the checkpoint keeps float32 weights that transformers loads. (The CLI, Ctrl-C + --resume and DDP are
tests/train/test_train_cli.py; TensorFlow's twins of these tests are in test_train_tf.py.)"""

import logging

import numpy as np
import pytest

from gpt2_core import training as core

torch = pytest.importorskip("torch")

from gpt2_pt import training as ptt  # noqa: E402
from tf_train_utils import BF16_LOSS_RTOL, TINY, loader, weights, write_corpus  # noqa: E402

COMMON = dict(warmup_steps=2, learning_rate=3e-3, min_lr=3e-4, batch_size=2, grad_accum=2, eval_every=0,
              eval_batches=2, backend="pt", **TINY)


def losses(folder):
    return [r["train_loss"] for r in core.read_log(str(folder / core.LOG_NAME)) if "train_loss" in r]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 4-step run resumed to 7 steps; one 7-step run whose decay ends at step 4; the latter in bf16."""
    root = tmp_path_factory.mktemp("pttrain")
    corpus = write_corpus(root)
    out = {}
    for name, extra in (("short", dict(steps=4)), ("long", dict(steps=7, decay_steps=4)),
                        ("bf16", dict(steps=7, decay_steps=4, dtype="bfloat16"))):
        cfg = core.TrainConfig(out_dir=str(root / name), data=[corpus], **{**COMMON, **extra})
        out[name] = ptt.train(cfg, loader(cfg), progress=False)
    return root, out


def test_resume_with_more_steps_keeps_the_schedule(runs, caplog):
    root, out = runs
    assert out["short"]["step"] == 4
    cfg = core.TrainConfig(out_dir=str(root / "short"), data=[str(root / "corpus.txt")], steps=7, **COMMON)
    with caplog.at_level(logging.WARNING, logger="gpt2_core.training"):
        extended = ptt.train(cfg, loader(cfg), resume=True, progress=False)
    assert extended["step"] == 7
    notes = [r.getMessage() for r in caplog.records if "--resume" in r.getMessage()]
    assert notes == ["--resume from step 4 with changed settings: --steps 4 -> 7 (the lr schedule is the saved "
                     "run's: warmup 2, cosine to --min-lr at step 4; steps 4-7 run at --min-lr 0.0003)"]
    a, b = weights(root / "long"), weights(root / "short")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)  # bit for bit
    log = core.read_log(str(root / "short" / core.LOG_NAME))
    assert [r["lr"] for r in log if "lr" in r][4:] == [3e-4] * 3
    assert losses(root / "short") == losses(root / "long")


def test_resume_refuses_a_new_schedule_or_a_step_already_passed(runs):
    root, _ = runs
    corpus = str(root / "corpus.txt")
    moved = core.TrainConfig(out_dir=str(root / "long"), data=[corpus], steps=9, **{**COMMON, "decay_steps": 9})
    with pytest.raises(ValueError, match="--decay-steps 4 -> 9"):
        ptt.train(moved, loader(moved), resume=True, progress=False)
    back = core.TrainConfig(out_dir=str(root / "long"), data=[corpus], steps=5, **COMMON)
    with pytest.raises(ValueError, match=r"--steps should be at least the checkpoint's step \(7\).*--steps 5"):
        ptt.train(back, loader(back), resume=True, progress=False)


def test_bf16_autocast_trains_like_float32_and_saves_float32(runs):
    """torch.autocast(bfloat16) on CPU (emulated where the CPU has no bf16 instructions) rounds each matmul's
    inputs to bf16 (8 significant bits); see BF16_LOSS_RTOL for the tolerance."""
    root, _ = runs
    fp32, bf16 = np.array(losses(root / "long")), np.array(losses(root / "bf16"))
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    np.testing.assert_allclose(bf16, fp32, rtol=BF16_LOSS_RTOL, atol=0)
    assert bf16[-1] < bf16[0] - 0.3  # and learned
    saved = weights(root / "bf16")
    assert {a.dtype for a in saved.values()} == {np.dtype("float32")}
    transformers = pytest.importorskip("transformers")
    from gpt2_pt import GPT2LMHeadModel

    theirs = transformers.GPT2LMHeadModel.from_pretrained(root / "bf16").eval()
    ours = GPT2LMHeadModel.from_pretrained(str(root / "bf16")).eval()
    assert theirs.dtype == torch.float32
    ids = torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262, 16931]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-5, atol=1e-5)
