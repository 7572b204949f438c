"""Built-in cell ``lru``: the Linear Recurrent Unit, as a scan over the whole sequence and as a single step.

    λ = exp(-exp(ν) + i·exp(θ))                 diagonal complex recurrence, |λ| = exp(-exp(ν)) < 1
    γ = exp(γ_log), initialised to √(1 - |λ|²)  normalisation of the input per state dimension
    h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)             h ∈ ℂ^N, B ∈ ℂ^{N×I}
    y_t = Re(C h_t) + D x_t                     C ∈ ℂ^{H×N}, D ∈ ℝ^{H×I}

Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De, "Resurrecting Recurrent Neural Networks
for Long Sequences", ICML 2023, sec. 3 and appendix A. The recurrence is linear with a
time-invariant diagonal λ, so the whole sequence runs as one linear scan (complex), fused with
the input projection and readout (:func:`plugins.lru_scan.lru_scan`): on a GPU a chunked
parallel scan over the whole sequence; on the CPU, in cache-sized blocks whose projections and
readouts are single matrix products, the recurrence inside each block step by step (one core
gains nothing from the scan's parallelism and pays for its second pass). The step form loops
over single steps with autograd.

Initialisation as in the paper: ``|λ|`` uniform on the ring area between ``r_min`` and
``r_max`` (ν = log(-½ log(u₁(r_max² - r_min²) + r_min²))), phase ``exp(θ)`` uniform in
[0, max_phase]; γ = √(1 - |λ|²); Re B, Im B ~ N(0, 1/(2I)); Re C, Im C ~ N(0, 1/N). Defaults
r_min = 0.9, r_max = 0.999 (the paper's ring for long-range tasks) and max_phase = 2π. The
paper's D is a diagonal skip because its input and output widths are equal; here they need
not be, so D is a full H×I matrix, N(0, 1/I) (the same output variance). The state width N
is the hidden size H. Every parameter is real (ν, θ, γ_log, the real and imaginary parts of B
and C, D), so ``module.double()`` and optimisers treat the cell like any other.

State: the complex ``h`` of shape (B, N), handed out as its real view (B, N, 2) — real and
imaginary parts, ``torch.view_as_real`` — because the harness measures state norms and
feeds states back as real tensors (the norm of the view is the complex norm).

``LRU``      sequence form (``scan`` in the speed table).
``LRUStep``  step form (``step``, the reference): ``precompute(x)`` gives γ ⊙ (B x_t) and D x_t for every
             step at once, ``recur`` one step of the recurrence and the readout.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness import hookimpl
from harness.names import SCAN, STEP_IMPL
from plugins.lru_scan import lru_scan
from plugins.projection import project


class LRU(nn.Module):
    """LRU over a sequence: ``forward(x: (T, B, I), state: (B, N, 2) | None) -> (y: (T, B, H), (B, N, 2))``."""

    def __init__(self, input_size: int, hidden_size: int, *, r_min: float = 0.9, r_max: float = 0.999,
                 max_phase: float = 2 * math.pi):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        if not 0 <= r_min <= r_max < 1:
            raise ValueError(f"the ring needs 0 <= r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}")
        self.hidden_size = state_size = hidden_size
        u1, u2 = torch.rand(state_size), torch.rand(state_size).clamp_min(1e-12)  # log(0) would be -inf
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        self.gamma_log = nn.Parameter(0.5 * torch.log(1 - torch.exp(-2 * torch.exp(self.nu_log.detach()))))
        self.B_re = nn.Parameter(torch.randn(state_size, input_size) / math.sqrt(2 * input_size))
        self.B_im = nn.Parameter(torch.randn(state_size, input_size) / math.sqrt(2 * input_size))
        self.C_re = nn.Parameter(torch.randn(hidden_size, state_size) / math.sqrt(state_size))
        self.C_im = nn.Parameter(torch.randn(hidden_size, state_size) / math.sqrt(state_size))
        self.D = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(input_size))

    def decay(self) -> torch.Tensor:
        """λ, complex (N,)."""
        return torch.polar(torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log))

    def input_weight(self) -> torch.Tensor:
        """(2N, I) real: rows (Re, Im) of γ ⊙ B interleaved, so ``x W^T`` is the real view of γ ⊙ (B x)."""
        gamma = torch.exp(self.gamma_log).unsqueeze(-1)
        return torch.stack([gamma * self.B_re, gamma * self.B_im], dim=1).flatten(0, 1)

    def input_term(self, x: torch.Tensor) -> torch.Tensor:
        """γ ⊙ (B x), complex (..., N), as one real matrix product."""
        return torch.view_as_complex(project(x, self.input_weight()).unflatten(-1, (-1, 2)))

    def readout_weight(self) -> torch.Tensor:
        """(H, 2N) real: columns (Re C, -Im C) interleaved to match the real view of h."""
        return torch.stack([self.C_re, -self.C_im], dim=-1).flatten(-2)

    def readout(self, h: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Re(C h), real (..., H): Re C · Re h - Im C · Im h as one real product over the real view of h."""
        weight = self.readout_weight() if weight is None else weight
        return project(torch.view_as_real(h).flatten(-2), weight)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        h0 = None if state is None else as_complex(state)
        y, h_last = lru_scan(x, self.decay(), self.input_weight(), self.readout_weight(), self.D, h0)
        return y, torch.view_as_real(h_last)


def as_complex(state: torch.Tensor) -> torch.Tensor:
    """The complex state (B, N) from its real view (B, N, 2)."""
    return torch.view_as_complex(state.contiguous())  # a no-op for the states this cell returns


class LRUStep(nn.Module):
    """One step of ``cell``'s recurrence and readout, on ``cell``'s parameters.

    ``precompute`` also derives λ and the readout matrix from the parameters, once per
    sequence, as the scan does; ``recur`` uses them (a step loop that rebuilt them at every
    step would time parameter arithmetic, not the recurrence). A lone ``forward`` step runs both.
    """

    def __init__(self, cell: LRU):
        super().__init__()
        self.cell = cell
        self._per_sequence: tuple[torch.Tensor, torch.Tensor] | None = None

    def precompute(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N + H) complex: γ ⊙ (B x_t), then D x_t (imaginary part 0) for every step."""
        self._per_sequence = (self.cell.decay(), self.cell.readout_weight())
        skip = project(x, self.cell.D)
        return torch.cat([self.cell.input_term(x), torch.complex(skip, torch.zeros_like(skip))], dim=-1)

    def recur(self, pre_t: torch.Tensor, state: torch.Tensor | None = None):
        if self._per_sequence is None:
            raise RuntimeError("LRUStep.recur needs precompute(x) first (harness.cells.Unrolled calls both)")
        decay, readout_weight = self._per_sequence
        size = self.cell.hidden_size
        drive, skip = pre_t[:, :size], pre_t[:, size:].real
        h = drive if state is None else torch.addcmul(drive, decay, as_complex(state))
        return self.cell.readout(h, readout_weight) + skip, torch.view_as_real(h)

    def forward(self, x_t: torch.Tensor, state: torch.Tensor | None = None):
        return self.recur(self.precompute(x_t.unsqueeze(0))[0], state)

    def __getstate__(self):
        # copies and pickles leave the last sequence's λ behind: it is part of that call's graph
        # (deepcopy refuses non-leaf tensors), and the next precompute makes it again
        return {**self.__dict__, "_per_sequence": None}


@hookimpl
def register_cells(register):
    register("lru", LRU, impl=SCAN, alternatives={STEP_IMPL: LRUStep}, reference=STEP_IMPL,
             summary="Linear Recurrent Unit, complex diagonal λ on a ring (Orvieto et al. 2023); fused scan (chunked on a GPU), step form as reference")
