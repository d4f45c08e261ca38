"""Run every bench/bench_*.py in its own process, one after the other (they share 2 cores: never in parallel)."""

import pathlib
import subprocess
import sys

# Scripts run more than once, with these arguments: TF decoding at one thread (the setting) and at TF's
# default on this machine, two threads, where XLA's kernels behave differently (see gpt2_tf.modeling.Conv1D).
RUNS = {"bench_tf_generate.py": [["--threads", "1"], ["--threads", "2"]],
        "bench_tf_products.py": [["--threads", "1"], ["--threads", "2"]]}

here = pathlib.Path(__file__).parent
failed = []
# llama.cpp's column (bench_pt_generate.py) needs its one-off build: say whether it is there and how to make it.
subprocess.run([sys.executable, str(here / "llama_cpp.py"), "status"])
for script in sorted(here.glob("bench_*.py")):
    for args in RUNS.get(script.name, [[]]):
        print(f"\n=== {' '.join([script.name, *args])} ===", flush=True)
        if subprocess.run([sys.executable, str(script), *args]).returncode != 0:
            failed.append(" ".join([script.name, *args]))
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
