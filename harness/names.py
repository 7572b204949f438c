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
# A cell is one function; it may register several implementations of it under names of its own
# choosing (NAME_PATTERN below). These are the names the built-in cells use, each said once.
FUSED = "fused"  # torch's own RNN/LSTM/GRU kernels (cuDNN, oneDNN)
MODULE = "module"  # a sequence-form torch module that names its implementation no further
NUMPY = "numpy"  # a NumPy cell with hand-written BPTT
UNROLLED = "unrolled"  # a step cell looped over time in Python (the step form of torch's own cells)
STEP_IMPL = "step"  # the plain recurrence, one step at a time: the reference of the modern cells
SCAN = "scan"  # a (chunked) parallel scan over time of a linear recurrence
PARALLEL = "parallel"  # a parallel or chunkwise-parallel form (mLSTM's decay-matrix form)
GRAPHED = "graphed"  # a cell's step loop captured once in a CUDA graph and replayed (speed only)
IMPLEMENTATIONS = (FUSED, MODULE, NUMPY, UNROLLED, STEP_IMPL, SCAN, PARALLEL, GRAPHED)  # the well-known names
LOOPED_IMPLEMENTATIONS = (UNROLLED, STEP_IMPL, GRAPHED)  # one Python step per time step
SPEED_ONLY_IMPLEMENTATIONS = (GRAPHED,)  # derived by the harness for timing; never trained or registered

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


# The largest integer SQLite stores (a signed 64-bit integer): every stored size and run id must fit.
SQLITE_INT_MAX = 2**63 - 1


def whole_number(text: str) -> int | None:
    """``text`` as a whole number >= 0 written in ASCII digits, else None: the one parser of counts
    typed on the command line (``int`` alone would take ``"²"``'s ``isdigit``, ``"+3"``, ``"1_0"``
    and raise on a number of more than 4300 digits, which is returned as ``SQLITE_INT_MAX + 1``,
    past every allowed value)."""
    if not re.fullmatch(r"[0-9]+", text):
        return None
    try:
        return int(text)
    except ValueError:  # past Python's digit limit
        return SQLITE_INT_MAX + 1


def split_list(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a, b,,a"`` -> ``("a", "b")``: the one parser of comma-separated command-line lists.

    Items are stripped, empty ones dropped, repeats dropped (first kept). A list or tuple is
    split item by item, so ``["a,b", "c"]`` gives ``("a", "b", "c")``.
    """
    parts = [value] if isinstance(value, str) else list(value)
    items = (item.strip() for part in parts for item in str(part).split(","))
    return tuple(dict.fromkeys(item for item in items if item))
