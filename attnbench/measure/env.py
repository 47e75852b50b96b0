"""The environment a run measured on, stored in meta.json."""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch
import torchvision

from attnbench.measure.gpu_state import driver_facts


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment(device: torch.device, project_root: Path) -> dict[str, Any]:
    """What the runner knows without touching the device: the host, versions, the device asked for.

    Nothing here creates a CUDA context, so the runner of isolated CUDA groups holds none; what only
    the device can tell comes from the process that runs the cases (device_environment).
    """
    cuda = device.type == "cuda"
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": None if cuda else cpu_model(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": None,
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(project_root),
    }


def device_environment(device: torch.device) -> dict[str, Any]:
    """What the device tells the process that runs the cases: its name and, on CUDA, cuDNN's version,
    the driver, power limit and maximum clocks."""
    if device.type != "cuda":
        return {"device_name": cpu_model()}
    return {
        "device_name": torch.cuda.get_device_name(device),
        "cudnn": torch.backends.cudnn.version(),
        **driver_facts(device),
    }
