"""Helpers for tests/tf: tiny random TF models, the transformers-TF 4.57 fixtures, number-for-number comparison."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gpt2_tf  # noqa: E402
from gpt2_core import GPT2Config  # noqa: E402
from tiny import TINY  # noqa: E402  (tests/core: the shape every backend test builds)

RTOL = 1e-5  # fp32, same weights: relative to the largest magnitude of the reference tensor
FIXTURES = Path(__file__).parents[1] / "fixtures" / "tf457"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "labels", "mc_token_ids")


def assert_close(ours, ref, what="", rtol=RTOL):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol} x {scale:.3g}"


def randomize(model, seed=0):
    """Random values in every weight (the default init leaves biases 0 and LayerNorm 1/0, which would hide a
    bias or LayerNorm bug)."""
    rng = np.random.default_rng(seed)
    for name, variable in gpt2_tf.loading.state_variables(model).items():
        scale = 0.3 if name.endswith(("wte.weight", "wpe.weight")) else 0.1
        base = 1.0 if ".ln_" in f".{name}" and name.endswith("weight") else 0.0
        variable.assign((base + scale * rng.standard_normal(variable.shape)).astype(np.float32))
    return model


def tiny_model(class_name="TFGPT2LMHeadModel", seed=0, **overrides):
    return randomize(getattr(gpt2_tf, class_name)(GPT2Config(**{**TINY, **overrides})), seed)


def load_cases(name):
    """{case: {key: array}} from tests/fixtures/tf457/<name>/cases.npz."""
    cases: dict[str, dict[str, np.ndarray]] = {}
    with np.load(FIXTURES / name / "cases.npz") as data:
        for key in data.files:
            case, rest = key.split(".", 1)
            cases.setdefault(case, {})[rest] = data[key]
    return cases


def case_inputs(case):
    return {k: tf.constant(v) for k, v in case.items() if k in INPUT_NAMES}


def case_past(case, n_layer):
    if "past.0.key" not in case:
        return None
    return tuple((case[f"past.{i}.key"], case[f"past.{i}.value"]) for i in range(n_layer))
