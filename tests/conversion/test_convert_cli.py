"""gpt2-convert as a command: exit status, one-line errors, and no framework needed for safetensors <-> h5."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from gpt2_core import checkpoint, layouts


def run_cli(*args, prelude=""):
    code = prelude + "\nimport sys\nfrom gpt2_convert.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_success_and_one_line_errors(hf_lm, tmp_path):
    src = hf_lm[0]
    ok = run_cli(src, tmp_path / "dst", "--format", "tf", "--dtype", "float16")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"wrote {tmp_path / 'dst'}: GPT2LMHeadModel") and "tf float16" in ok.stdout

    again = run_cli(src, tmp_path / "dst")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"gpt2-convert: error: {tmp_path / 'dst'}: already exists (pass --force to replace it)"]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((src / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:-64])
    failed = run_cli(broken, tmp_path / "out")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr
    assert lines[0].startswith(f"gpt2-convert: error: {broken / 'model.safetensors'}: ") and "truncated" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["broken", "dst"]


# ml_dtypes is blocked too, so the bfloat16 step runs our own float32 -> bfloat16 rounding.
BLOCK_FRAMEWORKS = textwrap.dedent("""
    import importlib.abc, sys
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "tensorflow", "keras", "tf_keras", "transformers", "jax", "ml_dtypes"):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, Blocker())
    import atexit
    atexit.register(lambda: print("FRAMEWORKS", sorted(m for m in sys.modules if m.split('.')[0] in
                                                    ("torch", "tensorflow", "keras", "transformers"))))
""")


def test_safetensors_h5_and_openai_need_no_framework(hf_lm, openai_release, tmp_path):
    src, model, _ = hf_lm
    steps = [(src, tmp_path / "h5", "tf"), (tmp_path / "h5", tmp_path / "st", "safetensors"),
             (openai_release[0], tmp_path / "openai", "safetensors"),
             (src, tmp_path / "bf16", "safetensors", "bfloat16")]
    for source, dst, fmt, *dtype in steps:
        result = run_cli(source, dst, "--format", fmt, *(["--dtype", *dtype] if dtype else []),
                         prelude=BLOCK_FRAMEWORKS)
        assert result.returncode == 0, result.stderr
        assert "FRAMEWORKS []" in result.stdout
    state = layouts.to_canonical(*checkpoint.read_weights(checkpoint.find_weights(tmp_path / "st")))
    for name, value in model.state_dict().items():
        if name != "lm_head.weight":
            np.testing.assert_array_equal(state[name], value.numpy(), err_msg=name)
    bf16 = checkpoint.read_weights(checkpoint.find_weights(tmp_path / "bf16"))[0]
    np.testing.assert_array_equal(bf16["transformer.wte.weight"],
                                  model.state_dict()["transformer.wte.weight"].bfloat16().float().numpy())

    needs_torch = run_cli(src, tmp_path / "bin", "--format", "pytorch", prelude=BLOCK_FRAMEWORKS)
    assert needs_torch.returncode == 1
    assert "needs torch" in needs_torch.stderr and len(needs_torch.stderr.strip().splitlines()) == 1
