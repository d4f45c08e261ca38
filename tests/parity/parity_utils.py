"""Helpers for tests/parity: the same checkpoint through PyTorch and TensorFlow, compared with ONE tolerance.

TOLERANCE is the only tolerance any cross-framework test uses (gpt2_pt vs gpt2_tf, gpt2_tf vs transformers 5):
fp32, the maximum absolute difference relative to the largest magnitude of the reference tensor.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import gpt2_pt  # noqa: E402
import gpt2_tf  # noqa: E402
from gpt2_core import GPT2Config  # noqa: E402
from gpt2_core.parity import PARITY_RTOL as TOLERANCE  # noqa: E402  (the project's one tolerance)

from pt_utils import randomize as randomize_torch  # noqa: E402  (tests/pt, on sys.path: tests/conftest.py)
from tiny import TINY  # noqa: E402


def to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close(ours, ref, what=""):
    ours, ref = to_numpy(ours), to_numpy(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    assert err <= TOLERANCE * scale, f"{what}: max abs error {err:.3g} > {TOLERANCE} x {scale:.3g}"


def pt_tf_pair(directory, class_name="GPT2LMHeadModel", seed=0, **overrides):
    """A random gpt2_pt model saved to `directory`, and gpt2_tf's model loaded from that checkpoint."""
    config = GPT2Config(**{**TINY, **overrides})
    torch.manual_seed(seed)
    pt = randomize_torch(getattr(gpt2_pt, class_name)(config), seed).eval()
    pt.save_pretrained(directory)
    return pt, getattr(gpt2_tf, "TF" + class_name).from_pretrained(directory)


def torch_past(past):
    return tuple((torch.from_numpy(np.array(k)), torch.from_numpy(np.array(v))) for k, v in past)


def tf_past(past):
    return tuple((tf.constant(k.detach().numpy()), tf.constant(v.detach().numpy())) for k, v in past)
