"""Built-in cell ``torch-rnn``: ``torch.nn.RNN``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from __future__ import annotations

from torch import nn

from harness.hookspecs import hookimpl
from plugins.torch_steps import RNNStep


def build(input_size: int, hidden_size: int) -> nn.Module:
    return nn.RNN(input_size, hidden_size, nonlinearity="tanh")


@hookimpl
def register_cells(register):
    register("torch-rnn", build, backend="torch", summary="torch.nn.RNN, tanh (cuDNN on GPU)", unroll=RNNStep)
