"""gpt2-generate: text from a GPT-2 checkpoint on the command line (flags in the spirit of transformers'
run_generation.py). The backend is imported only here and only at run time.

    $ gpt2-generate --model gpt2 --prompt "Hello, I'm a language model," --length 40 --seed 0
    $ echo "Once upon a time" | gpt2-generate --model ./my-checkpoint --greedy --stream
    $ gpt2-generate --prompt "The kernel"        # no --model: the small bundled model (gpt2_core.bundled)
"""

from __future__ import annotations

import argparse
import os
import sys

from .cli_common import CLIError, OneLineParser, load_tokenizer, non_negative_int, positive_int, run_main

BACKENDS = ("pt", "tf")
DTYPES = ("float32", "float16", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="gpt2-generate", description="Generate text with GPT-2.")
    p.add_argument("--model", default=None,
                   help="a checkpoint directory or a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2); "
                        "default: the small model bundled with the package")
    p.add_argument("--backend", choices=BACKENDS, default="pt")
    p.add_argument("--prompt", default=None, help="the prompt; read from stdin (or asked for) when omitted")
    p.add_argument("--length", type=positive_int, default=20, help="new tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--k", type=non_negative_int, default=0, help="top-k (0: off)")
    p.add_argument("--p", type=float, default=0.9, help="top-p (nucleus) mass")
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--num-return-sequences", type=positive_int, default=1)
    p.add_argument("--num-beams", type=positive_int, default=1)
    p.add_argument("--greedy", action="store_true", help="no sampling (greedy, or plain beam search)")
    p.add_argument("--stop-token", default=None, help="cut each text at this string")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--stream", action="store_true", help="print text as it is generated (one sequence only)")
    p.add_argument("--int8", action="store_true", help="int8 weights for the linear layers (PyTorch)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    return p


def main(argv=None) -> int:
    return run_main("gpt2-generate", _run, build_parser().parse_args(argv))


def _run(args) -> int:
    from .generation import GenerationConfig

    if args.stream and (args.num_return_sequences > 1 or args.num_beams > 1):
        raise CLIError("--stream shows one sampled or greedy sequence: use it without --num-beams / "
                       "--num-return-sequences")
    if args.int8 and args.backend != "pt":
        raise CLIError("--int8 is available with --backend pt only")
    if args.int8 and args.dtype != "float32":
        raise CLIError(f"--int8 quantises float32 weights; it cannot be combined with --dtype {args.dtype}")
    config = GenerationConfig(
        max_new_tokens=args.length, do_sample=not args.greedy, temperature=args.temperature, top_k=args.k,
        top_p=args.p, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
        num_return_sequences=args.num_return_sequences)  # flag values are checked here, before loading anything
    prompt = _read_prompt(args.prompt)
    if args.model is None:
        from . import bundled

        args.model = bundled.default_model()
        print(bundled.default_model_note("gpt2-generate"), file=sys.stderr)
    backend = _load_backend(args.backend)
    model, tokenizer = backend.load(args.model, args.dtype)
    config = _with_model_tokens(model, config)

    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:
        if config.bos_token_id is None:
            raise CLIError("the prompt is empty and the model has no bos_token_id to start from")
        ids = [config.bos_token_id]
    streamer = None
    if args.stream:
        from .streamers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=False)
    backend.seed(args.seed)
    sequences = backend.generate(model, ids, config, streamer=streamer, quantize="int8" if args.int8 else None)
    if args.stream:
        return 0
    for i, seq in enumerate(sequences):
        text = tokenizer.decode(seq, skip_special_tokens=True)
        if args.stop_token:
            cut = text.find(args.stop_token, len(prompt))
            text = text if cut < 0 else text[:cut]
        print(f"=== GENERATED SEQUENCE {i + 1} ===")
        print(text)
    return 0


def _read_prompt(prompt):
    if prompt is not None:
        return prompt
    if not sys.stdin.isatty():
        return sys.stdin.read().rstrip("\n")
    try:
        return input("Model prompt >>> ")
    except EOFError:
        return ""


def _with_model_tokens(model, config):
    own = getattr(model, "generation_config", None)
    tokens = {name: getattr(own if own is not None else model.config, name, None)
              for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return config.copy(**{k: v for k, v in tokens.items() if v is not None})


def _load_backend(name):
    if name == "pt":
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise CLIError("the PyTorch backend needs torch, which is not installed") from e
        return _TorchBackend()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is no user output
    try:
        import gpt2_tf.generation  # noqa: F401
        from gpt2_tf.modeling import TFGPT2LMHeadModel  # noqa: F401
    except ImportError as e:
        raise CLIError(f"the TensorFlow backend is not available ({e})") from e
    return _TFBackend()


def _progress(model_name):
    from tqdm.auto import tqdm

    return tqdm(total=2, desc=f"Loading {model_name}", unit="step", file=sys.stderr, leave=False,
                disable=None)  # disable=None: off when stderr is not a terminal


class _TorchBackend:
    def load(self, model_name, dtype):
        import torch

        from gpt2_pt.modeling import GPT2LMHeadModel

        with _progress(model_name) as bar:
            model = GPT2LMHeadModel.from_pretrained(model_name).eval()
            if dtype != "float32":
                model = model.to(getattr(torch, dtype))
            bar.update(1)
            tokenizer = load_tokenizer(model_name)
            bar.update(1)
        return model, tokenizer

    def seed(self, seed):
        import torch

        torch.manual_seed(seed)

    def generate(self, model, ids, config, *, streamer, quantize):
        import torch

        out = model.generate(torch.tensor([ids]), generation_config=config, streamer=streamer, quantize=quantize)
        return out.tolist()


class _TFBackend:
    def load(self, model_name, dtype):
        from gpt2_tf.modeling import TFGPT2LMHeadModel

        with _progress(model_name) as bar:
            kwargs = {} if dtype == "float32" else {"dtype": dtype}
            model = TFGPT2LMHeadModel.from_pretrained(model_name, **kwargs)
            bar.update(1)
            tokenizer = load_tokenizer(model_name)
            bar.update(1)
        return model, tokenizer

    def seed(self, seed):
        import keras

        keras.utils.set_random_seed(seed)

    def generate(self, model, ids, config, *, streamer, quantize):
        import numpy as np

        out = model.generate(np.asarray([ids]), generation_config=config, streamer=streamer)
        return np.asarray(out).tolist()


if __name__ == "__main__":
    sys.exit(main())
