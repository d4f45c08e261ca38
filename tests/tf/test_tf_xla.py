"""No tf.debugging assertion in what XLA compiles: XLA cannot run one and logs "Ignoring Assert operator" for each.
The same checks stay ValueErrors eagerly and assertions under plain tf.function (tests/tf/test_tf_modeling.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tf_utils import tiny_model

from gpt2_tf import modeling

PAD = 2


@pytest.fixture(scope="module")
def lm():
    return tiny_model(seed=5)


def op_types(function, *args) -> set[str]:
    """Every op type in a traced tf.function (its trace for `args`; none: its one trace), the functions it calls
    included (a while loop's body, for one)."""
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    return {node.op for node in graph_def.node} | {node.op for f in graph_def.library.function for node in f.node_def}


def test_xla_forward_makes_no_assertions_and_tf_function_does(lm):
    signature = [tf.TensorSpec((None, None), tf.int32)]
    graph = tf.function(lambda ids: lm(ids).logits, input_signature=signature)
    xla = tf.function(lambda ids: lm(ids).logits, input_signature=signature, jit_compile=True)
    assert "Assert" in op_types(graph)
    assert "Assert" not in op_types(xla)


def test_a_function_called_from_an_xla_function_counts_as_xla():
    seen = []

    def inner(x):
        seen.append(modeling.in_xla_compilation())
        return x + 1

    inner_function = tf.function(inner)
    tf.function(lambda x: inner_function(x), jit_compile=True)(tf.constant(1))
    tf.function(inner)(tf.constant(1))
    inner(tf.constant(1))
    assert seen == [True, False, False]


def test_compiled_decoding_makes_no_assertions(lm):
    ids = np.random.default_rng(0).integers(3, 98, size=(2, 5)).astype(np.int32)
    for execution in ("xla", "graph"):
        lm.generate(ids, max_new_tokens=4, pad_token_id=PAD, execution=execution)  # the whole-greedy program
        lm.generate(ids, max_new_tokens=4, pad_token_id=PAD, num_beams=2, execution=execution)  # prefill, step, reorder
    programs = lm.__dict__["_gpt2_decode_programs"]
    for (_, _, execution), program in programs.items():
        traced = [name for name, count in program.trace_counts().items() if count]
        assert traced
        for name in traced:
            asserts = "Assert" in op_types(getattr(program, name))
            # the graph programs show the check would see them: there the model's inputs are checked by assertions
            assert asserts == (execution == "graph" and name != "reorder"), (execution, name)


LOGGED_SCRIPT = """
import numpy as np
import tensorflow as tf
from tf_utils import tiny_model

lm = tiny_model()
ids = np.random.default_rng(0).integers(3, 98, size=(2, 5)).astype(np.int32)
forward = tf.function(lambda ids: lm(ids).logits, input_signature=[tf.TensorSpec((None, None), tf.int32)],
                      jit_compile=True)
forward(tf.constant(ids))
lm.generate(ids, max_new_tokens=3, pad_token_id=2)               # greedy: one compiled loop
lm.generate(ids, max_new_tokens=3, pad_token_id=2, num_beams=2)  # beams: prefill, step, reorder


@tf.function(jit_compile=True)
def control(x):  # an assertion of the test's own, which XLA does drop with the warning
    with tf.control_dependencies([tf.debugging.assert_less(x, 10, name="control_assert")]):
        return tf.identity(x)


control(tf.constant(1))
"""


def test_xla_logs_no_ignoring_assert_warning():
    # TensorFlow's C++ log goes to the process' stderr: run in a child with every log level on
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run([sys.executable, "-c", LOGGED_SCRIPT], cwd=Path(__file__).parent, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ignored = [line for line in result.stderr.splitlines() if "Ignoring Assert operator" in line]
    assert ignored, "the control assertion's warning is missing: the log capture does not work"
    assert all("control_assert" in line for line in ignored), "\n".join(ignored)


@pytest.mark.parametrize("threads, rows, barrier", [(2, 1, True), (1, 1, False), (2, 3, False)])
def test_one_row_products_stay_unfused_under_threaded_xla(monkeypatch, threads, rows, barrier):
    # XLA CPU runs a fused one-row product + bias add on one thread; the barrier keeps the product on Eigen's
    # threads. It must change nothing else: same values, and gradients still flow under XLA.
    monkeypatch.setattr(modeling, "intra_op_threads", lambda: threads)
    layer = modeling.Conv1D(8, 12, 0.5)
    layer.bias.assign(tf.range(12, dtype=tf.float32) / 7)
    x = tf.constant(np.random.default_rng(0).normal(size=(rows, 1, 8)).astype(np.float32))

    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return y, tape.gradient(loss, layer.weight)

    xla = tf.function(value_and_gradient, jit_compile=True)
    assert ("XlaOptimizationBarrier" in op_types(xla, x)) == barrier
    for got, expected in zip(xla(x), value_and_gradient(x)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
