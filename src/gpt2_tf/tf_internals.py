"""The TensorFlow internals gpt2_tf uses where TensorFlow has no public API, each behind one function with a
fallback that keeps the numbers: a TensorFlow without the internal module still runs every model, only slower
or with an XLA warning (tests/tf/test_tf_internals.py runs each fallback with the module hidden).

gpt2_tf uses no Keras private attribute: `model([[464, 2068]])` works by converting the positional inputs
itself (TFGPT2PreTrainedModel.__call__), and a compiled loss is read from the public `model.loss`.
"""

from __future__ import annotations

import importlib

import tensorflow as tf

_CONTROL_FLOW_UTIL = "tensorflow.python.ops.control_flow_util"
_XLA_OPS = "tensorflow.compiler.tf2xla.python.xla"


def _internal(name: str):
    """The internal module `name`, or None where this TensorFlow lacks it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_xla_compilation() -> bool:
    """Whether the function being traced will be compiled by XLA: tf.function(jit_compile=True), or a function
    called from one. TensorFlow marks such a trace with an XLA control-flow context on the graph or an outer
    graph. Fallback (no control_flow_util): False, so the input checks add graph assertions, which XLA drops with
    an "Ignoring Assert operator" warning; the numbers do not change."""
    if tf.executing_eagerly():
        return False
    control_flow_util = _internal(_CONTROL_FLOW_UTIL)
    if control_flow_util is None:
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def optimization_barrier(y):
    """`y` through XLA's optimization barrier, which keeps it from fusing with what follows (see
    modeling._unfused_under_threaded_xla). Fallback (no tf2xla op wrappers): `y` itself, the fused kernel, the same
    numbers a little slower."""
    xla = _internal(_XLA_OPS)
    if xla is None:
        return y
    return _barrier(xla)(y)


def _barrier(xla):
    @tf.custom_gradient
    def barrier(y):
        return xla.optimization_barrier(y)[0], lambda dy: dy  # the op has no gradient of its own

    return barrier
