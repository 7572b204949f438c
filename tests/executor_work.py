"""Work functions for tests/test_executors.py, importable by module path in worker processes
(the executors put the driver's sys.path, which holds tests/, into each worker's)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def echo(payload, context):
    return [("echo", payload, context.worker, context.device)]


def deterministic(payload, context):
    """A seeded computation: the same seed gives the same floats in any process."""
    import numpy as np

    rng = np.random.default_rng(payload)
    weights = rng.standard_normal((16, 16))
    state = rng.standard_normal(16)
    norms = []
    for _ in range(20):
        state = np.tanh(weights @ state)
        norms.append(float(np.linalg.norm(state)))
    return [("norm", payload, step, value) for step, value in enumerate(norms)]


def nap(payload, context):
    """Sleep ``payload`` seconds; the row is the pid (start/end times come with the result)."""
    time.sleep(payload)
    return [("napped", payload, os.getpid())]


def hang(payload, context):
    time.sleep(3600)
    return []


def call_exit(payload, context):
    sys.exit(payload)


def raise_interrupt(payload, context):
    raise KeyboardInterrupt


def raise_error(payload, context):
    raise ValueError(f"bad value {payload}")


def die_first_time(payload, context):
    """First attempt: leave the pid in a marker file and wait to be killed; later attempts
    see the marker and finish."""
    marker = Path(payload)
    if marker.exists():
        return [("survived", marker.read_text())]
    marker.write_text(str(os.getpid()))
    time.sleep(60)
    return [("not killed",)]


def kill_self(payload, context):
    os.kill(os.getpid(), signal.SIGKILL)


def environment(payload, context):
    import torch

    return [("env", os.environ.get("OMP_NUM_THREADS"), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.get_num_threads(),
             context.threads)]


def plugin_cells(payload, context):
    """Load the shipped plugin files as the runner would and report what they registered."""
    from harness.plugins import load_plugins

    registry = context.memo(("registry", context.plugin_sha256), lambda: load_plugins(context.plugin_paths))
    return [("cells", sorted(registry.cells), [str(p) for p in context.plugin_paths], list(registry.errors))]


def kill_my_dask_worker_first_time(payload, context):
    """First attempt: leave "<dask worker pid> <own pid>" in a marker and wait; the test kills
    the Dask worker process (this process's parent). Later attempts finish."""
    marker = Path(payload)
    if marker.exists():
        return [("survived",)]
    marker.write_text(f"{os.getppid()} {os.getpid()}")
    time.sleep(60)
    return [("not killed",)]


def slow_setup(context):
    """A worker set-up (e.g. loading plugins) slower than the items' time limit."""
    time.sleep(2.0)


WARMED: list[int] = []  # pids of processes that ran warm() as they started


def warm():
    """A worker's start-up work (``LocalPoolExecutor(warm=...)``), done before it is given items."""
    WARMED.append(os.getpid())


def warmed(payload, context):
    return [("warmed", WARMED == [os.getpid()])]
