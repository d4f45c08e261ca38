"""gpt2-train run as a user runs it (real files; subprocesses wherever a process matters: the first run, Ctrl-C,
torchrun; main() in this process for errors and reference runs, which saves an interpreter start-up each): the HF
checkpoint transformers and gpt2_tf load, the log and curve, bad data, Ctrl-C + --resume ending bit-identical to
an uninterrupted run, fine-tuning, and DDP on 2 processes equal to 1 process on the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "man_en.txt"
TINY = ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--n-positions", "32", "--block-size", "16",
        "--batch-size", "2", "--warmup-steps", "2", "--learning-rate", "3e-3", "--no-progress"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    if CORPUS.exists():
        text = CORPUS.read_text(encoding="utf-8")[:60_000]
    else:
        text = " ".join(f"Sentence number {i} talks about item {i % 17}." for i in range(3000))
    path = folder / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def cmd(*args):
    return [sys.executable, "-m", "gpt2_core.cli_train", *args]


def train(*args, timeout=300):
    return subprocess.run(cmd(*args), capture_output=True, text=True, env=ENV, timeout=timeout)


def summary(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def weights(folder):
    return load_file(os.path.join(folder, "model.safetensors"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, text_file):
    """A 6-step pretraining run of the CLI, with validation at steps 3 and 6: its folder and summary."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    s = summary(train("--data", text_file, *TINY, "--steps", "6", "--eval-every", "3", "--val-fraction", "0.2",
                      "--out", str(out)))
    return out, s


def test_pretrain_writes_a_checkpoint_transformers_loads(pretrained, text_file):
    out, s = pretrained
    assert s["step"] == 6 and s["tokens"] == 6 * 2 * 16 and s["stopped_by"] is None
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "merges.txt",
            "tokenizer.json", "optimizer.pt", "training_state.json", "train_log.jsonl", "loss_curve.png"} <= names
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in log if "val_loss" in r] == [3, 6]
    assert all(r["tokens_per_s"] >= 0 and r["lr"] > 0 for r in log if "train_loss" in r)
    assert s["val_loss"] == pytest.approx(log[-1]["val_loss"], abs=1e-6)

    from gpt2_pt import GPT2LMHeadModel

    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    ours = GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262, 16931]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-5, atol=1e-5)
    assert theirs.config.n_layer == 1 and theirs.config.resid_pdrop == 0.0  # pretraining: no dropout
    assert transformers.AutoTokenizer.from_pretrained(out)("Hello world")["input_ids"] == [15496, 995]
    # the val loss the run reports is the loss transformers computes on the same held-out block
    tokens = np.fromfile(next(Path(text_file).parent.glob(".corpus.txt.*.tokens")), dtype=np.uint16)
    cut = len(tokens) - round(len(tokens) * 0.2)
    blocks = [tokens[cut + k * 17: cut + (k + 1) * 17].astype(np.int64) for k in range(40)]
    with torch.no_grad():
        losses = [theirs(torch.tensor(b[None]), labels=torch.tensor(b[None])).loss.item() for b in blocks]
    assert float(np.mean(losses)) == pytest.approx(s["val_loss"], rel=1e-4)


def test_checkpoint_loads_in_tensorflow(pretrained):
    tf = pytest.importorskip("tensorflow")
    from gpt2_pt import GPT2LMHeadModel
    from gpt2_tf import TFGPT2LMHeadModel

    out, _ = pretrained
    ids = [[464, 2068, 7586, 21831]]
    theirs = np.asarray(TFGPT2LMHeadModel.from_pretrained(str(out))(tf.constant(ids)).logits)
    with torch.no_grad():
        ours = GPT2LMHeadModel.from_pretrained(str(out)).eval()(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)


def in_process(capsys, *args):
    """gpt2-train's main() in this process (no interpreter start-up): (exit status, stdout, stderr)."""
    from gpt2_core import cli_train

    status = cli_train.main([*args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("make,needle", [
    (lambda d: ["--data", str(d / "missing.txt")], "file not found"),
    (lambda d: ["--data", str(d / "*.nothing")], "no file matches"),
    (lambda d: ["--data", _write(d / "empty.txt", b"")], "empty"),
    (lambda d: ["--data", _write(d / "model.bin", b"\x00\x01\x02binary")], "binary"),
    (lambda d: ["--data", _write(d / "short.txt", b"Too short for a block.")], "too few for one block"),
    (lambda d: ["--data", _write(d / "long.txt", b"Long enough for a block of sixteen tokens, twice. " * 4),
                "--val-data", _write(d / "val.txt", b"Too short.")], "too few for one block"),
    (lambda d: ["--data", _write(d / "long.txt", b"Long enough for a block of sixteen tokens, twice. " * 4),
                "--val-data", str(d / "nowhere.txt")], "file not found"),
])
def test_bad_data_is_one_line_before_training(tmp_path, capsys, make, needle):
    out = tmp_path / "run"
    status, _, err = in_process(capsys, *make(tmp_path), *TINY, "--steps", "2", "--val-fraction", "0", "--out",
                             str(out))
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("gpt2-train")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not out.exists()


def _write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.slow
def test_interrupt_then_resume_ends_with_the_same_weights(tmp_path, capsys, text_file):
    flags = ["--data", text_file, *TINY, "--steps", "40", "--val-fraction", "0.1", "--eval-every", "10",
             "--dropout", "0.1"]  # dropout on: its per-step seeding must carry across the restart too
    whole = tmp_path / "whole"
    summary(train(*flags, "--out", str(whole)))

    part = tmp_path / "part"
    process = subprocess.Popen(cmd(*flags, "--out", str(part)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    log = part / "train_log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and sum(1 for line in log.read_text().splitlines() if "train_loss" in line) >= 3:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-2000:]
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["stopped_by"] == "SIGINT" and 3 <= stopped["step"] < 40, stopped
    assert "continue with --resume" in err
    state = json.loads((part / "training_state.json").read_text())
    assert state["step"] == stopped["step"]

    resumed = summary(train(*flags, "--out", str(part), "--resume"))
    assert resumed["step"] == 40
    a, b = weights(whole), weights(part)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)  # bit for bit
    steps = [json.loads(line)["step"] for line in (part / "train_log.jsonl").read_text().splitlines()
             if "train_loss" in line]
    assert steps == list(range(1, 41))  # one line per step, none twice

    status, _, err = in_process(capsys, *flags, "--out", str(part), "--resume", "--seed", "5")
    assert status == 1 and "--seed 1337 -> 5" in err


def test_fine_tune_a_checkpoint(tmp_path, capsys, text_file):
    torch.manual_seed(0)
    base = tmp_path / "base"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32)) \
        .save_pretrained(base)
    out = tmp_path / "tuned"
    status, stdout, err = in_process(capsys, "--model", str(base), "--data", text_file, "--block-size", "16",
                                     "--batch-size", "2", "--steps", "3", "--val-fraction", "0.1", "--no-progress",
                                     "--out", str(out))
    assert status == 0 and json.loads(stdout.strip().splitlines()[-1])["step"] == 3, err
    before, after = weights(base), weights(out)
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert json.loads((out / "config.json").read_text())["resid_pdrop"] == 0.1  # the checkpoint's dropout kept
    status, _, err = in_process(capsys, "--model", str(base), "--data", text_file, "--block-size", "64", "--steps",
                             "1", "--no-progress", "--out", str(tmp_path / "x"))
    assert status == 1 and "--block-size should be at most the model's n_positions (32)" in err


@pytest.mark.slow
def test_two_processes_equal_one_on_the_same_global_batch(tmp_path, capsys, text_file):
    """DDP on 2 gloo processes (batch 2 each) vs 1 process (batch 4): the same blocks, the same mean loss; only
    the order of float32 sums differs (gradients averaged by all-reduce vs. one mean over 4 rows), ~1e-7
    relative per step. Adam divides by sqrt(v) and so keeps those differences at about that size over 5 steps
    (no amplification near zero gradients is possible beyond eps=1e-8), hence 1e-5 absolute on weights of
    size ~0.02-1."""
    common = ["--data", text_file, "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--n-positions", "32",
              "--block-size", "16", "--warmup-steps", "2", "--learning-rate", "3e-3", "--no-progress", "--steps",
              "5", "--val-fraction", "0.1"]
    one = tmp_path / "one"
    two = tmp_path / "two"
    status, out, err = in_process(capsys, *common, "--batch-size", "4", "--out", str(one))  # no start-up
    assert status == 0, err[-3000:]
    s1 = json.loads(out.strip().splitlines()[-1])
    s2 = summary(train(*common, "--batch-size", "2", "--nproc", "2", "--out", str(two), timeout=400))
    assert s1["tokens"] == s2["tokens"] == 5 * 4 * 16
    assert s2["train_loss"] == pytest.approx(s1["train_loss"], rel=1e-5)
    a, b = weights(one), weights(two)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-5, err_msg=name)
    assert json.loads((two / "training_state.json").read_text())["world_size"] == 2
