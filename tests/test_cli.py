"""gpt2-generate, run as a user runs it: in a subprocess, on a tiny checkpoint directory."""

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    # the full GPT-2 vocabulary (the shipped tokenizer's), everything else tiny
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_positions=64, n_embd=16, n_layer=1, n_head=2)
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(cfg).save_pretrained(directory)
    return str(directory)


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "gpt2_core.cli", *args], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=120)


def _one_line_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpt2-generate")]
    assert len(lines) == 1, result.stderr  # (a framework may log its own start-up lines before ours)
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_model_directory(tmp_path):
    _one_line_error(run("--model", str(tmp_path / "nowhere"), "--prompt", "hi"), "nowhere")


def test_unknown_model_name():
    _one_line_error(run("--model", "no-such-org/no-such-model-xyz", "--prompt", "hi"), "no-such-model-xyz")


@pytest.mark.parametrize("args,needle", [
    (["--length", "0"], "--length"), (["--backend", "jax"], "--backend"), (["--k", "-3"], "--k"),
    (["--frobnicate"], "--frobnicate"), (["--p", "1.5"], "top_p"), (["--temperature", "0"], "temperature"),
    (["--num-beams", "2", "--num-return-sequences", "3"], "num_return_sequences"),
    (["--dtype", "int4"], "--dtype"),
])
def test_bad_flags(args, needle):
    _one_line_error(run("--model", "gpt2", "--prompt", "hi", *args), needle)


def test_tf_backend_error_is_one_line_when_missing(tiny_dir):
    result = run("--model", tiny_dir, "--backend", "tf", "--prompt", "hi", "--length", "3")
    if result.returncode == 0:
        pytest.skip("the TensorFlow backend exists")
    _one_line_error(result, "TensorFlow")


def test_too_long_generation_is_an_error(tiny_dir):
    pytest.importorskip("gpt2_core.tokenizer")
    _one_line_error(run("--model", tiny_dir, "--prompt", "hello", "--length", "100"), "max_new_tokens")


def _decode_expected(tiny_dir, prompt, **kwargs):
    from gpt2_core.tokenizer import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained("gpt2")
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=50256, **kwargs)
    return [tok.decode(row.tolist(), skip_special_tokens=True) for row in out]


def test_greedy_text_equals_transformers(tiny_dir):
    pytest.importorskip("gpt2_core.tokenizer")
    result = run("--model", tiny_dir, "--prompt", "Hello world", "--length", "8", "--greedy")
    assert result.returncode == 0, result.stderr
    expected = _decode_expected(tiny_dir, "Hello world", max_new_tokens=8, do_sample=False)
    assert result.stdout == f"=== GENERATED SEQUENCE 1 ===\n{expected[0]}\n"


def test_beams_several_blocks_and_stdin_prompt(tiny_dir):
    pytest.importorskip("gpt2_core.tokenizer")
    result = run("--model", tiny_dir, "--length", "6", "--greedy", "--num-beams", "3", "--num-return-sequences",
                 "2", stdin="Once upon a time\n")
    assert result.returncode == 0, result.stderr
    expected = _decode_expected(tiny_dir, "Once upon a time", max_new_tokens=6, num_beams=3,
                                num_return_sequences=2, do_sample=False)
    assert result.stdout == "".join(f"=== GENERATED SEQUENCE {i + 1} ===\n{t}\n" for i, t in enumerate(expected))


def test_sampling_is_seeded_and_streaming_prints_the_same_text(tiny_dir):
    pytest.importorskip("gpt2_core.tokenizer")
    args = ("--model", tiny_dir, "--prompt", "The", "--length", "10", "--seed", "3", "--k", "20")
    printed = run(*args)
    streamed = run(*args, "--stream")  # same seed, so the same sample: streaming shows exactly that text
    assert printed.returncode == 0 and streamed.returncode == 0, printed.stderr + streamed.stderr
    assert streamed.stdout == printed.stdout.split("\n", 1)[1]


def test_int8_and_stop_token(tiny_dir):
    pytest.importorskip("gpt2_core.tokenizer")
    args = ("--model", tiny_dir, "--prompt", "a b", "--length", "8", "--greedy", "--int8")
    full = run(*args)
    assert full.returncode == 0, full.stderr
    text = full.stdout.split("\n", 1)[1]
    stop = text[len("a b") + 2:len("a b") + 4]
    cut = run(*args, "--stop-token", stop)
    assert cut.stdout.split("\n", 1)[1] == text[:text.find(stop, len("a b"))] + "\n"
