"""Built-in cell ``lstm``: ``torch.nn.LSTM``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from __future__ import annotations

from torch import nn

from harness.hookspecs import hookimpl
from plugins.torch_steps import LSTMStep


def build(input_size: int, hidden_size: int) -> nn.Module:
    return nn.LSTM(input_size, hidden_size)


@hookimpl
def register_cells(register):
    register("lstm", build, backend="torch", summary="torch.nn.LSTM (cuDNN on GPU)", unroll=LSTMStep)
