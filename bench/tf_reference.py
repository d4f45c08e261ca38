"""What the TF benchmarks share: the transformers-TF 4.57 reference venv, threads, clocks.

transformers 4.57 is the last release with TF models and needs tf-keras, so it runs in its own venv as a worker
subprocess of the benchmark, which imports this module there too (standard library only at import).
"""

from __future__ import annotations

import time

REFERENCE_PYTHON = "/tmp/tf457/bin/python"
SETUP = ("  python3 -m venv /tmp/tf457\n"
         "  /tmp/tf457/bin/pip install transformers==4.57.6 tf-keras tensorflow-cpu==2.21.0 h5py numpy\n")

# "cpu" counts this process's CPU time, which a busy shared machine disturbs less than wall time (with one TF
# thread the two agree on a quiet machine)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def set_threads(n: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def absent_message() -> str:
    return f"reference venv absent ({REFERENCE_PYTHON}); create it with:\n{SETUP}"
