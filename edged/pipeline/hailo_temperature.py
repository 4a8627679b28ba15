"""The Hailo device's temperature for the metrics, read only while a Hailo variant serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edged.pipeline.messages import ModelDescriptor


class HailoTemperature:
    def __init__(self, device_id: str | None,
                 serving: Callable[[], ModelDescriptor | None]) -> None:  # fmt: skip
        self._device_id = device_id
        self._serving = serving
        self._reader: Any = None

    def __call__(self) -> float | None:
        model = self._serving()
        if model is None or model.backend != "hailo":
            return None  # never import HailoRT in the supervisor of a CPU-only daemon
        if self._reader is None:
            from edged.backends.hailo_device import HailoTemperatureReader

            # A Hailo variant is serving, so the device exists: no /dev/hailo* probe first.
            self._reader = HailoTemperatureReader(self._device_id,
                                                  device_nodes=lambda: ["serving"])  # fmt: skip
        return self._reader.read()
