"""Equivalence of a cell's implementations: the same function of the same parameters.

Every alternative implementation of a cell (:mod:`harness.impls`) is compared with its reference
(the plain recurrence) on one input and one non-zero initial state, with the parameters shared:

* the outputs ``y`` (T, B, H), every tensor of the final state, and the gradients of one loss
  with respect to every parameter and to the input. The loss weighs every output and every
  final-state entry by its own random number, ``L = Σ w_y ⊙ y + Σ w_s ⊙ s_T``, so that every
  gradient path is exercised (a plain sum would let some errors cancel);
* each quantity's gap is ``max |a - b| / max(max |a|, max |b|)``: the error relative to the
  scale of the tensor (an entry-wise relative error is meaningless where entries cross zero);
* a NaN or ±inf in a quantity, of the alternative or of the reference, fails it whatever the
  other side holds (:class:`NonFinite`): it has no gap, and a reference that overflows at the
  same places as its alternative checks nothing;
* at two settings, :data:`FLOAT64` (short T, tight tolerance: any difference beyond rounding
  is a different function) and :data:`FLOAT32` (T = 4096, the tolerance a float32 scan must keep
  over a long sequence; Feng et al.'s whole-sequence log-space scan drifts to about 2e-3 at
  T = 1000, which fails it).

A different function — two gates swapped, a state term dropped — is off by order 1 and fails
at both settings.

The sizes are chosen so that the built-in fast forms cross their block and chunk boundaries,
where a carry between blocks can go wrong: float64 T = 200 spans four of Mamba's and mLSTM's
64-step chunks, and float32 at B = 4, H = 64 spans eight 512-step blocks of the fused CPU
scans (minGRU, minLSTM, LRU: blocks of 2^17 / (B·H) steps), 64 of Mamba's and mLSTM's chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.random import fork_rng

from harness.cells import build_cell, derive_impl, flatten_state
from harness.contract import nonfinite_values

__all__ = ["FLOAT32", "FLOAT64", "Gaps", "NonFinite", "Setting", "compare_impls", "implementation_gaps",
           "nothing_to_compare", "warm_state"]


@dataclass(frozen=True)
class Setting:
    """One comparison: dtype, sizes and tolerances (relative gaps, see the module docstring)."""

    dtype: torch.dtype
    seq_len: int
    batch_size: int = 2
    input_size: int = 3
    hidden_size: int = 8
    value_rtol: float = 1e-8  # outputs and final state
    grad_rtol: float = 1e-8  # parameter and input gradients

    def describe(self) -> str:
        name = str(self.dtype).replace("torch.", "")
        return (f"{name} T={self.seq_len} B={self.batch_size} I={self.input_size} H={self.hidden_size}, "
                f"tolerance {self.value_rtol:g} (outputs, state) and {self.grad_rtol:g} (gradients)")


FLOAT64 = Setting(torch.float64, seq_len=200, value_rtol=1e-10, grad_rtol=1e-10)
# float32 over T = 4096: outputs and state within 1e-4 of the recurrence's scale (issue 12's
# target); a gradient sums T products of rounded terms in a different order, hence 1e-3.
FLOAT32 = Setting(torch.float32, seq_len=4096, batch_size=4, hidden_size=64, value_rtol=1e-4, grad_rtol=1e-3)
SETTINGS = (FLOAT64, FLOAT32)


@dataclass(frozen=True)
class NonFinite:
    """NaN or ±inf entries of one quantity: how many the alternative and the reference hold, and
    whether they sit at the same places (entry by entry)."""

    what: str  # "outputs", "state[0]", "grad linear.weight", ...
    in_impl: int
    in_reference: int
    same_places: bool

    def phrase(self, impl: str, reference: str) -> str:
        """E.g. ``"outputs of 'scan' have 12 non-finite values (NaN/inf) where the reference 'step' has none"``."""
        have = "have" if self.what == "outputs" else "has"
        if not self.in_reference:
            return f"{self.what} of {impl!r} {have} {nonfinite_values(self.in_impl)} where the reference {reference!r} has none"
        ours = f"{self.what} of the reference {reference!r} {have} {nonfinite_values(self.in_reference)}"
        if not self.in_impl:
            return f"{ours} where {impl!r} has none: the reference must be finite to check anything against"
        if self.same_places:
            return f"{ours}, and {impl!r} at the same places: a reference that is not finite checks nothing"
        return f"{ours}, and {impl!r} has {self.in_impl} at other places"


@dataclass(frozen=True)
class Gaps:
    """How far ``impl`` is from ``reference``: relative gap per quantity, worst first on demand."""

    impl: str
    reference: str
    setting: Setting
    values: tuple[tuple[str, float], ...]  # ("outputs", gap), ("state[0]", gap), ...
    grads: tuple[tuple[str, float], ...]  # ("grad linear.weight", gap), ..., ("grad x", gap)
    nonfinite: tuple[NonFinite, ...] = ()  # the quantities holding NaN or inf (their gap: inf)

    @property
    def outputs(self) -> float:
        return dict(self.values)["outputs"]

    @property
    def states(self) -> tuple[float, ...]:
        return tuple(gap for what, gap in self.values if what.startswith("state"))

    @property
    def worst(self) -> float:
        """The largest gap of all, values and gradients."""
        return max(gap for _, gap in self.values + self.grads)

    @property
    def worst_value(self) -> tuple[str, float]:
        return max(self.values, key=lambda item: item[1], default=("outputs", 0.0))

    @property
    def worst_grad(self) -> tuple[str, float]:
        return max(self.grads, key=lambda item: item[1], default=("gradients", 0.0))

    @property
    def failures(self) -> list[str]:
        """One phrase per quantity beyond its tolerance, e.g. ``"grad linear.weight off by 0.41 (tolerance 1e-09)"``,
        or holding NaN or inf (:meth:`NonFinite.phrase`), in the order of :attr:`values` then :attr:`grads`."""
        nonfinite = {found.what: found.phrase(self.impl, self.reference) for found in self.nonfinite}
        found = [(what, gap, self.setting.value_rtol) for what, gap in self.values]
        found += [(what, gap, self.setting.grad_rtol) for what, gap in self.grads]
        return [nonfinite.get(what) or f"{what} off by {gap:.3g} (tolerance {tol:g})"
                for what, gap, tol in found if what in nonfinite or not gap <= tol]

    def line(self) -> str:
        dtype = str(self.setting.dtype).replace("torch.", "")
        (value_name, value), (grad_name, grad) = self.worst_value, self.worst_grad
        return (f"{dtype} T={self.setting.seq_len}: worst {value:.1g} ({value_name}; tolerance {self.setting.value_rtol:g}), "
                f"{grad:.1g} ({grad_name}; tolerance {self.setting.grad_rtol:g})")


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The relative gap of two finite tensors (zero when both are all zeros)."""
    a, b = a.detach().double(), b.detach().double()
    scale = float(torch.maximum(a.abs().max(), b.abs().max())) if a.numel() else 0.0
    return 0.0 if scale == 0 else float((a - b).abs().max()) / scale  # a NaN scale gives a NaN gap, which fails


def _compare(what: str, a: torch.Tensor, b: torch.Tensor) -> tuple[float, NonFinite | None]:
    """The gap of ``a`` (the alternative's) from ``b`` (the reference's); or, where either holds NaN
    or inf, ``inf`` and the count on each side: such a quantity has no gap (NaN - NaN is NaN, and
    inf / inf too), and a check must not pass it whatever the other side holds."""
    bad_a, bad_b = ~torch.isfinite(a.detach()), ~torch.isfinite(b.detach())
    in_impl, in_reference = int(bad_a.sum()), int(bad_b.sum())
    if in_impl or in_reference:
        same = bad_a.shape == bad_b.shape and bool(torch.equal(bad_a, bad_b))
        return float("inf"), NonFinite(what, in_impl, in_reference, same)
    return _gap(a, b), None


def _run(module, x, state, weights, params):
    """Outputs, final-state tensors and the gradients of the weighted loss for ``params`` and ``x``."""
    x = x.detach().requires_grad_()
    y, final = module(x, state)
    parts = flatten_state(final)
    loss = (y * weights[0]).sum() + sum((p * w).sum() for p, w in zip(parts, weights[1:]))
    tensors = [p for _, p in params] + [x]
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]  # unused: gradient zero
    return y.detach(), [p.detach() for p in parts], grads


def implementation_gaps(candidate, reference, x: torch.Tensor, state=None, *, params=None, seed: int = 5,
                        names: tuple[str, str] = ("candidate", "reference"), setting: Setting | None = None) -> Gaps:
    """Compare two sequence-form modules that share their parameters, on input ``x`` (T, B, I) and
    initial ``state``.

    :param params: ``[(name, parameter), ...]`` whose gradients are compared; default: the
        candidate's named parameters (the reference must use the same parameter objects).
    :param names: the two implementations' names, for messages.
    :param setting: recorded in the result (tolerances); default: the float64 or float32 setting by ``x``'s dtype.
    """
    params = list(candidate.named_parameters()) if params is None else list(params)
    shared = {id(p) for p in reference.parameters()}
    if params and not any(id(p) in shared for _, p in params):
        raise ValueError(f"{names[0]} and {names[1]} share no parameters: derive one from the other "
                         "(assign the parameters, do not copy them)")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y_probe, final_probe = reference(x[:1], state)
    shapes = [tuple(x.shape[:1]) + tuple(y_probe.shape[1:])] + [tuple(p.shape) for p in flatten_state(final_probe)]
    weights = [torch.randn(shape, generator=gen, dtype=x.dtype).to(x.device) for shape in shapes]
    y_c, s_c, g_c = _run(candidate, x, state, weights, params)
    y_r, s_r, g_r = _run(reference, x, state, weights, params)
    value_pairs = [("outputs", y_c, y_r)]
    if len(s_c) == len(s_r):
        value_pairs += [(f"state[{i}]", a, b) for i, (a, b) in enumerate(zip(s_c, s_r))]
    grad_names = [f"grad {name}" for name, _ in params] + ["grad x"]
    compared = [(what, *_compare(what, a, b)) for what, a, b in value_pairs + list(zip(grad_names, g_c, g_r))]
    values = tuple((what, gap) for what, gap, _ in compared[:len(value_pairs)])
    if len(s_c) != len(s_r):
        values += (("state structure", float("inf")),)
    grads = tuple((what, gap) for what, gap, _ in compared[len(value_pairs):])
    nonfinite = tuple(found for _, _, found in compared if found is not None)
    if setting is None:  # the tolerances of the dtype, the sizes of this input
        setting = replace(FLOAT64 if x.dtype == torch.float64 else FLOAT32, dtype=x.dtype, seq_len=x.shape[0],
                          batch_size=x.shape[1], input_size=x.shape[2], hidden_size=y_r.shape[-1])
    return Gaps(names[0], names[1], setting, values, grads, nonfinite)


def warm_state(module, batch_size: int, input_size: int, dtype=torch.float64, seed: int = 3):
    """A non-zero state of ``module``'s own structure: the state after 5 steps of standard-normal input."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, state = module(torch.randn(5, batch_size, input_size, generator=gen, dtype=dtype), None)
    return state


def _inputs(spec, setting: Setting, primary) -> tuple[torch.Tensor, object]:
    """Standard-normal input and a non-zero initial state (from a short run of the primary)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((setting.seq_len, setting.batch_size, setting.input_size), generator=gen, dtype=setting.dtype)
    return x, warm_state(primary, setting.batch_size, setting.input_size, setting.dtype)


def nothing_to_compare(spec) -> str | None:
    """Why ``spec`` has no implementations to compare (it registers one), or None."""
    return None if len(spec.impls.names) > 1 else f"one implementation ({spec.impls.primary}); nothing to compare"


def compare_impls(spec, impls=None, settings=SETTINGS, seed: int = 0) -> list[Gaps]:
    """Every alternative of ``spec`` (or those named in ``impls``) against its reference, at each
    setting: one :class:`Gaps` per (implementation, setting). Built under ``torch.manual_seed(seed)``;
    the caller's random state is left as it was."""
    reference = spec.impls.reference
    chosen = [name for name in spec.impls.names if name != reference and (impls is None or name in impls)]
    found = []
    for setting in settings:
        with fork_rng(devices=[]):
            torch.manual_seed(seed)
            primary = build_cell(spec, setting.input_size, setting.hidden_size).to(setting.dtype)
            modules = {name: derive_impl(spec, name, primary) for name in (reference, *chosen)}
            params = list(primary.named_parameters())
            x, state = _inputs(spec, setting, primary)
            for name in chosen:
                found.append(implementation_gaps(modules[name], modules[reference], x, state, params=params,
                                                 names=(name, reference), setting=setting))
    return found
