"""The served model: loads the model and tokenizer in a background thread, owns the scheduler, knows its health.

The server starts answering at once (`/health` says 503 while loading); requests that need the model get the same
503 until `state == "ready"`. Only public APIs are used: `from_pretrained`, the backends' slot runner factories
(`gpt2_pt.slots.SlotRunner`, `gpt2_tf.slots.TFSlotRunner`) and the core scheduler.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .errors import APIError

logger = logging.getLogger(__name__)

BACKENDS = ("pt", "tf")
DTYPES = ("float32", "float16", "bfloat16")


class Engine:
    """`Engine(model)`, then `start()` (background load) or `load()` (here). `submit` hands work to the scheduler.

        >>> engine = Engine("gpt2", backend="pt", max_concurrency=8)      # doctest: +SKIP
        >>> engine.load(); engine.state                                   # doctest: +SKIP
        'ready'
    """

    def __init__(self, model: str, *, backend: str = "pt", dtype: str = "float32", int8: bool = False,
                 pack_weights: bool = False, max_concurrency: int = 8, max_queue: int = 64, served_model_name: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"`backend` should be one of {BACKENDS}. Received: backend={backend!r}")
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` should be one of {DTYPES}. Received: dtype={dtype!r}")
        if int8 and (backend != "pt" or dtype != "float32"):
            raise ValueError(f"int8 quantises float32 weights of the PyTorch backend. Received: backend={backend!r}, "
                             f"dtype={dtype!r}")
        if pack_weights and (backend != "pt" or dtype != "float32" or int8):
            raise ValueError(f"pack_weights prepacks float32 weights of the PyTorch backend. Received: "
                             f"backend={backend!r}, dtype={dtype!r}, int8={int8!r}")
        for name, value, minimum in (("max_concurrency", max_concurrency, 1), ("max_queue", max_queue, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` should be an integer >= {minimum}. Received: {name}={value!r}")
        self.model_path, self.backend, self.dtype, self.int8 = model, backend, dtype, int8
        self.pack_weights = pack_weights
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.model_name = served_model_name or model
        self.created = int(time.time())
        self.state = "loading"          # -> "ready" | "failed"; "stopping" after shutdown()
        self.error: str | None = None
        self.ready = threading.Event()  # set when loading ends, either way
        self.model = self.tokenizer = self.scheduler = None
        self.n_positions = self.vocab_size = 0
        self.stop_token_ids: tuple[int, ...] = ()
        self._lock = threading.Lock()

    # -- loading
    def start(self, on_done=None) -> threading.Thread:
        """Load in a daemon thread; `on_done(engine)` is called from it when loading ends (ready or failed)."""
        def run():
            self.load(raise_errors=False)
            if on_done is not None:
                on_done(self)
        thread = threading.Thread(target=run, name="gpt2-serve-load", daemon=True)
        thread.start()
        return thread

    def load(self, raise_errors: bool = True) -> None:
        from tqdm.auto import tqdm

        started = time.perf_counter()
        logger.info("loading %s (backend %s, %s%s)", self.model_path, self.backend, self.dtype,
                    ", int8" if self.int8 else "")
        try:
            with tqdm(total=3, desc=f"Loading {self.model_path}", unit="step", leave=False, disable=None) as bar:
                model = self._load_model()
                bar.update(1)
                tokenizer = _load_tokenizer(self.model_path)
                bar.update(1)
                scheduler = self._start_scheduler(model)
                bar.update(1)
        except Exception as e:  # reported through /health and the CLI, never as a traceback to clients
            with self._lock:
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            logger.error("could not load %s: %s", self.model_path, self.error)
            self.ready.set()
            if raise_errors:
                raise
            return
        with self._lock:
            stopping = self.state == "stopping"
            self.model, self.tokenizer, self.scheduler = model, tokenizer, scheduler
            config = model.config
            self.n_positions, self.vocab_size = config.n_positions, config.vocab_size
            own = getattr(model, "generation_config", None) or config
            eos = getattr(own, "eos_token_id", None)
            self.stop_token_ids = tuple(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
            if not stopping:
                self.state = "ready"
        if stopping:  # shutdown() came while loading
            scheduler.shutdown()
        logger.info("%s ready in %.1f s: %d slots, queue of %d", self.model_name, time.perf_counter() - started,
                    self.max_concurrency, self.max_queue)
        self.ready.set()

    def _load_model(self):
        if self.backend == "pt":
            import torch

            from gpt2_pt import GPT2LMHeadModel

            model = GPT2LMHeadModel.from_pretrained(self.model_path).eval()
            if self.dtype != "float32":
                model = model.to(getattr(torch, self.dtype))
            return model
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is no server output
        from gpt2_tf import TFGPT2LMHeadModel

        kwargs = {} if self.dtype == "float32" else {"dtype": self.dtype}
        return TFGPT2LMHeadModel.from_pretrained(self.model_path, **kwargs)

    def _start_scheduler(self, model):
        from gpt2_core.scheduler import Scheduler

        if self.backend == "pt":
            from gpt2_pt.slots import SlotRunner

            runner = SlotRunner(model, self.max_concurrency, quantize="int8" if self.int8 else None,
                                pack_weights=self.pack_weights)
        else:
            from gpt2_tf.slots import TFSlotRunner

            runner = TFSlotRunner(model, self.max_concurrency)
        scheduler = Scheduler(runner, max_slots=self.max_concurrency, max_queue=self.max_queue)
        # the runner's warmup (tracing, compiling, first allocations, the kernel choice) runs on the decoding thread,
        # the one that will run every step, and before /health says ready, not in the first request's latency
        scheduler.start(wait=True)
        return scheduler

    # -- serving
    def check_ready(self) -> None:
        """Raise the 503 a request gets while the model is not (or no longer) serving."""
        if self.state == "ready":
            return
        if self.state == "loading":
            raise APIError(503, f"The model {self.model_name} is still loading; retry in a moment")
        if self.state == "failed":
            raise APIError(503, f"The model {self.model_name} failed to load: {self.error}")
        raise APIError(503, "The server is shutting down")

    def submit_all(self, items):
        """(prompt_ids, sampling, on_event) for each choice: all queued, or QueueFull (see Scheduler.submit_all)."""
        self.check_ready()
        return self.scheduler.submit_all(items)

    def shutdown(self, message: str = "server shutting down") -> None:
        """Stop serving: every live request ends with an error event carrying `message`. Thread-safe, idempotent."""
        with self._lock:
            self.state = "stopping"
            scheduler = self.scheduler
        if scheduler is not None:
            scheduler.shutdown(message)  # idempotent; returns once the decoding thread has ended


def _load_tokenizer(model_path: str):
    from gpt2_core.tokenizer import GPT2Tokenizer

    try:
        return GPT2Tokenizer.from_pretrained(model_path)
    except OSError:
        if not os.path.isdir(model_path):
            raise
        logger.info("%s has no tokenizer files: using GPT-2's own vocabulary", model_path)
        return GPT2Tokenizer.from_pretrained("gpt2")
