"""What TensorFlow's one-row products reach: the 49 weight products of a gpt2-small decoding step at batch 1 (every
Conv1D's x @ W + b, then the LM head), alone, on `--threads` threads, on each path TF offers, beside numpy's BLAS on
the same arrays (the kernel gpt2_pt.kernels picks on the AVX2 AMD hosts). No target: the figures say how far the TF
backend's decoding could go with its products on each path. Paths are timed alternately, round by round.

    python bench/bench_tf_products.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tf_reference import set_threads  # noqa: E402  (bench/)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    import threadpoolctl

    set_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads, user_api="blas")
    rng = np.random.default_rng(0)
    n, vocab, layers = 768, 50257, 12
    shapes = [(n, 3 * n), (n, n), (n, 4 * n), (4 * n, n)] * layers
    weights = [rng.standard_normal(s, dtype=np.float32) * 0.02 for s in shapes]
    biases = [np.zeros(s[1], np.float32) for s in shapes]
    head = rng.standard_normal((vocab, n), dtype=np.float32) * 0.02  # (vocab, n_embd), as wte
    tf_weights = [tf.constant(w) for w in weights]
    tf_biases = [tf.constant(b) for b in biases]
    tf_head = tf.constant(head)
    x = {k: rng.standard_normal((1, k), dtype=np.float32) for k in (n, 4 * n)}
    tf_x = {k: tf.constant(v) for k, v in x.items()}

    def tf_products(x):
        for w, b in zip(tf_weights, tf_biases):
            tf.nn.bias_add(tf.matmul(x[w.shape[0]], w), b)
        return tf.matmul(x[n], tf_head, transpose_b=True)

    def tf_matvec(x):
        for w, b in zip(tf_weights, tf_biases):
            tf.linalg.matvec(w, x[w.shape[0]][0], transpose_a=True) + b
        return tf.linalg.matvec(tf_head, x[n][0])

    def numpy_products():
        for w, b in zip(weights, biases):
            np.matmul(w.T, x[w.shape[0]][0]) + b
        return head @ x[n][0]

    function, xla = tf.function(tf_products), tf.function(tf_products, jit_compile=True)
    paths = {
        "eager tf.matmul": lambda: tf_products(tf_x).numpy(),
        "eager tf.linalg.matvec": lambda: tf_matvec(tf_x).numpy(),
        "tf.function (Eigen)": lambda: function(tf_x).numpy(),
        "tf.function(jit_compile=True) (XLA)": lambda: xla(tf_x).numpy(),
        "numpy's BLAS": numpy_products,
    }
    for run in paths.values():
        run()  # trace / compile outside the timing
    times = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    size = 4 * (sum(w.size for w in weights) + head.size)
    print(f"TF {tf.__version__}, {args.threads} thread(s): the 49 one-row products of a gpt2-small step, alone")
    for name, t in times.items():
        seconds = statistics.median(t)
        print(f"  {name:38s} {seconds * 1e3:7.1f} ms  {size / seconds / 1e9:5.1f} GB/s  "
              f"= {1 / seconds:6.1f} tok/s at most")


if __name__ == "__main__":
    main()
