"""Built-in cell ``gru``: ``torch.nn.GRU``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from __future__ import annotations

from torch import nn

from harness.hookspecs import hookimpl
from plugins.torch_steps import GRUStep


def build(input_size: int, hidden_size: int) -> nn.Module:
    return nn.GRU(input_size, hidden_size)


@hookimpl
def register_cells(register):
    register("gru", build, backend="torch", summary="torch.nn.GRU (cuDNN on GPU)", unroll=GRUStep)
