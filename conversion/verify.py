"""--verify: run SRC and DST through every installed backend on a fixed input and compare the outputs.

The reference is SRC's tensors as our reader produced them, cast to DST's dtype and back to float32 (so a
float16 DST is compared with what float16 can hold, and equal weights give a zero difference). Backends with a
state_dict API (transformers, gpt2_pt) get those tensors through `load_state_dict` under the transformers names,
which checks our name tables against transformers' own; the others read a float32 safetensors copy. DST is always
read by the backend's own `from_pretrained`. Each backend's DST output is compared with its SRC output and with
the first backend's SRC output (cross-backend).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from gpt2_core import checkpoint, layouts
from gpt2_core.dtypes import cast
from gpt2_core.parity import PARITY_RTOL  # max |a - b| <= PARITY_RTOL * max |reference|

logger = logging.getLogger(__name__)

_OUTPUT_FIELDS = ("logits", "start_logits", "last_hidden_state")


class VerificationError(ValueError):
    def __init__(self, message: str, report: list["Comparison"]):
        super().__init__(message)
        self.report = report


@dataclass
class Comparison:
    reference: str       # "transformers:SRC"
    candidate: str       # "gpt2_pt:DST"
    max_abs_diff: float
    scale: float         # max |reference|

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_RTOL * max(self.scale, 1e-6)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"FAIL (> {PARITY_RTOL:g} x {self.scale:.3g})"
        return f"{self.candidate:>18} vs {self.reference:<18} max |diff| {self.max_abs_diff:.3e}  {verdict}"


# ---------------------------------------------------------------------------------------------------------------
# Backends: load a model from canonical tensors or from a directory, run it on int ids, return numpy outputs.
class _TorchBackend:
    formats = ("safetensors", "pytorch", "tf")

    def __init__(self, name: str, module):
        self.name, self.module = name, module
        import torch

        self.torch = torch

    def model_class(self, head: str):
        return getattr(self.module, layouts.MODEL_CLASSES[head])

    def from_state(self, config, head: str, state: dict[str, np.ndarray]):
        model = self.model_class(head)(self._config(config))
        prefix = "transformer." if head == "base" else ""  # GPT2Model's own parameter names lack it
        tensors = {name[len(prefix):]: self.torch.from_numpy(np.array(array)) for name, array in state.items()}
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [n for n in missing if n != "lm_head.weight"]  # tied to wte
        if missing or unexpected:
            raise VerificationError(f"{self.name} does not take SRC's tensors: missing {missing}, unexpected "
                                    f"{unexpected}", [])
        return model.eval()

    def from_pretrained(self, directory: str, head: str):
        # float32 whatever the file holds: the reference is float32 too (holding the values of DST's dtype).
        return self.model_class(head).from_pretrained(directory, dtype=self.torch.float32).eval()

    def run(self, model, ids: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            out = model(input_ids=self.torch.from_numpy(ids.astype(np.int64)))
        return _first_output(out).float().numpy()

    def _config(self, config):
        return config if self.name == "gpt2_pt" else self.module.GPT2Config.from_dict(config.to_dict())


class _TransformersBackend(_TorchBackend):
    formats = ("safetensors", "pytorch")  # transformers 5 dropped TensorFlow, and with it tf_model.h5

    def from_state(self, config, head, state):
        with self._quiet():
            return super().from_state(config, head, state)

    def from_pretrained(self, directory, head):
        with self._quiet():
            return super().from_pretrained(directory, head)

    @contextlib.contextmanager
    def _quiet(self):
        """No loading bars or config notes from transformers (its settings are restored after)."""
        logging_utils = self.module.utils.logging
        verbosity, bars = logging_utils.get_verbosity(), logging_utils.is_progress_bar_enabled()
        logging_utils.set_verbosity_error()
        logging_utils.disable_progress_bar()
        try:
            yield
        finally:
            logging_utils.set_verbosity(verbosity)
            if bars:
                logging_utils.enable_progress_bar()


class _TFBackend:
    name = "gpt2_tf"
    formats = ("safetensors", "pytorch", "tf")

    def __init__(self, module):
        self.module = module

    def from_pretrained(self, directory: str, head: str):
        return getattr(self.module, "TF" + layouts.MODEL_CLASSES[head]).from_pretrained(directory, dtype="float32")

    def run(self, model, ids: np.ndarray) -> np.ndarray:
        return np.asarray(_first_output(model(input_ids=ids.astype(np.int32), training=False)), dtype=np.float32)


def _first_output(out):
    for name in _OUTPUT_FIELDS:
        value = getattr(out, name, None)
        if value is not None:
            return value
    raise VerificationError(f"the model output has none of {', '.join(_OUTPUT_FIELDS)}", [])


def available_backends(head: str) -> list:
    """The installed backends that implement `head`'s class, transformers first (the reference)."""
    found = []
    if importlib.util.find_spec("torch") is not None:
        if importlib.util.find_spec("transformers") is not None:
            found.append(_TransformersBackend("transformers", importlib.import_module("transformers")))
        found.append(("gpt2_pt", layouts.MODEL_CLASSES[head]))
    if importlib.util.find_spec("tensorflow") is not None:
        found.append(("gpt2_tf", "TF" + layouts.MODEL_CLASSES[head]))
    backends = []
    for item in found:
        if not isinstance(item, tuple):
            backends.append(item)
            continue
        name, cls = item
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            logger.info("--verify skips %s: %s", name, e)
            continue
        if not hasattr(module, cls):  # a backend without this model class yet
            logger.info("--verify skips %s: it has no %s", name, cls)
            continue
        backends.append(_TorchBackend(name, module) if name == "gpt2_pt" else _TFBackend(module))
    return backends


# ---------------------------------------------------------------------------------------------------------------
def fixed_input(config, head: str) -> np.ndarray:
    rng = np.random.default_rng(1234)
    length = min(config.n_positions, 12)
    shape = (1, 2, length) if head == "double_heads" else (2, length)
    if head == "seq_cls" and config.pad_token_id is None:
        shape = (1, length)  # transformers needs a pad token to classify a batch of several rows
    return rng.integers(0, config.vocab_size, size=shape)


def verify_conversion(source, dst_dir: str, *, format: str, dtype: str | None) -> list[Comparison]:
    """Compare DST (a finished output directory) with `source`; raises VerificationError above tolerance."""
    backends = available_backends(source.head)
    if not backends:
        raise VerificationError("--verify found no backend to run the models: install torch (with transformers) "
                                "or tensorflow", [])
    state = {name: cast(cast(array, dtype), "float32") for name, array in source.state.items()}
    ids = fixed_input(source.config, source.head)
    report, outputs = [], {}
    scratch = None
    try:
        for backend in backends:
            if hasattr(backend, "from_state"):
                src_model = backend.from_state(source.config, source.head, state)
            else:
                if scratch is None:
                    scratch = _reference_dir(source, state, os.path.dirname(os.path.abspath(dst_dir)))
                src_model = backend.from_pretrained(scratch, source.head)
            outputs[backend.name, "SRC"] = backend.run(src_model, ids)
            del src_model
            if format not in backend.formats:
                logger.info("--verify: %s cannot read --format %s; only SRC runs there", backend.name, format)
                continue
            outputs[backend.name, "DST"] = backend.run(backend.from_pretrained(dst_dir, source.head), ids)
    finally:
        if scratch is not None:
            shutil.rmtree(os.path.dirname(scratch), ignore_errors=True)
    first = backends[0].name
    for backend in backends:
        if (backend.name, "DST") not in outputs:
            continue
        pairs = [((backend.name, "SRC"), (backend.name, "DST"))]
        if backend.name != first:
            pairs += [((first, "SRC"), (backend.name, "SRC")), ((first, "SRC"), (backend.name, "DST"))]
        for ref, cand in pairs:
            a, b = outputs[ref], outputs[cand]
            report.append(Comparison(":".join(ref), ":".join(cand), float(np.max(np.abs(a - b))),
                                     float(np.max(np.abs(a)))))
    if not report:
        raise VerificationError(f"--verify: no installed backend reads --format {format}", report)
    failed = [c for c in report if not c.ok]
    if failed:
        worst = max(failed, key=lambda c: c.max_abs_diff / max(c.scale, 1e-6))
        raise VerificationError(f"{dst_dir}: {worst.candidate} differs from {worst.reference} by "
                                f"{worst.max_abs_diff:.3e} (tolerance {PARITY_RTOL:g} relative)", report)
    return report


def _reference_dir(source, state, parent: str) -> str:
    """SRC's (cast) tensors as a float32 safetensors model directory, for backends without load_state_dict."""
    directory = os.path.join(tempfile.mkdtemp(prefix=".gpt2-verify.", dir=parent), "src")
    os.makedirs(directory)
    config = source.config
    config.save_pretrained(directory)
    tensors = layouts.from_canonical(state, "hf_pt", model_class=source.head)
    checkpoint.write_safetensors(tensors, os.path.join(directory, checkpoint.SAFE_WEIGHTS_NAME))
    return directory
