"""CUDA-graph capture of a cell's forward and forward+backward (the ``graphed`` implementation).

A step cell unrolled in Python launches a handful of small kernels per time step; at small
sizes the GPU waits on the launches. Capturing the whole unrolled forward+backward once
in a CUDA graph and replaying it removes the Python and launch overhead while running the
very same kernels, so custom step cells can be compared with cuDNN on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CapturedRun:
    """Graphs over fixed input/output buffers: ``replay`` rewrites ``y`` and ``grads`` in place."""

    forward: torch.cuda.CUDAGraph
    forward_backward: torch.cuda.CUDAGraph
    x: torch.Tensor
    grad_y: torch.Tensor  # the replayed backward reads it: kept alive with the graphs
    y: torch.Tensor
    grads: tuple
    memory_bytes: int


def capture(cell: torch.nn.Module, x: torch.Tensor, grad_y: torch.Tensor, warmup: int = 3) -> CapturedRun:
    """Capture ``cell(x, None)`` (no grad) and ``cell(x, None)`` + ``autograd.grad`` into every
    parameter with the output gradient ``grad_y`` (shaped like ``y``), made once outside the
    graph as :func:`harness.speed.measure_speed` makes it for the eager implementations
    (:func:`harness.speed.last_step_output_gradient`: the loss ``y[-1].sum()``).

    Raises whatever capture raises (e.g. a cell that synchronises or allocates on the host
    mid-step); the caller records that as the reason there is no graphed time.
    """
    if x.device.type != "cuda":
        raise RuntimeError(f"CUDA graphs need a CUDA tensor, got one on {x.device.type}")
    params = [p for p in cell.parameters() if p.requires_grad]
    static_x = x.clone()
    grad_y = grad_y.clone()  # a static input, like x: the replayed backward reads it
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph, as torch.cuda.graphs requires
        for _ in range(warmup):
            y, _ = cell(static_x, None)
            torch.autograd.grad(y, params, grad_outputs=grad_y, allow_unused=True)
            with torch.no_grad():
                cell(static_x, None)
    torch.cuda.current_stream().wait_stream(side)
    graph_fb = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph_fb):
        y, _ = cell(static_x, None)
        grads = torch.autograd.grad(y, params, grad_outputs=grad_y, allow_unused=True)
    graph_f = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph_f, pool=graph_fb.pool()):
        with torch.no_grad():
            cell(static_x, None)
    torch.cuda.synchronize()
    return CapturedRun(graph_f, graph_fb, static_x, grad_y, y, grads, torch.cuda.memory_allocated() - before)
