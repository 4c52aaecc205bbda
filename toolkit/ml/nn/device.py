"""Where the core computes: one array module per model, NumPy on the CPU or CuPy on a GPU.

Layers, losses and optimizers call `device.xp` (CuPy follows NumPy's API, `out=` arguments
included, so the buffer contract holds on both). Host and device meet only at the edges this
module names: `to_device` (host → device) and `to_host` (device → host). Everything else on a
device array stays on the device: no `float()`, `.item()`, boolean-mask indexing or NumPy call on
it, which on a GPU would be a synchronizing host round trip per call. The tests run the whole core
on a strict stand-in module whose arrays refuse exactly those (tests/strict_array_module.py).

`select("auto" | "cpu" | "gpu")` picks the device for `training.device`; `describe()` is what the
manifest records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Device:
    """An array module and its two edges. `info` is what training records about it."""

    xp: ModuleType
    kind: str  # "cpu" or "gpu"
    info: dict = field(default_factory=dict, compare=False)
    memory_budget: int | None = field(default=None, compare=False)  # bytes of training data kept on the device at once

    def to_device(self, host: np.ndarray) -> Any:
        """Edge: one host array onto the device (no copy on the CPU)."""
        return host if self.xp is np else self.xp.asarray(host)

    def to_host(self, array: Any) -> np.ndarray:
        """Edge: one device array back to the host (no copy on the CPU)."""
        return array if self.xp is np else self.xp.asnumpy(array)

    def describe(self) -> dict:
        return {"kind": self.kind, **self.info}


CPU = Device(np, "cpu", {"reason": "training.device is cpu"})


class DeviceUnavailable(Exception):
    """`training.device: gpu` and no usable GPU; the message says what is missing."""


def select(wanted: str) -> Device:
    """The device for `training.device`: `cpu`; `gpu` (DeviceUnavailable without one); `auto` (the GPU
    when CuPy finds a usable one, else the CPU, with the reason in `info`)."""
    if wanted == "cpu":
        return CPU
    try:
        return gpu_device()
    except DeviceUnavailable as missing:
        if wanted == "gpu":
            raise
        return Device(np, "cpu", {"reason": str(missing)})


def gpu_device(index: int = 0) -> Device:
    try:
        import cupy
    except ImportError:
        raise DeviceUnavailable("CuPy is not installed (the CUDA training image, training-gpu-<sha>, has it)") from None
    except Exception as error:  # e.g. its kernel cache directory cannot be made (CUPY_CACHE_DIR)
        raise DeviceUnavailable(f"CuPy failed to import: {_first_line(error)}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver, or with a broken one
        raise DeviceUnavailable(f"CuPy {cupy.__version__} finds no usable CUDA driver ({_first_line(error)})") from None
    if count == 0:
        raise DeviceUnavailable(f"CuPy {cupy.__version__} sees no CUDA device")
    cupy.cuda.Device(index).use()
    properties = cupy.cuda.runtime.getDeviceProperties(index)
    free, total = cupy.cuda.Device(index).mem_info
    name = properties["name"].decode() if isinstance(properties["name"], bytes) else str(properties["name"])
    info = {
        "name": name,
        "memory_gib": round(total / 2**30, 1),
        "cupy": cupy.__version__,
        "cuda_runtime": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
    }
    # Training data may take half of what is free; the rest is for weights, activations and CuPy's pool.
    return Device(cupy, "gpu", info, memory_budget=free // 2)


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def summary(device: Device) -> str:
    """One line for the terminal: what trains, and why the CPU when it is the CPU."""
    return "training on " + describe_line(device.describe())


def describe_line(described: dict | None) -> str:
    """`Device.describe()` (as a manifest or a training pod records it) in words."""
    if not described:
        return "an unrecorded device (an image older than the device record)"
    if described.get("kind") == "gpu":
        return (f"the GPU: {described['name']} ({described.get('memory_gib')} GiB), CuPy {described.get('cupy')}, "
                f"CUDA runtime {described.get('cuda_runtime')}, driver {described.get('cuda_driver')}")
    return f"the CPU: {described.get('reason', 'training.device is cpu')}"
