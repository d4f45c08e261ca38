"""llama.cpp's decode speed on the benchmark checkpoint: the column bench_pt_generate.py prints beside ours.

llama.cpp is built once, from the llama-cpp-python sdist on the package index (its vendor/llama.cpp), into
~/.cache/gpt2-bench/ (GPT2_BENCH_CACHE overrides): only the two tools we time, `llama-bench` (one stream) and
`llama-batched-bench` (N parallel sequences). A checkpoint is converted with llama.cpp's own convert_hf_to_gguf.py
(gguf-py beside it) to f32 and q8_0, once per checkpoint (cached by its hash).

    python bench/llama_cpp.py build                 # ~10 minutes on 2 idle cores, under nice
    python bench/llama_cpp.py status                # built or not, and how to build
    python bench/llama_cpp.py run CHECKPOINT_DIR    # convert, then decode tok/s at f32 and q8_0, 1 and 8 streams

bench_pt_generate.py imports `convert`, `decode_rate` and `batched_rate` to time llama.cpp between our rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

CACHE = pathlib.Path(os.environ.get("GPT2_BENCH_CACHE", pathlib.Path.home() / ".cache" / "gpt2-bench"))
TOOLS = ("llama-bench", "llama-batched-bench")
BUILD_HINT = "build it once with: python bench/llama_cpp.py build  (~10 minutes on 2 idle cores)"


def source_dir() -> pathlib.Path | None:
    found = sorted(CACHE.glob("llama_cpp_python-*/vendor/llama.cpp"))
    return found[-1] if found else None


def tool(name: str) -> pathlib.Path | None:
    """The built binary `name`, or None when llama.cpp is not built."""
    source = source_dir()
    path = None if source is None else source / "build" / "bin" / name
    return path if path is not None and path.exists() else None


def built() -> bool:
    return all(tool(name) for name in TOOLS)


def build() -> None:
    """Download the sdist (pip), unpack its vendor/llama.cpp and build the two tools, CPU only, under nice."""
    CACHE.mkdir(parents=True, exist_ok=True)
    sdists = sorted(CACHE.glob("sdist/llama_cpp_python-*.tar.gz"))
    if not sdists:
        # pip prepares the sdist's metadata, which needs its build backend: keep pip's build isolation.
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "llama-cpp-python", "-d", str(CACHE / "sdist")], check=True)
        sdists = sorted(CACHE.glob("sdist/llama_cpp_python-*.tar.gz"))
    if source_dir() is None:
        with tarfile.open(sdists[-1]) as archive:
            members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
            archive.extractall(CACHE, members=members, filter="data")
    source = source_dir()
    nice = ["nice", "-n", "15"]
    subprocess.run([*nice, "cmake", "-S", str(source), "-B", str(source / "build"), "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"], check=True)
    subprocess.run([*nice, "cmake", "--build", str(source / "build"), "--config", "Release", "-j", "2",
                    "--target", *TOOLS], check=True)


# ----------------------------------------------------------------------------------------------- converting

def convert(checkpoint: str | os.PathLike, outtype: str) -> pathlib.Path:
    """The GGUF file of a transformers GPT-2 checkpoint directory at `outtype` (f32, q8_0...), converted once by
    llama.cpp's convert_hf_to_gguf.py and cached by the checkpoint's weights and config."""
    checkpoint = pathlib.Path(checkpoint)
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with open(checkpoint / name, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    out = CACHE / "gguf" / f"{digest.hexdigest()[:16]}-{outtype}.gguf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        staged = pathlib.Path(directory)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(checkpoint / name, staged / name)
        config = json.loads((staged / "config.json").read_text())
        config.setdefault("n_ctx", config.get("n_positions", 1024))  # the converter reads it; transformers 5 drops it
        (staged / "config.json").write_text(json.dumps(config))
        if not (checkpoint / "vocab.json").exists():  # the converter reads the tokenizer too: GPT-2's own
            from gpt2_core.tokenizer import GPT2Tokenizer

            GPT2Tokenizer().save_pretrained(staged)
        else:
            for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
                if (checkpoint / name).exists():
                    shutil.copy(checkpoint / name, staged / name)
        source = source_dir()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(source / "gguf-py"), os.environ.get("PYTHONPATH", "")]))
        partial = out.with_suffix(".partial")
        subprocess.run([sys.executable, str(source / "convert_hf_to_gguf.py"), str(staged), "--outtype", outtype,
                        "--outfile", str(partial)], check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        os.replace(partial, out)
    return out


# ----------------------------------------------------------------------------------------------- timing

def decode_rate(model: pathlib.Path, *, threads: int, new_tokens: int, prompt_tokens: int = 0,
                repetitions: int = 1) -> float:
    """llama-bench's one-stream decode speed: tokens/s generating `new_tokens` tokens (its tg test) after a
    context of `prompt_tokens` (its depth: the prompt ours decodes after, so both attend over the same lengths)."""
    run = subprocess.run([str(tool("llama-bench")), "-m", str(model), "-p", "0", "-n", str(new_tokens),
                          "-d", str(prompt_tokens), "-t", str(threads), "-r", str(repetitions), "-o", "json"],
                         check=True, capture_output=True, text=True)
    return float(json.loads(run.stdout)[0]["avg_ts"])


def batched_rate(model: pathlib.Path, *, threads: int, prompt_tokens: int, new_tokens: int, streams: int) -> float:
    """llama-batched-bench's decode speed for `streams` parallel sequences: generated tokens/s of all of them
    (its S_TG), after a prompt of `prompt_tokens` each."""
    context = streams * (prompt_tokens + new_tokens) + 16
    run = subprocess.run([str(tool("llama-batched-bench")), "-m", str(model), "-c", str(context), "-b", "2048",
                          "-ub", "512", "-npp", str(prompt_tokens), "-ntg", str(new_tokens), "-npl", str(streams),
                          "-t", str(threads), "-tb", str(threads), "--output-format", "jsonl"],
                         check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    if not rows:
        raise RuntimeError(f"llama-batched-bench printed no result: {run.stdout[-500:]} {run.stderr[-500:]}")
    return float(rows[-1]["speed_tg"])


def version() -> str:
    source = source_dir()
    return "not built" if source is None else source.parent.parent.name.replace("_", "-")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "status", "run"])
    parser.add_argument("checkpoint", nargs="?", help="a transformers GPT-2 checkpoint directory (run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    if args.command == "build":
        build()
    if args.command in ("build", "status"):
        print(f"llama.cpp ({version()}): {'built' if built() else 'not built; ' + BUILD_HINT}")
        return
    if not built():
        sys.exit(f"llama.cpp is not built; {BUILD_HINT}")
    if args.checkpoint is None:
        sys.exit("run needs a checkpoint directory")
    for outtype in ("f32", "q8_0"):
        model = convert(args.checkpoint, outtype)
        one = decode_rate(model, threads=args.threads, new_tokens=args.new_tokens,
                          prompt_tokens=args.prompt_tokens, repetitions=3)
        eight = batched_rate(model, threads=args.threads, prompt_tokens=args.prompt_tokens,
                             new_tokens=args.new_tokens, streams=8)
        print(f"llama.cpp {outtype}: batch 1 {one:.1f} tok/s, 8 sequences {eight:.1f} tok/s")


if __name__ == "__main__":
    main()
