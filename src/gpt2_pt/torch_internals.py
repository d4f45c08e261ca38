"""The torch operators gpt2_pt uses that torch keeps outside its public API (oneDNN's prepacked linear, fbgemm's
dynamic int8 linear), each behind one function with a fallback that keeps the numbers: a torch built without them
still decodes, on the model's own weights or on dequantized int8 weights (tests/pt/test_torch_internals.py runs
each fallback with the operators hidden).

The operator overloads are returned themselves, to be looked up once: decoding calls them ~50 times a token, and an
operator packet's __call__ first scans its arguments for traced script objects (~7 us a call).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class OneDNNLinear(NamedTuple):
    reorder: object  # (weight (out, in), rows) -> the weight in oneDNN's blocked layout for `rows` rows
    linear: object  # (x, packed, bias, "none", [], "") -> x @ W.T + b


class Int8Linear(NamedTuple):
    prepack: object  # (qint8 weight (out, in), fp32 bias or None) -> fbgemm's packed weight
    linear: object  # (x, packed, reduce_range) -> x @ W.T + b, x quantised per call


def onednn_linear() -> OneDNNLinear | None:
    """oneDNN's weight prepacking and the linear that reads it, or None (no oneDNN in this torch build, or the
    private operators are gone): gpt2_pt then decodes on the model's own weights, the same numbers."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if mkldnn is None or not torch.backends.mkldnn.is_available():
        return None
    reorder = getattr(mkldnn, "_reorder_linear_weight", None)
    linear = getattr(getattr(mkldnn, "_linear_pointwise", None), "default", None)
    return None if reorder is None or linear is None else OneDNNLinear(reorder, linear)


def int8_linear() -> Int8Linear | None:
    """fbgemm's int8 weight packing and dynamic quantized linear, or None (a torch without the quantized
    operators): gpt2_pt's Int8Linear then multiplies by the dequantized int8 weights in fp32."""
    quantized = getattr(torch.ops, "quantized", None)
    if quantized is None:
        return None
    prepack = getattr(quantized, "linear_prepack", None)
    linear = getattr(getattr(quantized, "linear_dynamic", None), "default", None)
    return None if prepack is None or linear is None else Int8Linear(prepack, linear)
