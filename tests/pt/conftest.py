"""Fixtures for tests/pt (helpers live in pt_utils.py)."""

import os

import pytest
from pt_utils import hf_model, save_and_load


@pytest.fixture
def pair(tmp_path):
    """pair(class_name, **config) -> (transformers model, our model loaded from its saved checkpoint)."""
    def make(class_name="GPT2LMHeadModel", seed=0, **overrides):
        hf = hf_model(class_name, seed, **overrides)
        return hf, save_and_load(hf, tmp_path / f"{class_name}-{seed}-{len(os.listdir(tmp_path))}")
    return make
