"""Built-in cell ``torch-rnn``: ``torch.nn.RNN``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from torch import nn

from plugins.torch_steps import RNNStep, fused_cell

build, register_cells = fused_cell("torch-rnn", nn.RNN, RNNStep, summary="torch.nn.RNN, tanh (cuDNN on GPU)",
                                   nonlinearity="tanh")
