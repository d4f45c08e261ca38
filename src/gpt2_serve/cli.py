"""gpt2-serve: the web page at / and an OpenAI-compatible completions API under /v1, from one process.

    $ gpt2-serve --model ./my-checkpoint --port 8000
    $ curl localhost:8000/v1/completions -H 'Content-Type: application/json' \\
          -d '{"prompt": "Hello, I am", "max_tokens": 20, "temperature": 0}'

The server answers at once; /health says 503 until the model is loaded. Ctrl-C or SIGTERM stops it cleanly:
streams in flight end with an error chunk and [DONE], then the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import uvicorn

from gpt2_core import bundled
# one-line flag errors and flag checks, as gpt2-generate has them
from gpt2_core.cli_common import CLIError, OneLineParser, non_negative_int, positive_int, run_main

from . import store

logger = logging.getLogger("gpt2_serve")


def build_parser() -> argparse.ArgumentParser:
    from .engine import BACKENDS, DTYPES

    p = OneLineParser(prog="gpt2-serve", description="Serve GPT-2: the Write With Transformer page and an "
                                               "OpenAI-compatible /v1/completions API.")
    p.add_argument("--model", default=None,
                   help="a checkpoint directory or hub name (what from_pretrained takes); default: the bundled model")
    p.add_argument("--served-model-name", default=None, help="the name clients pass as `model` (default: --model)")
    p.add_argument("--backend", choices=BACKENDS, default="pt")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=non_negative_int, default=8000)
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on the API routes")
    key.add_argument("--api-key-file", default=None, help="read the API key from this file (first line)")
    p.add_argument("--max-concurrency", type=positive_int, default=8, help="requests decoded at once (slots)")
    p.add_argument("--max-queue", type=positive_int, default=64,
                   help="requests that may wait for a slot; more get 429")
    p.add_argument("--int8", action="store_true", help="int8 weights for the linear layers (PyTorch)")
    p.add_argument("--pack-weights", action="store_true",
                   help="batched steps (2+ requests) on a copy of the linear weights prepacked for oneDNN (PyTorch, "
                        "float32): faster steps of several rows, for the weights' memory once more")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--db", default=None, help="the documents database of the web page (default: the user's data "
                                             "directory)")
    p.add_argument("--max-body-bytes", type=positive_int, default=None, help="larger request bodies get 413")
    p.add_argument("--log-level", default="info", choices=("trace", "debug", "info", "warning", "error"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    level = 5 if args.log_level == "trace" else args.log_level.upper()  # uvicorn's TRACE level
    return run_main("gpt2-serve", _run, args, level=level)


def _model_path(args) -> str:
    if args.model is not None:
        return args.model
    path = bundled.default_model()
    print(bundled.default_model_note("gpt2-serve"), file=sys.stderr)
    return path


def _api_key(args) -> str | None:
    if args.api_key_file is None:
        return args.api_key
    try:
        with open(args.api_key_file, encoding="utf-8") as f:
            key = f.readline().strip()
    except OSError as e:
        raise CLIError(f"cannot read --api-key-file {args.api_key_file}: {e.strerror}") from e
    if not key:
        raise CLIError(f"--api-key-file {args.api_key_file} is empty")
    return key


def _db_path(args):
    return args.db if args.db is not None else store.default_db_path()


def _run(args) -> int:
    from .app import MAX_BODY_BYTES, create_app
    from .engine import Engine

    if args.int8 and args.backend != "pt":
        raise CLIError("--int8 is available with --backend pt only")
    if args.int8 and args.dtype != "float32":
        raise CLIError(f"--int8 quantises float32 weights; it cannot be combined with --dtype {args.dtype}")
    if args.pack_weights and (args.backend != "pt" or args.dtype != "float32" or args.int8):
        raise CLIError("--pack-weights prepacks float32 PyTorch weights: not with --backend tf, --dtype or --int8")
    model = _model_path(args)
    engine = Engine(model, backend=args.backend, dtype=args.dtype, int8=args.int8, pack_weights=args.pack_weights,
                    max_concurrency=args.max_concurrency, max_queue=args.max_queue,
                    served_model_name=args.served_model_name)
    app = create_app(engine, api_key=_api_key(args), db_path=_db_path(args),
                     max_body_bytes=args.max_body_bytes or MAX_BODY_BYTES)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=10, lifespan="off")
    server = _Server(config, engine)

    def loaded(engine):
        if engine.state == "failed":
            server.should_exit = True  # nothing to serve: stop, and exit 1 below
    engine.start(on_done=loaded)
    # uvicorn re-raises the signal that stopped it once it is done; a no-op handler then lets us exit 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    # a torch or TensorFlow call still running on another thread when the interpreter exits aborts the process
    engine.ready.wait(timeout=120)
    failed = engine.state == "failed"
    engine.shutdown()
    if failed:
        raise CLIError(f"could not load the model {model}: {engine.error}")
    if not server.started:
        raise CLIError(f"could not listen on {args.host}:{args.port}")
    return 0


class _Server(uvicorn.Server):
    """uvicorn's Server, plus: the first Ctrl-C/SIGTERM also ends the scheduler, so streams in flight finish
    with an error chunk at once instead of holding the shutdown until they complete."""

    def __init__(self, config, engine):
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # on a thread of its own: a signal handler may have interrupted a thread holding the scheduler's lock
        threading.Thread(target=self.engine.shutdown, name="gpt2-serve-stop", daemon=True).start()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
