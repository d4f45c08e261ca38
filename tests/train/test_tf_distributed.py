"""gpt2_tf.training under tf.distribute: two gpt2-train processes on 127.0.0.1 (MultiWorkerMirroredStrategy, TF_CONFIG
with two free ports) end with the weights of one process on the same global batch.

Tolerance: each worker averages the gradients of its 2 rows and the all-reduce averages the 2 workers, where the
single process averages 4 rows at once: the same sum in another order, so gradients agree to a few float32 ulps
(~1e-7 relative), and AdamW (whose step lr * m_hat / (sqrt(v_hat) + eps) does not scale with the gradient) moves
weights apart by ~lr x that per step, except for coordinates whose gradient is at rounding level, where one step
may differ by up to 2 lr. So: mean difference <= 1e-7, worst element <= 4 lr (5 steps at lr <= 2e-3).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from gpt2_core import training as core

tf = pytest.importorskip("tensorflow")

from gpt2_tf import training as tft  # noqa: E402
from tf_train_utils import TINY, loader, weights, write_corpus  # noqa: E402

LR = 2e-3


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _flags(cfg: dict) -> list[str]:
    out = []
    for key, value in cfg.items():
        out += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return out


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_same_global_batch(tmp_path):
    corpus = write_corpus(tmp_path)
    common = dict(data=[corpus], steps=5, warmup_steps=1, learning_rate=LR, min_lr=LR / 10, eval_every=0,
                  eval_batches=2, seed=7, **TINY)
    one = core.TrainConfig(out_dir=str(tmp_path / "one"), batch_size=4, backend="tf", **common)
    tft.train(one, loader(one), progress=False)

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    argv = [sys.executable, "-m", "gpt2_core.cli_train", "--backend", "tf", "--batch-size", "2", "--no-progress",
            "--out", str(tmp_path / "two"), *_flags(common)]
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=600))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert outputs[1][0].strip() == ""  # the summary is the chief's to print
    assert summary["step"] == 5 and summary["tokens"] == 5 * 4 * TINY["block_size"]

    state = json.loads((tmp_path / "two" / core.STATE_NAME).read_text())
    assert state["world_size"] == 2
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert sorted(a) == sorted(b)
    for name in a:
        diff = np.abs(a[name] - b[name])
        assert diff.mean() <= 1e-7 and diff.max() <= 4 * LR, (name, diff.mean(), diff.max())
    losses_one = [r["train_loss"] for r in core.read_log(str(tmp_path / "one" / core.LOG_NAME)) if "train_loss" in r]
    losses_two = [r["train_loss"] for r in core.read_log(str(tmp_path / "two" / core.LOG_NAME)) if "train_loss" in r]
    np.testing.assert_allclose(losses_two, losses_one, rtol=0, atol=1e-5)
