"""The bundled model: in the package, small, loadable by its name by us and by transformers, the CLIs' default
(said once on stderr), and never what the name `gpt2` means."""

import json
import os
import subprocess
import sys

import pytest

from gpt2_core import bundled
from gpt2_core.config import GPT2Config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def folder():
    return bundled.default_model()


def test_folder_is_small_and_complete(folder):
    names = set(os.listdir(folder))
    assert {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "merges.txt",
            "README.md", "loss_curve.png"} <= names
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
    assert total <= 25 * 1024 * 1024
    config = GPT2Config.from_pretrained(folder)
    assert config.vocab_size == 50257 and config.n_positions >= 256 and 4 <= config.n_layer <= 6
    card = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    for needle in ("linux-doc-6.12", "GPL-2.0", "make model", "gpt2-train", "unigram perplexity", "wall time"):
        assert needle in card


def test_loads_by_name_in_ours_and_transformers(folder):
    from gpt2_pt import GPT2LMHeadModel

    ours = GPT2LMHeadModel.from_pretrained(bundled.BUNDLED_NAME, dtype=torch.float32).eval()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([[464, 9720, 3544, 262, 6937, 11]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-4, atol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(folder)("The kernel")["input_ids"] == [464, 9720]


def test_the_name_gpt2_still_means_openai_gpt2():
    assert GPT2Config.from_pretrained("gpt2").n_layer == 12
    assert bundled.BUNDLED_NAME != "gpt2" and not bundled.is_bundled("gpt2")


def test_clis_use_it_without_model_and_say_so_once(tmp_path):
    gen = subprocess.run([sys.executable, "-m", "gpt2_core.cli", "--prompt", "The kernel", "--length", "8",
                          "--greedy"], capture_output=True, text=True, env=ENV, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert gen.stderr.count(bundled.BUNDLED_NAME) == 1 and gen.stdout.count("The kernel") == 1
    text = tmp_path / "t.txt"
    text.write_text("The kernel schedules tasks on every CPU. " * 20, encoding="utf-8")
    ev = subprocess.run([sys.executable, "-m", "gpt2_core.cli_eval", "--data", str(text), "--json"],
                        capture_output=True, text=True, env=ENV, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert ev.stderr.count(bundled.BUNDLED_NAME) == 1
    assert json.loads(ev.stdout)["perplexity"] > 1
