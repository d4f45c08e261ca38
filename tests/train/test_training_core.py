"""gpt2_core.training: the schedule against transformers', the weight-decay rule on a real model, settings
validation, the log, and the checkpoint folder swap."""

import json
import os

import pytest

from gpt2_core import training as core

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_cosine_part_equals_transformers_min_lr_schedule():
    cfg = core.TrainConfig(steps=500, warmup_steps=40, learning_rate=1e-3, min_lr=1e-4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
    sched = transformers.get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps, min_lr=cfg.min_lr)
    for step in range(cfg.steps):
        theirs = opt.param_groups[0]["lr"]
        if step >= cfg.warmup_steps:
            assert core.learning_rate(cfg, step) == pytest.approx(theirs, rel=1e-12, abs=1e-15), step
        else:  # nanoGPT's warmup: (step + 1) / (warmup + 1), so step 0 already learns (transformers': 0)
            assert core.learning_rate(cfg, step) == pytest.approx(1e-3 * (step + 1) / 41)
        opt.step()
        sched.step()
    assert core.learning_rate(cfg, cfg.steps + 10) == cfg.min_lr


def test_weight_decay_groups_on_a_real_model():
    from gpt2_pt import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=32))
    names = [n for n, _ in model.named_parameters()]
    decayed = {n for n in names if core.decays(n)}
    expected = {f"transformer.h.{i}.{m}.weight" for i in range(2)
                for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert decayed == expected
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names  # tied: listed once, no decay
    assert core.decays("lm_head.weight")  # an untied head is a matrix like the others


@pytest.mark.parametrize("field,value,needle", [
    ("steps", 0, "--steps"), ("batch_size", -1, "--batch-size"), ("learning_rate", float("nan"), "--learning-rate"),
    ("min_lr", 1.0, "--min-lr"), ("beta2", 1.0, "--beta2"), ("val_fraction", 1.0, "--val-fraction"),
    ("dtype", "float16", "--dtype"), ("dropout", 1.5, "--dropout"), ("warmup_steps", -2, "--warmup-steps"),
])
def test_bad_settings_name_the_flag(field, value, needle):
    with pytest.raises(ValueError, match=needle) as e:
        core.TrainConfig(**{field: value})
    assert repr(value) in str(e.value) or str(value) in str(e.value)


def test_resume_refuses_changed_settings():
    saved = core.TrainConfig(batch_size=4, steps=1000, decay_steps=1000)
    cfg, note = core.check_resumable(saved, core.TrainConfig(batch_size=4, steps=5000), 1, 1, 1000)
    assert cfg.decay_steps == 1000 and cfg.steps == 5000  # more steps: the schedule stays, min_lr after step 1000
    assert note == ("--resume from step 1000 with changed settings: --steps 1000 -> 5000 (the lr schedule is the "
                    "saved run's: warmup 100, cosine to --min-lr at step 1000; steps 1000-5000 run at --min-lr "
                    "6e-05)")
    assert core.learning_rate(cfg, 999) == pytest.approx(6e-5, rel=1e-4) and core.learning_rate(cfg, 3000) == 6e-5
    cfg, note = core.check_resumable(saved, core.TrainConfig(batch_size=2, steps=1000), 2, 1, 10)
    assert note is None and cfg.decay_steps == 1000  # the same global batch on 2 processes
    # a checkpoint written before decay_steps existed: its steps were the decay's end
    legacy = core.TrainConfig.from_json({k: v for k, v in saved.to_json().items() if k != "decay_steps"})
    assert core.check_resumable(legacy, core.TrainConfig(batch_size=4, steps=2000), 1, 1)[0].decay_steps == 1000
    for now, needle in [(dict(seed=7), "--seed 1337 -> 7"), (dict(decay_steps=5000), "--decay-steps 1000 -> 5000"),
                        (dict(warmup_steps=10), "--warmup-steps 100 -> 10"), (dict(min_lr=0.0), "--min-lr")]:
        with pytest.raises(ValueError, match=needle):
            core.check_resumable(saved, core.TrainConfig(batch_size=4, **now), 1, 1)
    with pytest.raises(ValueError, match="global batch 4x1 processes -> 4x2"):
        core.check_resumable(saved, core.TrainConfig(batch_size=4), 2, 1)
    with pytest.raises(ValueError, match=r"at least the checkpoint's step \(1000\)"):
        core.check_resumable(saved, core.TrainConfig(batch_size=4, steps=500), 1, 1, 1000)


def test_decay_steps_ends_the_cosine_early():
    cfg = core.TrainConfig(steps=100, warmup_steps=10, decay_steps=50, learning_rate=1e-3, min_lr=1e-4)
    full = core.TrainConfig(steps=50, warmup_steps=10, learning_rate=1e-3, min_lr=1e-4)
    assert [core.learning_rate(cfg, s) for s in range(50)] == [core.learning_rate(full, s) for s in range(50)]
    assert {core.learning_rate(cfg, s) for s in range(50, 100)} == {1e-4}
    with pytest.raises(ValueError, match="--decay-steps should be a positive integer. Received: 0"):
        core.TrainConfig(decay_steps=0)


def test_checkpoint_swap_keeps_other_files_and_recovers(tmp_path):
    out = tmp_path / "run"
    cfg = core.TrainConfig(out_dir=str(out))

    def files(text):
        return lambda folder: open(os.path.join(folder, "model.safetensors"), "w").write(text)

    core.write_checkpoint(str(out), files("v1"), {"step": 1})
    (out / "notes.md").write_text("mine")
    log = core.TrainLog(str(out))
    log.write(step=1, train_loss=3.0)
    core.write_checkpoint(str(out), files("v2"), {"step": 2})
    log.write(step=2, train_loss=2.5)  # the open log moved with the folder
    log.close()
    assert (out / "model.safetensors").read_text() == "v2" and (out / "notes.md").read_text() == "mine"
    assert core.read_state(str(out))["step"] == 2
    assert [r["step"] for r in core.read_log(str(out / core.LOG_NAME))] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left behind

    def failing(folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        core.write_checkpoint(str(out), failing, {"step": 3})
    assert core.read_state(str(out))["step"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    os.rename(out, str(out) + ".previous")  # a swap cut short between its renames
    assert core.read_state(str(out))["step"] == 2
    # resuming drops the log lines after the resumed step
    core.TrainLog(str(out), resume_step=1).close()
    assert [r["step"] for r in core.read_log(str(out / core.LOG_NAME))] == [1]
    with pytest.raises(ValueError, match="training_state.json not found"):
        core.read_state(str(tmp_path / "elsewhere"))
    assert json.loads(json.dumps(core.make_state(cfg, step=2, tokens=10, world_size=1, elapsed=1.0, val_loss=None,
                                                 backend_files={})))["config"]["out_dir"] == str(out)


def test_loss_curve_png(tmp_path):
    log = core.TrainLog(str(tmp_path))
    for step in range(1, 6):
        log.write(step=step, train_loss=5.0 / step)
    log.write(step=5, val_loss=1.5)
    log.close()
    path = core.plot_loss_curve(log.path, str(tmp_path / "curve.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
