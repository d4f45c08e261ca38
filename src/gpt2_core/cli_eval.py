"""gpt2-eval: perplexity of a model on a text file, with the sliding window of transformers' documented recipe
(gpt2_core.evaluation). The backend is imported only at run time.

    $ gpt2-eval --model gpt2 --data wiki.test.txt --stride 512
    $ gpt2-eval --data notes.txt --json          # the bundled model
    {"perplexity": 41.2, "nll": 3.72, "tokens": 12345, "bits_per_byte": 1.31, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .cli_common import OneLineParser, load_tokenizer, positive_int, run_main

PROG = "gpt2-eval"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Perplexity of a GPT-2 model on a text file (sliding window).")
    p.add_argument("--model", default=None, help="a checkpoint directory or hub name (default: the bundled model)")
    p.add_argument("--data", required=True, help="a UTF-8 text file, scored as one text")
    p.add_argument("--stride", type=positive_int, default=None,
                   help="tokens between window starts (default: half the window, 512 for GPT-2)")
    p.add_argument("--max-length", type=positive_int, default=None, help="window length (default: n_positions)")
    p.add_argument("--backend", choices=("pt", "tf"), default="pt")
    p.add_argument("--batch-size", type=positive_int, default=1, help="windows per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv=None) -> int:
    return run_main(PROG, _run, build_parser().parse_args(argv))


def _run(args) -> int:
    from . import bundled, data
    from .evaluation import sliding_window_perplexity

    text = data.read_text(data.expand_paths([args.data])[0])  # a missing, binary or empty file fails here, before any model loads
    model_name = args.model
    if model_name is None:
        model_name = bundled.default_model()
        print(bundled.default_model_note(PROG), file=sys.stderr)
    scorer = _TorchScorer(model_name) if args.backend == "pt" else _TFScorer(model_name)
    n_positions = scorer.n_positions
    max_length = args.max_length or n_positions
    if max_length > n_positions:
        raise ValueError(f"--max-length should be at most the model's n_positions ({n_positions}). "
                         f"Received: --max-length {max_length}")
    stride = args.stride or max(1, max_length // 2)
    if stride > max_length:
        raise ValueError(f"--stride should be at most the window length ({max_length}). Received: --stride "
                         f"{stride}")
    ids = scorer.tokenizer.encode(text)
    from tqdm.auto import tqdm

    from .evaluation import windows

    count = sum(1 for _ in windows(len(ids), max_length, stride)) if len(ids) >= 2 else 0
    with tqdm(total=count, desc="Scoring", unit="window", file=sys.stderr, disable=None, leave=False) as bar:
        result = sliding_window_perplexity(scorer, ids, max_length=max_length, stride=stride,
                                           batch_size=args.batch_size, n_bytes=len(text.encode("utf-8")),
                                           progress=bar.update)
    if args.json:
        print(json.dumps({"perplexity": result.perplexity, "nll": result.nll, "tokens": result.tokens,
                          "bits_per_byte": result.bits_per_byte, "windows": result.windows,
                          "max_length": max_length, "stride": stride, "model": os.fspath(model_name)}))
    else:
        print(f"tokens:        {result.tokens}")
        print(f"mean NLL:      {result.nll:.6f} nats/token")
        print(f"perplexity:    {result.perplexity:.4f}")
        print(f"bits per byte: {result.bits_per_byte:.6f}")
    return 0


class _TorchScorer:
    """ids (B, T) -> NLL of ids[:, 1:] (B, T - 1), float32 forward in PyTorch."""

    def __init__(self, model_name):
        try:
            import torch
        except ImportError as e:
            raise ImportError("the PyTorch backend needs torch, which is not installed") from e
        from gpt2_pt import GPT2LMHeadModel

        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(model_name, dtype=torch.float32).eval()
        self.n_positions = self.model.config.n_positions
        self.tokenizer = load_tokenizer(model_name)

    def __call__(self, ids):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(ids)
            logits = self.model(x).logits.float()  # (B, T, vocab)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
        return nll.numpy()


class _TFScorer:
    """The same with the Keras model (gpt2_tf's public TFGPT2LMHeadModel)."""

    def __init__(self, model_name):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow as tf

            from gpt2_tf import TFGPT2LMHeadModel
        except ImportError as e:
            raise ImportError(f"the TensorFlow backend is not available ({e})") from e
        self.tf = tf
        self.model = TFGPT2LMHeadModel.from_pretrained(model_name)
        self.n_positions = self.model.config.n_positions
        self.tokenizer = load_tokenizer(model_name)

    def __call__(self, ids):
        tf = self.tf
        logits = tf.cast(self.model(ids).logits, tf.float32)  # (B, T, vocab)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, 1:], logits=logits[:, :-1])
        return nll.numpy()


if __name__ == "__main__":
    sys.exit(main())
