"""gpt2-eval equals transformers' documented perplexity recipe, run with transformers on the same model and text
(1e-5 relative), in both backends and with batching; its errors are one line."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt2_core.evaluation import sliding_window_perplexity, unigram_perplexity, windows

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
       "TF_CPP_MIN_LOG_LEVEL": "3"}
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "man_en.txt"


def recipe(model, input_ids, max_length, stride):
    """transformers' "Perplexity of fixed-length models" loop, as its documentation writes it."""
    encodings_input_ids = torch.tensor([input_ids])
    seq_len = encodings_input_ids.size(1)
    nll_sum = 0.0
    n_tokens = 0
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on last loop
        input_ids_ = encodings_input_ids[:, begin_loc:end_loc]
        target_ids = input_ids_.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(input_ids_, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    avg_nll = nll_sum / n_tokens
    return torch.exp(avg_nll).item(), avg_nll.item(), n_tokens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny GPT-2 (full vocabulary) made a little less random by a few steps of transformers training, and
    the text it is scored on."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=2))
    text = CORPUS.read_text(encoding="utf-8")[:12_000] if CORPUS.exists() else \
        " ".join(f"Line {i} says {i % 7} things." for i in range(800))
    from gpt2_core.tokenizer import GPT2Tokenizer

    ids = GPT2Tokenizer.from_pretrained("gpt2").encode(text)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(12):
        batch = torch.tensor([ids[i * 64:(i + 1) * 64] for i in range(step % 4, step % 4 + 4)])
        model(batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval().save_pretrained(folder)
    data = folder / "text.txt"
    data.write_text(text, encoding="utf-8")
    return model, str(folder), str(data), ids, text


def run(*args):
    return subprocess.run([sys.executable, "-m", "gpt2_core.cli_eval", *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


@pytest.mark.parametrize("max_length,stride", [(64, 24), (64, 64), (40, 1 + 39 // 2), (64, 1)])
def test_core_loop_equals_the_recipe(tiny, max_length, stride):
    model, _, _, ids, _ = tiny
    ids = ids[:700] if stride > 1 else ids[:120]  # stride 1: a window per token

    def token_nll(x):
        with torch.no_grad():
            logits = model(torch.from_numpy(x)).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), torch.from_numpy(x)[:, 1:],
                                                 reduction="none").numpy()

    ppl, nll, n = recipe(model, ids, max_length, stride)
    for batch_size in (1, 5):
        ours = sliding_window_perplexity(token_nll, ids, max_length=max_length, stride=stride,
                                         batch_size=batch_size)
        assert ours.tokens == n
        assert ours.nll == pytest.approx(nll, rel=1e-5)
        assert ours.perplexity == pytest.approx(ppl, rel=1e-5)


def test_windows_cover_the_text_once():
    for n, L, s in [(10, 4, 2), (100, 30, 7), (5, 8, 3), (31, 10, 10)]:
        ws = list(windows(n, L, s))
        assert ws[-1].end == n and sum(w.target_length for w in ws) == n
        assert all(w.end - w.begin <= L and w.target_length <= w.end - w.begin for w in ws)
    with pytest.raises(ValueError, match="stride should be between 1 and max_length"):
        list(windows(10, 4, 5))


def test_cli_equals_the_recipe_in_both_backends(tiny, capsys):
    model, folder, data, ids, text = tiny
    ppl, nll, n = recipe(model, ids, 64, 32)
    total_nll = 0.0
    for w in windows(len(ids), 64, 32):
        x = torch.tensor([ids[w.begin:w.end]])
        labels = x.clone()
        labels[:, :-w.target_length] = -100
        with torch.no_grad():
            logits = model(x).logits
        total_nll += torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100,
                                                       reduction="sum").item()
    for backend, batch, process in (("pt", "1", True), ("pt", "4", False), ("tf", "3", True)):
        argv = ["--model", folder, "--data", data, "--stride", "32", "--backend", backend, "--batch-size", batch,
                "--json"]
        # each backend once as its own process (what a user runs), the batched one in this process (no start-up)
        status, stdout, stderr = _run_cli(argv, process, capsys)
        assert status == 0, stderr[-2000:]
        out = json.loads(stdout)
        assert out["tokens"] == n
        assert out["perplexity"] == pytest.approx(ppl, rel=1e-5), backend
        assert out["nll"] == pytest.approx(nll, rel=1e-5), backend
        # bits per byte: every scored token's NLL (each of tokens 1..N-1 once, in the window that scores it), in
        # bits, over the text's UTF-8 bytes
        assert out["bits_per_byte"] == pytest.approx(total_nll / math.log(2) / len(text.encode()), rel=1e-5)
    status, stdout, _ = _run_cli(["--model", folder, "--data", data, "--stride", "32"], False, capsys)
    assert status == 0 and "perplexity:" in stdout and "bits per byte:" in stdout


def _run_cli(argv, process, capsys):
    """(exit status, stdout, stderr) of gpt2-eval: a new process, or its main() in this one."""
    if process:
        result = run(*argv)
        return result.returncode, result.stdout, result.stderr
    from gpt2_core import cli_eval

    status = cli_eval.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_errors_are_one_line(tiny, tmp_path, capsys):
    _, folder, data, _, _ = tiny
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01")
    for args, needle in [(["--data", str(tmp_path / "none.txt")], "file not found"),
                         (["--data", str(binary)], "binary"),
                         (["--data", data, "--max-length", "65"], "at most the model's n_positions (64)"),
                         (["--data", data, "--stride", "100"], "--stride should be at most")]:
        status, _, stderr = _run_cli(["--model", folder, *args], False, capsys)
        lines = [line for line in stderr.splitlines() if line.startswith("gpt2-eval")]
        assert status == 1 and len(lines) == 1 and needle in lines[0] and "Traceback" not in stderr, stderr


def test_unigram_perplexity():
    train = np.array([0, 0, 1, 2])
    # counts + 1: [3, 2, 2, 1] of 8 over a vocabulary of 4
    assert unigram_perplexity(train, np.array([0, 3]), 4) == pytest.approx(math.exp(-(math.log(3 / 8) +
                                                                                      math.log(1 / 8)) / 2))
