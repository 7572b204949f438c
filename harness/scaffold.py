"""``rnnbench new-cell NAME``: write a cell plugin package that works after ``pip install -e .``.

The package holds a pyproject (setuptools, one entry point in the ``rnnbench`` group), the
cell module (a working cell to replace: a tanh RNN as a step-form torch module or as a NumPy
cell with its hand-written backward; or, with ``--with-scan``, a gated linear recurrence with
two implementations, a parallel scan and the plain step it is checked against), a README and
a test that runs :mod:`harness.testing`'s conformance checks (and, with a scan,
``assert_equivalent``) on the installed cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from harness.errors import UsageError
from harness.names import BACKENDS, SCAFFOLD_NAME_PATTERN, TORCH
from harness.preflight import check_out_dir


@dataclass(frozen=True)
class Scaffold:
    """What a scaffold is called: the cell ``name``, its ``distribution`` and ``module``."""

    name: str
    backend: str
    scan: bool = False  # a scan implementation beside the step form (torch only)

    @property
    def distribution(self) -> str:
        return f"rnnbench-{self.name}"

    @property
    def module(self) -> str:
        return "rnnbench_" + self.name.replace("-", "_")

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-")) + "Cell"

    def files(self) -> dict[str, str]:
        """Relative path -> text of every file of the package."""
        values = dict(
            name=self.name, distribution=self.distribution, module=self.module, class_name=self.class_name,
            backend=self.backend, test_name=self.module.removeprefix("rnnbench_"),
            what="a gated linear recurrence with a scan and a step form" if self.scan else "a working tanh RNN",
        )
        cell = _SCAN_CELL if self.scan else _TORCH_CELL if self.backend == TORCH else _NUMPY_CELL
        return {
            "pyproject.toml": Template(_PYPROJECT).substitute(values),
            "README.md": Template(_README).substitute(values),
            f"{self.module}.py": Template(cell).substitute(values),
            f"tests/test_{self.module}.py": Template(_TEST + (_SCAN_TEST if self.scan else "")).substitute(values),
        }


def validate_name(name: str) -> str:
    if not SCAFFOLD_NAME_PATTERN.match(name):
        raise UsageError(f"invalid cell name {name!r}: use lower-case letters, digits and single hyphens, "
                         "starting with a letter (e.g. mycell or leaky-rnn)")
    return name


def write_scaffold(name: str, backend: str = TORCH, parent: str | Path = ".", *, scan: bool = False) -> Path:
    """Write the package into ``parent/rnnbench-NAME/`` and return that folder. ``scan``: the cell
    has a scan implementation beside its step form (torch backend).

    Raises :class:`UsageError` for an invalid name or backend, when the folder exists and is
    not empty (nothing is overwritten), or when it cannot be created or written.
    """
    validate_name(name)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if scan and backend != TORCH:
        raise UsageError(f"--with-scan writes a torch cell (its scan differentiates through autograd); "
                         f"it does not go with --backend {backend}")
    scaffold = Scaffold(name, backend, scan)
    check_out_dir(parent, "--dir", purpose="the cell package")
    root = Path(parent) / scaffold.distribution
    try:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(f"{str(root)!r} already exists and is not empty; choose another --dir or remove it")
        for relative, text in scaffold.files().items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as exc:  # e.g. a full disk after the folder was found writable
        raise UsageError(f"cannot write the cell package into {str(root)!r} ({exc.strerror or exc}); "
                         "give a --dir you can write to") from None
    return root


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "${distribution}"
version = "0.1.0"
description = "The ${name} recurrent cell, as an rnnbench plugin"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["rnnbench"]

[project.optional-dependencies]
test = ["pytest"]

# rnnbench finds the cell through this entry point: group "rnnbench", any name, the module.
[project.entry-points.rnnbench]
${name} = "${module}"

[tool.setuptools]
py-modules = ["${module}"]
"""

_README = """\
# ${distribution}

The `${name}` recurrent cell (${backend} backend) as an rnnbench plugin:
rnnbench times it, trains it on long-dependency tasks and measures how its gradients
decay, beside LSTM, GRU and every other installed cell.

## Install

From this folder, in the environment where rnnbench is installed:

```bash
pip install -e ".[test]"
rnnbench cells                 # lists ${name}, from ${distribution}
```

## Check and compare

```bash
rnnbench check ${name}                           # the conformance checks, one line each
pytest                                           # the same checks, as this package's test
rnnbench run --cells ${name},lstm,gru            # speed, accuracy and gradient-decay tables
```

## Make it yours

`${module}.py` holds ${what}, `${class_name}`: replace its equations with your
cell's, keep the signatures, and run `rnnbench check ${name}` after each change. The
contract, the step, sequence and NumPy forms and what each check means are in rnnbench's
`docs/writing-cells.md`.
"""

_TORCH_CELL = '''\
"""The ${name} cell, an rnnbench plugin, written as one time step that rnnbench unrolls.

    h_t = tanh(W x_t + U h_{t-1} + b)

A plain tanh RNN to start from: replace the equations in ``forward`` with your cell's.
"""

import torch
from torch import nn

from harness import hookimpl


class ${class_name}(nn.Module):
    """One step: ``(x_t: (B, I), state: (B, H) or None) -> (h_t: (B, H), state)``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)  # W x_t + b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # U h_{t-1}

    def forward(self, x_t, state=None):
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if state is None else state
        h_t = torch.tanh(self.input(x_t) + self.recurrent(h))
        return h_t, h_t  # the output at this step, and the state for the next one


@hookimpl
def register_cells(register):
    register("${name}", ${class_name}, backend="torch", form="step", summary="${name}: a tanh RNN step (edit me)")
'''

_NUMPY_CELL = '''\
"""The ${name} cell, an rnnbench plugin, in NumPy with backpropagation through time by hand.

    h_t = tanh(W x_t + U h_{t-1} + b)

A plain tanh RNN to start from: replace the equations in ``forward`` and ``backward``
with your cell's; ``rnnbench check ${name}`` compares the backward with finite differences.
"""

import math

import numpy as np
import torch

from harness import hookimpl


class ${class_name}:
    """``params``: W (H, I), U (H, H), b (H,); rnnbench trains them as torch parameters."""

    def __init__(self, input_size: int, hidden_size: int):
        bound = 1.0 / math.sqrt(hidden_size)
        # Drawn from torch's generator, so that torch.manual_seed(seed) seeds the cell.
        uniform = lambda *shape: torch.empty(*shape).uniform_(-bound, bound).numpy()
        self.params = {"W": uniform(hidden_size, input_size), "U": uniform(hidden_size, hidden_size), "b": uniform(hidden_size)}

    def forward(self, x, state):
        """x: (T, B, I), state: (B, H) or None -> y: (T, B, H), state: (B, H), cache."""
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        seq_len, batch, _ = x.shape
        hs = np.empty((seq_len + 1, batch, U.shape[0]), dtype=x.dtype)  # hs[t + 1] = h_t
        hs[0] = 0.0 if state is None else state
        for t in range(seq_len):
            hs[t + 1] = np.tanh(x[t] @ W.T + hs[t] @ U.T + b)
        return hs[1:], hs[seq_len], (x, hs)

    def backward(self, cache, dy, dstate):
        """dy: (T, B, H), dstate: dL/dh_T -> dx, dL/dh_0, {name: gradient}."""
        x, hs = cache
        W, U = self.params["W"], self.params["U"]
        dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(self.params["b"])
        dx = np.empty_like(x)
        dh = np.zeros_like(hs[0]) if dstate is None else np.array(dstate)
        for t in reversed(range(x.shape[0])):
            dh = dh + dy[t]  # gradient on h_t: from the output at t and from step t + 1
            da = dh * (1.0 - hs[t + 1] ** 2)  # backprop through tanh
            dW += da.T @ x[t]  # through W x_t
            dU += da.T @ hs[t]  # through U h_{t-1}
            db += da.sum(axis=0)  # through b
            dx[t] = da @ W  # gradient on the input
            dh = da @ U  # gradient flowing into h_{t-1}
        return dx, dh, {"W": dW, "U": dU, "b": db}


@hookimpl
def register_cells(register):
    register("${name}", ${class_name}, backend="numpy", summary="${name}: a tanh RNN in NumPy (edit me)")
'''

_SCAN_CELL = '''\
"""The ${name} cell, an rnnbench plugin, with two implementations: a parallel scan and the plain step.

    a_t = σ(W_a x_t + b_a)                   how much of h_{t-1} is kept, from the input alone
    h̃_t = W_h x_t + b_h                      the candidate, from the input alone
    h_t = a_t ⊙ h_{t-1} + (1 - a_t) ⊙ h̃_t

No gate reads h_{t-1}, so the recurrence is linear in h, h_t = a_t ⊙ h_{t-1} + b_t, and the whole
sequence runs as one scan (``harness.scan.linear_scan``). ``${class_name}Step`` is the plain
recurrence, the reference: ``rnnbench check ${name}`` verifies the scan against it (outputs, final
state, every gradient; float64 and float32 at T = 4096). Replace both with your cell's equations
and keep them equal.
"""

import torch
from torch import nn

from harness import hookimpl
from harness.scan import linear_scan


class ${class_name}(nn.Module):
    """The scan: ``(x: (T, B, I), state: (B, H) or None) -> (h: (T, B, H), h_T)``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # rows: keep gate a, candidate h̃

    def forward(self, x, state=None):
        gate, candidate = self.linear(x).chunk(2, dim=-1)  # every step at once
        keep = torch.sigmoid(gate)
        h = linear_scan(keep, (1 - keep) * candidate, state)  # h_t = a_t ⊙ h_{t-1} + (1 - a_t) ⊙ h̃_t
        return h, h[-1]


class ${class_name}Step(nn.Module):
    """The reference, one step: ``(x_t: (B, I), state: (B, H) or None) -> (h_t, h_t)``, on the scan's parameters."""

    def __init__(self, scan: ${class_name}):
        super().__init__()
        self.hidden_size = scan.hidden_size
        self.linear = scan.linear  # shared with the scan, not copied

    def forward(self, x_t, state=None):
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if state is None else state
        gate, candidate = self.linear(x_t).chunk(2, dim=-1)
        keep = torch.sigmoid(gate)
        h_t = keep * h + (1 - keep) * candidate
        return h_t, h_t


@hookimpl
def register_cells(register):
    register("${name}", ${class_name}, impl="scan", alternatives={"step": ${class_name}Step}, reference="step",
             summary="${name}: a gated linear recurrence, scan checked against its step (edit me)")
'''

_SCAN_TEST = '''

def test_${test_name}_scan_equals_its_step_form():
    from harness.testing import assert_equivalent

    assert_equivalent("${name}", autoload=True)  # outputs, final state and every gradient, float64 and float32
'''

_TEST = '''\
"""${name} is found through its entry point and passes rnnbench's conformance checks."""

from harness.plugins import load_plugins
from harness.testing import assert_conforms


def test_${test_name}_is_registered_through_its_entry_point():
    registry = load_plugins(autoload=True)  # installed plugins, even where RNNBENCH_DISABLE_PLUGIN_AUTOLOAD is set
    assert "${name}" in registry.cells, f"not registered; errors while loading plugins: {registry.errors}"
    assert registry.cell("${name}").plugin.source == "entry-point"


def test_${test_name}_passes_the_conformance_checks():
    assert_conforms("${name}", autoload=True)  # the checks of `rnnbench check ${name}`
'''
