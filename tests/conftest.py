"""Shared fixtures. `hub_server`: a fake Hugging Face hub on 127.0.0.1 (see tests/core/hubserver.py)."""

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run, so a submission never fails on a draw nobody saw locally; developers'
# runs keep exploring new ones (and hypothesis' database keeps any failure they find).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# gpt2_pt.kernels caches its calibration per machine: the tests (and the servers and CLIs they start, which
# inherit the environment) keep theirs in a file of their own, never in the user's ~/.cache/gpt2/kernels.json.
os.environ.setdefault("GPT2_KERNEL_CACHE", str(Path(tempfile.mkdtemp(prefix="gpt2-tests-")) / "kernels.json"))

# hubserver.py lives in tests/core, pt_utils.py in tests/pt (parity reuses its tiny config and randomisation);
# make both importable from every test folder.
sys.path.insert(0, str(Path(__file__).parent / "pt"))
sys.path.insert(0, str(Path(__file__).parent / "core"))

from hubserver import HubServer  # noqa: E402


@pytest.fixture
def hub_server():
    """A started fake hub: `hub_server.add(repo_id, files)`, then `hub_server.patch(monkeypatch, cache_dir)` for
    this process or `hub_server.env(cache_dir)` for a subprocess (see hubserver.run_python)."""
    with HubServer() as server:
        yield server
