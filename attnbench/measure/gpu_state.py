"""The GPU's state around the timing of a group: clocks, temperature, power and the reasons the driver gives
for holding the clocks down, read through NVML (the nvidia-ml-py package), so that a case timed while the
GPU throttled is flagged instead of being read as its module's cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

CLOCK_DROP = 0.9
"""The SM clock after timing below this fraction of the clock before it counts as a drop."""
SLOWDOWNS = {
    "nvmlClocksEventReasonHwSlowdown": "hardware slowdown",
    "nvmlClocksEventReasonHwThermalSlowdown": "hardware thermal slowdown",
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": "power brake",
    "nvmlClocksEventReasonSwThermalSlowdown": "thermal slowdown",
    "nvmlClocksEventReasonSwPowerCap": "power cap",
}
"""NVML's throttle reasons that mean the GPU ran slower than it could (not idle or application clocks)."""


@dataclass(frozen=True)
class GpuState:
    sm_clock_mhz: int
    mem_clock_mhz: int
    temperature_c: int
    power_w: float
    slowdowns: tuple[str, ...]


def _nvml():
    """pynvml, initialised; None without the package or without a driver (a CPU-only machine)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def _handle(nvml, device: torch.device):
    """The NVML handle of the torch device: by UUID, since CUDA_VISIBLE_DEVICES renumbers torch's devices."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except nvml.NVMLError:
            pass
    return nvml.nvmlDeviceGetHandleByIndex(index)


def read_state(device: torch.device) -> GpuState | None:
    """The GPU's state now; None where NVML is not available."""
    nvml = _nvml() if device.type == "cuda" else None
    if nvml is None:
        return None
    handle = _handle(nvml, device)
    reasons = nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    return GpuState(
        sm_clock_mhz=nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        mem_clock_mhz=nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        temperature_c=nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        power_w=nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
        slowdowns=tuple(name for flag, name in SLOWDOWNS.items() if reasons & getattr(nvml, flag, 0)),
    )


def state_columns(before: GpuState | None, after: GpuState | None) -> dict[str, Any]:
    """cases.csv's GPU columns for a case timed between the two readings; `throttled` when the SM clock
    dropped or the driver reported a slowdown at either reading."""
    if before is None or after is None:
        return {}
    slowdowns = sorted(set(before.slowdowns) | set(after.slowdowns))
    dropped = after.sm_clock_mhz < CLOCK_DROP * before.sm_clock_mhz
    return {
        "sm_clock_mhz_start": before.sm_clock_mhz,
        "sm_clock_mhz_end": after.sm_clock_mhz,
        "gpu_temp_c_end": after.temperature_c,
        "gpu_power_w_end": after.power_w,
        "throttle_reasons": ";".join(slowdowns + (["SM clock dropped"] if dropped else [])),
        "throttled": dropped or bool(slowdowns),
    }


def driver_facts(device: torch.device) -> dict[str, Any]:
    """meta.json's facts of the GPU itself: driver, power limit, maximum clocks; empty without NVML."""
    nvml = _nvml() if device.type == "cuda" else None
    if nvml is None:
        return {}
    handle = _handle(nvml, device)
    return {
        "driver": nvml.nvmlSystemGetDriverVersion(),
        "power_limit_w": nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
        "max_sm_clock_mhz": nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM),
        "max_mem_clock_mhz": nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM),
    }
