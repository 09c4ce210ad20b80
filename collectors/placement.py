"""Where a checkpoint's weights live: one device, or spread over several by accelerate's device
maps (``collect --device-map auto|balanced|sequential --max-memory 0=70GiB,cpu=200GiB``), for
models larger than one device (Falcon-40B in bf16 is ~84 GB, GPT-NeoX-20B ~41 GB).

With a device map, accelerate's dispatch hooks move each layer's inputs to the layer's device (and
weights offloaded to CPU or disk onto it) as the model's own forward runs.  The sweep's prefix
stubs hand on the residual cached where the clean pass saw it; the next real layer's hook moves it
to its own device, so each cached residual is used on the device of the layer that reads it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from layerdb.errors import LayerdbError

DEVICE_MAPS = ("auto", "balanced", "sequential")
ACCELERATE_MISSING = ("--device-map needs accelerate, which is not installed: "
                      "pip install 'accelerate>=1.0'")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Placement:
    device_map: str | None = None  # None: the whole model on the sweep's device
    max_memory: dict | None = None  # accelerate's: {0: "70GiB", "cpu": "200GiB"}
    offload_folder: str | None = None  # where weights offloaded to disk go

    def __post_init__(self):
        if self.device_map is None:
            if self.max_memory or self.offload_folder:
                raise LayerdbError("--max-memory and --offload-folder need --device-map")
            return
        if self.device_map not in DEVICE_MAPS:
            raise LayerdbError(f"unknown --device-map {self.device_map!r}: use "
                               f"{', '.join(DEVICE_MAPS)}")
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise LayerdbError(ACCELERATE_MISSING) from None

    def load_kwargs(self) -> dict:
        """Keyword arguments of ``from_pretrained`` for this placement."""
        if self.device_map is None:
            return {}
        kwargs = {"device_map": self.device_map}
        if self.max_memory:
            kwargs["max_memory"] = self.max_memory
        if self.offload_folder:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs


def parse_max_memory(text: str | None) -> dict | None:
    """``0=70GiB,cpu=200GiB`` -> {0: 75161927680, "cpu": 214748364800}; one-line errors."""
    if not text:
        return None
    limits: dict = {}
    for item in text.split(","):
        device, sep, size = item.partition("=")
        device = device.strip().lower()
        if not sep or not device or not size.strip():
            raise LayerdbError(f"--max-memory takes DEVICE=SIZE pairs like 0=70GiB,cpu=200GiB, "
                               f"not {item.strip()!r}")
        if not (device.isdigit() or device in ("cpu", "mps", "disk")):
            raise LayerdbError(f"--max-memory: unknown device {device!r} (a GPU index, cpu, mps "
                               "or disk)")
        match = _SIZE.match(size)
        if not match:
            raise LayerdbError(f"--max-memory: {size.strip()!r} is not a size (like 70GiB, "
                               "500MB or a number of bytes)")
        unit = (match[2] or "B").lower()
        limits[int(device) if device.isdigit() else device] = int(float(match[1]) * _UNITS[unit])
    return limits


def input_device(model):
    """Where token ids go: the device the embedding computes on (with a device map, the first
    device of the map; weights offloaded to disk or CPU compute on the CPU)."""
    import torch

    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        first = next(iter(device_map.values()))
        return torch.device("cpu" if first in ("cpu", "disk") else
                            f"cuda:{first}" if isinstance(first, int) else first)
    return next(model.parameters()).device
