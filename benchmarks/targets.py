"""The one output line every benchmark target prints: ``NAME value=X target=Y PASS|FAIL``."""


def report(name: str, value: float, target: str, passed: bool) -> None:
    print(f"{name} value={value:.3f} target={target} {'PASS' if passed else 'FAIL'}", flush=True)
