"""The weight products of a gpt2_pt LM-head model alone, nothing around them: the shared floor that
bench_pt_forward.py and bench_pt_generate.py time beside the models (torch's own GEMMs, or the kernel
gpt2_pt.kernels chose for decoding)."""

from __future__ import annotations

import torch


def weight_products(model, rows: int, *, bias: bool = True):
    """A no-argument callable that runs, on `rows` random rows, every Conv1D's x @ W (+ b with `bias`) in the
    model's order, then the LM head, and returns the logits."""
    from gpt2_pt.modeling import Conv1D

    layers = [m for m in model.modules() if isinstance(m, Conv1D)]
    head = model.lm_head.weight
    x = {n: torch.randn(rows, n) for n in {m.weight.shape[0] for m in layers} | {head.shape[1]}}

    def run():
        for m in layers:
            if bias:
                torch.addmm(m.bias, x[m.weight.shape[0]], m.weight)
            else:
                torch.mm(x[m.weight.shape[0]], m.weight)
        return torch.nn.functional.linear(x[head.shape[1]], head)
    return run


def decoding_products(model, rows: int):
    """A no-argument callable that runs, on `rows` random rows, every Conv1D's product (with its bias), then the LM
    head, through gpt2_pt.kernels.linear: inside `kernels.decoding(model, rows)` that is the kernel and thread
    arrangement a decoding step runs, so its time is the floor of that step."""
    from gpt2_pt import kernels
    from gpt2_pt.modeling import Conv1D

    pairs = [(m.weight.t(), m.bias) for m in model.modules() if isinstance(m, Conv1D)] + [(model.lm_head.weight, None)]
    x = {w.size(1): torch.randn(rows, w.size(1)) for w, _ in pairs}

    def run():
        for w, b in pairs:
            y = kernels.linear(x[w.size(1)], w, b)
        return y
    return run
