"""`rnnbench new-cell`: the package it writes installs, is discovered through its entry point and
passes `rnnbench check` and its own test, with no edits."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.scaffold import Scaffold, write_scaffold

REPO = Path(__file__).resolve().parent.parent


def test_scaffold_writes_pyproject_module_readme_and_test(tmp_path):
    """rnnbench-NAME/ holds a setuptools pyproject whose rnnbench entry point names the module, and the module registers NAME."""
    root = write_scaffold("leaky-rnn", "torch", tmp_path)
    assert root == tmp_path / "rnnbench-leaky-rnn"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "rnnbench_leaky_rnn.py", "tests/test_rnnbench_leaky_rnn.py"]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert pyproject["project"]["name"] == "rnnbench-leaky-rnn"
    assert pyproject["project"]["entry-points"]["rnnbench"] == {"leaky-rnn": "rnnbench_leaky_rnn"}
    assert pyproject["tool"]["setuptools"]["py-modules"] == ["rnnbench_leaky_rnn"]
    module = (root / "rnnbench_leaky_rnn.py").read_text()
    assert 'register("leaky-rnn", LeakyRnnCell, backend="torch", form="step"' in module
    assert "rnnbench check leaky-rnn" in (root / "README.md").read_text()
    assert 'assert_conforms("leaky-rnn", autoload=True)' in (root / "tests/test_rnnbench_leaky_rnn.py").read_text()


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_scaffold_cell_passes_the_checks_as_a_plugin_file(tmp_path, backend, write_plugin):
    """The generated module, loaded as a plugin file, registers its cell and passes every check."""
    from harness.plugins import load_plugins
    from harness.testing import assert_conforms

    root = write_scaffold("fresh", backend, tmp_path)
    path = write_plugin(f"scaffold_{backend}", (root / "rnnbench_fresh.py").read_text())
    registry = load_plugins([path], autoload=False)
    assert registry.errors == []
    assert registry.cell("fresh").backend == backend
    results = assert_conforms("fresh", registry=registry)
    assert {r.name: r.status for r in results}["finite-differences"] == ("PASS" if backend == "numpy" else "SKIP")


def test_a_scan_scaffold_has_a_scan_checked_against_its_step(tmp_path, write_plugin):
    """--with-scan: the module registers scan (primary) and step (reference); it passes every check,
    the implementations line among them, and its own test calls assert_equivalent."""
    from harness.plugins import load_plugins
    from harness.testing import assert_conforms, assert_equivalent

    root = write_scaffold("scanned", "torch", tmp_path, scan=True)
    path = write_plugin("scaffold_scan", (root / "rnnbench_scanned.py").read_text())
    registry = load_plugins([path], autoload=False)
    assert registry.errors == []
    spec = registry.cell("scanned")
    assert spec.impls.names == ("scan", "step") and spec.reference_impl == "step"
    results = assert_conforms("scanned", registry=registry)
    assert {r.name: r.status for r in results}["implementations"] == "PASS"
    assert_equivalent("scanned", registry=registry)
    test_text = (root / "tests/test_rnnbench_scanned.py").read_text()
    assert 'assert_equivalent("scanned", autoload=True)' in test_text
    assert "a gated linear recurrence with a scan and a step form" in (root / "README.md").read_text()


def test_a_scan_scaffold_with_a_swapped_gate_fails_the_check(tmp_path, write_plugin):
    """The scaffold's own equality check has teeth: its scan with the gate and candidate swapped fails."""
    from harness.plugins import load_plugins
    from harness.testing import run_checks

    root = write_scaffold("scanned", "torch", tmp_path, scan=True)
    text = (root / "rnnbench_scanned.py").read_text()
    wrong = text.replace("gate, candidate = self.linear(x).chunk(2, dim=-1)  # every step at once",
                         "candidate, gate = self.linear(x).chunk(2, dim=-1)")
    assert wrong != text
    registry = load_plugins([write_plugin("scaffold_scan_wrong", wrong)], autoload=False)
    failed = [r for r in run_checks("scanned", registry=registry) if r.status == "FAIL"]
    assert [r.name for r in failed] == ["implementations"] and "scan differs from step" in failed[0].message


@pytest.mark.parametrize("name", ["MyCell", "my_cell", "1cell", "cell-", "a--b", ""])
def test_scaffold_rejects_invalid_names(tmp_path, name):
    with pytest.raises(UsageError, match="invalid cell name"):
        write_scaffold(name, "torch", tmp_path)


def test_scaffold_never_overwrites(tmp_path):
    write_scaffold("mine", "torch", tmp_path)
    with pytest.raises(UsageError, match="already exists and is not empty"):
        write_scaffold("mine", "numpy", tmp_path)


def test_cli_new_cell_writes_the_package_and_says_what_next(rnnbench, tmp_path):
    result = rnnbench("new-cell", "gated", "--backend", "numpy", "--dir", tmp_path)
    assert result.code == 0, result.err
    root = tmp_path / "rnnbench-gated"
    for relative in Scaffold("gated", "numpy").files():
        assert f"wrote {root / relative}" in result.out
    assert "pip install -e" in result.out and "rnnbench check gated" in result.out
    assert 'backend="numpy"' in (root / "rnnbench_gated.py").read_text()


@pytest.mark.parametrize("argv,message", [
    (["new-cell", "lstm"], "a cell named 'lstm' is already registered by lstm (rnnbench"),
    (["new-cell", "My_Cell"], "invalid cell name 'My_Cell'"),
    (["new-cell", "ok", "--backend", "jax"], "'jax' is not one of 'torch', 'numpy'"),
    (["new-cell", "ok", "--backend", "numpy", "--with-scan"], "--with-scan writes a torch cell"),
])
def test_cli_new_cell_refuses_with_one_line(rnnbench, tmp_path, argv, message):
    result = rnnbench(*argv, "--dir", tmp_path)
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where,message", [
    ("file/sub", "cannot be created: '{tmp}/file' is a file, not a folder"),
    pytest.param("/proc/rnnbench-nope", "--dir '/proc/rnnbench-nope' cannot be created or written to",
                 marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")),
])
def test_cli_new_cell_refuses_a_dir_it_cannot_make_with_one_line(rnnbench, tmp_path, where, message):
    """A --dir under a file, or where no folder can be made, is one line, not a NotADirectoryError or
    FileNotFoundError traceback."""
    (tmp_path / "file").write_text("a file")
    result = rnnbench("new-cell", "abc", "--dir", tmp_path / where)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [result.err.strip()]
    assert message.format(tmp=tmp_path) in result.err, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _run(argv, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_scaffolds_install_are_discovered_and_pass_check_and_their_own_tests(tmp_path):
    """pip builds both scaffolds from their pyproject (no network, no edits) into a target folder; with it
    on PYTHONPATH, `rnnbench cells` lists both from their distributions, `rnnbench check` passes, and the
    scaffolds' own pytest files pass."""
    pytest.importorskip("setuptools", reason="building without network (--no-build-isolation) needs setuptools here")
    torch_root = write_scaffold("scaffolded", "torch", tmp_path / "src")
    numpy_root = write_scaffold("scaffolded-np", "numpy", tmp_path / "src")
    target = tmp_path / "site"
    pip = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                "--target", str(target), str(torch_root), str(numpy_root)], dict(os.environ), tmp_path)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "rnnbench_scaffolded.py").is_file()

    env = {k: v for k, v in os.environ.items() if k != "RNNBENCH_DISABLE_PLUGIN_AUTOLOAD"}  # as a user's shell
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(REPO)])
    listed = _run([sys.executable, "-c", "import sys; from harness.cli import main; "
                   "sys.exit(main(['cells']) or main(['check', 'scaffolded,scaffolded-np']))"], env, tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.split()[:4] == ["scaffolded", "torch", "step", "unrolled"] and "(rnnbench-scaffolded 0.1.0)" in line
               for line in lines)
    assert any(line.split()[:3] == ["scaffolded-np", "numpy", "sequence"] and "(rnnbench-scaffolded-np 0.1.0)" in line
               for line in lines)
    assert "scaffolded: 7 passed, 0 failed, 3 skipped" in lines or "scaffolded: 8 passed, 0 failed, 2 skipped" in lines
    assert "scaffolded-np: 8 passed, 0 failed, 2 skipped" in lines

    own_tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(torch_root / "tests"),
                      str(numpy_root / "tests")], env, tmp_path)
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "4 passed" in own_tests.stdout
