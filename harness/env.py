"""The machine and software fingerprint stored with every run, and thread control."""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

import numpy as np
import torch


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the harness's own checkout, when it runs from one (editable installs)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@functools.lru_cache(maxsize=1)
def _openblas_library():
    """numpy's bundled OpenBLAS, loaded by ctypes (how threadpoolctl finds it), once per process."""
    numpy_dir = Path(np.__file__).parent
    for pattern in ("numpy.libs/libscipy_openblas*.so*", "numpy.libs/libopenblas*.so*", ".dylibs/libscipy_openblas*.dylib"):
        for path in glob.glob(str(numpy_dir.parent / pattern)) + glob.glob(str(numpy_dir / pattern)):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def _openblas_function(suffix: str):
    lib = _openblas_library()
    if lib is None:
        return None
    for name in (f"scipy_openblas_{suffix}64_", f"scipy_openblas_{suffix}", f"openblas_{suffix}"):
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def blas_threads() -> int | None:
    fn = _openblas_function("get_num_threads")
    return int(fn()) if fn is not None else None


def set_threads(threads: int) -> dict:
    """Use ``threads`` threads in torch (intra-op) and in NumPy's OpenBLAS; return what took effect."""
    torch.set_num_threads(threads)
    setter = _openblas_function("set_num_threads")
    if setter is not None:
        setter(int(threads))
    return {"torch_threads": torch.get_num_threads(), "blas_threads": blas_threads()}


def blas_info() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def cuda_info() -> dict:
    if not torch.cuda.is_available():
        return {"cuda_available": False}
    props = torch.cuda.get_device_properties(0)
    info = {
        "cuda_available": True,
        "gpu_name": props.name,
        "gpu_count": torch.cuda.device_count(),
        "gpu_memory_bytes": props.total_memory,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0:
            info["gpu_driver"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return info


def fingerprint() -> dict:
    """Everything needed to say on which machine and software a number was measured."""
    return {
        "rnnbench": _version("rnnbench"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": _version("pandas"),
        "pluggy": _version("pluggy"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "blas": blas_info(),
        "torch_threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        **cuda_info(),
    }
