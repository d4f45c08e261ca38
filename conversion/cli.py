"""gpt2-convert: convert a GPT-2 checkpoint between formats (see `gpt2-convert --help`).

Exit status 0 on success; 1 with one line on stderr naming the file and the problem on failure (no traceback
unless --traceback); 130 when interrupted. DST is never left half-written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from gpt2_core.dtypes import DTYPES

from .converter import DEFAULT_SHARD_SIZE, FORMATS, convert

EPILOG = """\
SRC is a transformers model directory (model.safetensors, sharded safetensors + index, pytorch_model.bin,
tf_model.h5), a hub id or one of gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2 (from the Hugging Face
cache, else downloaded), or an OpenAI GPT-2 release directory (hparams.json, checkpoint, model.ckpt.*,
encoder.json, vocab.bpe). DST is a new directory: config.json, the weights, generation_config.json, tokenizer
files.

examples:
  gpt2-convert models/124M gpt2-openai                     # OpenAI release -> model.safetensors
  gpt2-convert gpt2 gpt2-tf --format tf --verify           # hub model -> tf_model.h5, outputs checked
  gpt2-convert gpt2-xl xl-bf16 --dtype bfloat16 --shard-size 1GB
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2-convert", description="Convert a GPT-2 checkpoint to a transformers model directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC", help="model directory, hub id, preset name or OpenAI release dir")
    parser.add_argument("dst", metavar="DST", help="output directory (must not exist unless --force)")
    parser.add_argument("--format", choices=FORMATS, default="safetensors",
                        help="weights to write: model.safetensors (default), pytorch_model.bin, tf_model.h5")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="cast floating weights (default: keep SRC's dtype)")
    parser.add_argument("--shard-size", default=DEFAULT_SHARD_SIZE,
                        help=f"largest weight file for safetensors / pytorch, e.g. 500MB, 2GB, 1GiB "
                             f"(default {DEFAULT_SHARD_SIZE}); tf_model.h5 is one file")
    parser.add_argument("--verify", action="store_true",
                        help="run SRC and DST in every installed backend and compare their outputs")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    parser.add_argument("--revision", default=None, help="hub revision of SRC")
    parser.add_argument("--local-files-only", action="store_true", help="never download SRC")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--traceback", action="store_true", help="on failure, show the full traceback")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="gpt2-convert: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # --verify may import TensorFlow: no C++ banner
    hub_kwargs = {"revision": args.revision} if args.revision else {}
    if args.local_files_only:
        hub_kwargs["local_files_only"] = True
    start = time.perf_counter()
    try:
        result = convert(args.src, args.dst, format=args.format, dtype=args.dtype, shard_size=args.shard_size,
                         force=args.force, verify=args.verify, progress=False if args.no_progress else None,
                         **hub_kwargs)
    except KeyboardInterrupt:
        print("gpt2-convert: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # every failure ends here: one line, no traceback (unless asked)
        for line in getattr(e, "report", ()):  # --verify's comparisons, when it got that far
            print(line)
        if args.traceback:
            raise
        print(f"gpt2-convert: error: {one_line(e)}", file=sys.stderr)
        return 1
    for line in result.verify_report:
        print(line)
    size = f"{result.nbytes / 1e6:,.1f} MB"
    print(f"wrote {result.directory}: {result.model_class}, {result.num_parameters:,} parameters, "
          f"{result.format} {result.dtype} ({', '.join(result.weight_files)}, {size}) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    if not isinstance(error, (OSError, ValueError)):  # an unexpected failure: say what kind
        text = f"{type(error).__name__}: {text}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
