"""Built-in cell ``gru``: ``torch.nn.GRU``, one layer, time-major (fused cuDNN / oneDNN kernel)."""

from torch import nn

from plugins.torch_steps import GRUStep, fused_cell

build, register_cells = fused_cell("gru", nn.GRU, GRUStep, summary="torch.nn.GRU (cuDNN on GPU)")
