"""Fixtures for tests/conversion (helpers live in convert_utils.py)."""

import pytest
from convert_utils import hf_logits, random_hf_model, write_openai_release, write_tokenizer_sources


@pytest.fixture(scope="session")
def transformers():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


@pytest.fixture(scope="session")
def hf_lm(transformers, tmp_path_factory):
    """(directory saved by transformers 5 with tokenizer files, the model, its logits on IDS)."""
    model = random_hf_model(transformers)
    directory = tmp_path_factory.mktemp("hf_lm") / "model"
    model.save_pretrained(directory)
    write_tokenizer_sources(directory, openai=False)
    return directory, model, hf_logits(model)


@pytest.fixture(scope="session")
def openai_release(tmp_path_factory):
    """(release directory, its TF1 variables)."""
    directory = tmp_path_factory.mktemp("openai") / "124M"
    return directory, write_openai_release(directory)

