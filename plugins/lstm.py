"""Built-in cell ``lstm``: ``torch.nn.LSTM``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from torch import nn

from plugins.torch_steps import LSTMStep, fused_cell

build, register_cells = fused_cell("lstm", nn.LSTM, LSTMStep, summary="torch.nn.LSTM (cuDNN on GPU)")
