"""Names and constants that several modules share, each said once.

Only strings, tuples and one regular expression live here (no torch, no pandas), so that
any module, the CLI's option parser included, may import it at no cost.
"""

from __future__ import annotations

import re

# --- measurements -----------------------------------------------------------------------------
SPEED, ACCURACY, GRADIENTS = "speed", "accuracy", "gradients"
MEASUREMENTS = (SPEED, ACCURACY, GRADIENTS)
TRAIN_MEASUREMENTS = (ACCURACY, GRADIENTS)  # measured on one trained model per (cell, task, seed)
# Rows a train item adds beside its accuracy rows: the trained model evaluated at other lengths
# (--eval-lengths, harness.lengths) and text it generated (tasks with generate(), harness.samples).
LENGTH, SAMPLE = "length", "sample"

# The two timings of a speed row, metric name -> what a reader calls it.
TIMINGS = {"forward_s": "forward", "forward_backward_s": "forward+backward"}

# --- implementations of a cell (see harness.cells.available_impls) ------------------------------
FUSED = "fused"  # torch's own RNN/LSTM/GRU kernels (cuDNN, oneDNN)
MODULE = "module"  # any other sequence-form torch module
NUMPY = "numpy"  # a NumPy cell with hand-written BPTT
UNROLLED = "unrolled"  # a step cell looped over time in Python
GRAPHED = "graphed"  # the unrolled loop captured once in a CUDA graph and replayed
IMPLEMENTATIONS = (FUSED, MODULE, NUMPY, UNROLLED, GRAPHED)
PRIMARY_IMPLEMENTATIONS = (FUSED, MODULE, NUMPY, UNROLLED)  # what a cell may run by default
LOOPED_IMPLEMENTATIONS = (UNROLLED, GRAPHED)  # one Python step per time step

# --- cells ----------------------------------------------------------------------------------------
TORCH, NUMPY_BACKEND = "torch", "numpy"
BACKENDS = (TORCH, NUMPY_BACKEND)
SEQUENCE, STEP = "sequence", "step"
FORMS = (SEQUENCE, STEP)

# --- devices --------------------------------------------------------------------------------------
CPU, CUDA, AUTO = "cpu", "cuda", "auto"
DEVICE_CHOICES = (CPU, CUDA, AUTO)  # what --device accepts; "auto" is cpu plus cuda when present

# --- plugin names ---------------------------------------------------------------------------------
# Cell, task and reporter names: typed on the command line, so lower case and no commas.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
NAME_RULE = "names are lower-case letters, digits, '-', '_' and '.', starting with a letter or digit"
# ``rnnbench new-cell NAME`` also turns NAME into a distribution and a Python module name.
SCAFFOLD_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ALL = "all"  # selects every registered cell or task

# --- reports --------------------------------------------------------------------------------------
RUN_REPORT_FORMAT = "markdown"  # the report `rnnbench run` writes beside its tables
REPORT_FORMAT_ALIASES = {"md": "markdown"}


def split_list(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a, b,,a"`` -> ``("a", "b")``: the one parser of comma-separated command-line lists.

    Items are stripped, empty ones dropped, repeats dropped (first kept). A list or tuple is
    split item by item, so ``["a,b", "c"]`` gives ``("a", "b", "c")``.
    """
    parts = [value] if isinstance(value, str) else list(value)
    items = (item.strip() for part in parts for item in str(part).split(","))
    return tuple(dict.fromkeys(item for item in items if item))
