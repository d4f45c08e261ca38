"""The weight products of a gpt2_pt LM-head model alone, nothing around them: the shared floor that
bench_pt_forward.py and bench_pt_generate.py time beside the models."""

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
